//! The per-shard write-ahead log of the server: `aionbd_io::wal::Wal` (group
//! commit, rollover, the spare segment, the manifest switch; the code the
//! crash tests run on a simulated disk) over glommio DMA files
//! ([`dma::DmaDisk`]), and reading a WAL directory at start-up
//! ([`recovery`]).
//!
//! The node appends each write's record right after applying it in
//! memory and acknowledges only once the record is durable (docs/storage.md).

use aionbd_io::wal::{Recovered, SyncPolicy, WalOptions};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

pub mod dma;
mod recovery;

pub use aionbd_io::wal::WalError;
pub use dma::DmaDisk;
pub use recovery::{
    read_segment_names, read_segments, recover_dir, remove_unfinished, CutError, RecoveryError, ReplayError,
    SegmentReader,
};

/// One shard's WAL on its disk.
pub type Wal = aionbd_io::wal::Wal<DmaDisk>;

/// When the WAL calls fdatasync (API.md §9 settings; docs/storage.md).
pub fn sync_policy(p: &crate::config::PersistenceConfig) -> SyncPolicy {
    let interval = (p.wal_sync_interval_seconds > 0).then(|| Duration::from_secs(p.wal_sync_interval_seconds));
    // Relaxed with neither knob set would never sync: bound it at 1 s.
    let interval = if !p.wal_sync_on_write && p.wal_sync_every_n_writes == 0 {
        interval.or(Some(Duration::from_secs(1)))
    } else {
        interval
    };
    SyncPolicy { every_write: p.wal_sync_on_write, every_n: p.wal_sync_every_n_writes, interval }
}

/// Open the WAL of `shard_dir` on the log recovery found (its torn tail
/// zeroed, its newest segment continued) and start its tasks on this
/// executor.
pub async fn open(shard_dir: &Path, rec: &Recovered, options: WalOptions) -> Result<Rc<Wal>, WalError> {
    let salt = Box::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let wal = Wal::open(DmaDisk::new(), shard_dir, rec, options, salt).await?;
    let (flusher, spares, timer) = wal.tasks();
    glommio::spawn_local(flusher).detach();
    glommio::spawn_local(spares).detach();
    if let Some(timer) = timer {
        glommio::spawn_local(timer).detach();
    }
    Ok(wal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aionbd_io::snapshot::{Manifest, MANIFEST};
    use aionbd_io::wal::WAL_DIR;
    use glommio::LocalExecutorBuilder;
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aionbd-wal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(WAL_DIR)).unwrap();
        d
    }

    /// Concurrent appends on real O_DIRECT files share fdatasyncs, roll over
    /// segments, and read back complete through recovery; a snapshot
    /// switched in deletes the segments it covers.
    #[test]
    fn group_commit_on_dma_files_round_trips() {
        let dir = temp_dir("gc");
        let d = dir.clone();
        let (syncs, records, removed) = LocalExecutorBuilder::default()
            .spawn(move || async move {
                let policy = SyncPolicy { every_write: true, every_n: 0, interval: None };
                let options = WalOptions {
                    shard_id: 0,
                    segment_bytes: 16 * 4096,
                    policy,
                    max_batch: 64,
                    flush_delay: Duration::ZERO,
                };
                let wal = open(&d, &Recovered::empty(1), options).await.expect("open");
                let tasks: Vec<_> = (0..32u64)
                    .map(|t| {
                        let wal = wal.clone();
                        glommio::spawn_local(async move {
                            let mut lsns = Vec::new();
                            for i in 0..20u64 {
                                let body = format!("task {t} record {i}").into_bytes();
                                lsns.push(wal.append(3, body).await.expect("append"));
                            }
                            lsns
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await);
                }
                all.sort();
                assert_eq!(all, (1..=640).collect::<Vec<_>>(), "every append got a distinct LSN");
                assert!(wal.segment_count() > 1, "segments rolled over");
                // A snapshot at LSN 600: the segments wholly before it go.
                let tmp = d.join("snap.tmp");
                std::fs::write(&tmp, b"state at 600").unwrap();
                let removed = wal.install_snapshot(&tmp, "snap-600", 600).await.expect("switch");
                (wal.syncs.get(), wal.records.get(), removed)
            })
            .unwrap()
            .join()
            .unwrap();
        eprintln!("640 records from 32 concurrent writers: {syncs} fdatasyncs");
        assert_eq!(records, 640);
        assert!(syncs < 640 / 4, "group commit should share fdatasyncs: {syncs} syncs for 640 records");
        let manifest = Manifest::decode(&std::fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!((manifest.lsn, manifest.snapshot.as_str()), (600, "snap-600"));
        assert_eq!(std::fs::read(dir.join("snap-600")).unwrap(), b"state at 600");
        assert!(removed > 0, "covered segments are deleted");
        let rec = recover_dir(&dir.join(WAL_DIR), 601, false, None).unwrap();
        assert_eq!(rec.records.len(), 40);
        assert!(rec.reaches_segment(manifest.wal_segment_seq));
        let bodies: std::collections::HashSet<Vec<u8>> = rec.records.into_iter().map(|r| r.body).collect();
        assert!(bodies.contains(b"task 31 record 19".as_slice()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
