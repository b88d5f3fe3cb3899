//! A shard's start-up restore: its snapshot loaded, its WAL recovered and
//! replayed (read ahead on a helper thread), and the WAL and snapshot
//! schedule attached to the node for serving.

use crate::api::Shared;
use crate::fs::FsError;
use crate::node::{Node, REPLAY_IN_FLIGHT};
use crate::replay::ReplayError;
use crate::snapshot::LoadError;
use crate::wal::{RecoveryError, WalError};
use aionbd_io::wal::Lsn;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a shard could not restore its data at start-up.
#[derive(Debug)]
pub enum RestoreError {
    /// The WAL directory could not be created.
    File(FsError),
    Snapshot(LoadError),
    /// The log could not be read or recovered (or cut, when asked).
    Log(RecoveryError),
    /// A logged record could not be replayed.
    Replay(ReplayError),
    /// The segment the snapshot's manifest recorded is gone: writes the
    /// snapshot does not hold may be lost.
    SegmentMissing {
        segment_seq: u64,
        wal_dir: PathBuf,
        snapshot_lsn: Lsn,
    },
    /// The recovered log could not be opened for writing.
    Wal(WalError),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RestoreError::File(e) => e.fmt(f),
            RestoreError::Snapshot(e) => e.fmt(f),
            RestoreError::Log(e) => e.fmt(f),
            RestoreError::Replay(e) => e.fmt(f),
            RestoreError::SegmentMissing { segment_seq, wal_dir, snapshot_lsn } => write!(
                f,
                "WAL segment {segment_seq} (and any after it) is missing from {}: the manifest recorded it when \
                 the snapshot at LSN {snapshot_lsn} was taken; acknowledged writes may be lost, refusing to start",
                wal_dir.display()
            ),
            RestoreError::Wal(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RestoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RestoreError::File(e) => Some(e),
            RestoreError::Snapshot(e) => Some(e),
            RestoreError::Log(e) => Some(e),
            RestoreError::Replay(e) => Some(e),
            RestoreError::Wal(e) => Some(e),
            RestoreError::SegmentMissing { .. } => None,
        }
    }
}

/// Load the shard's snapshot, recover and replay its WAL, and attach the
/// WAL and the snapshot task to the node. Returns the records applied.
pub async fn recover_shard(
    node: &Rc<Node>,
    shared: &Shared,
    me: usize,
    progress: &AtomicU64,
) -> Result<usize, RestoreError> {
    let p = &shared.config.persistence;
    let shard_dir = shared.shards_root.join(format!("shard-{me:02}"));
    let wal_dir = shard_dir.join(aionbd_io::wal::WAL_DIR);
    std::fs::create_dir_all(&wal_dir).map_err(|e| RestoreError::File(FsError::new("cannot create", &wal_dir, e)))?;
    let t0 = std::time::Instant::now();
    let loaded = crate::snapshot::load(node, &shard_dir, me, progress).await.map_err(RestoreError::Snapshot)?;
    let t1 = std::time::Instant::now();
    // Read and scan the WAL segments on a helper thread, one ahead of the
    // replay. Not while the snapshot loads: the scanned records would wait
    // in memory beside the snapshot's read-ahead and the partitions it
    // fills (a light-mode restart peaked at 1.37x its settled RSS so, see
    // docs/benchmarks.md, memory-light mode, "Through a restart").
    let first_lsn = loaded.manifest.as_ref().map_or(1, |m| m.lsn + 1);
    let reader = (!p.wal_truncate_corrupt).then(|| crate::wal::SegmentReader::start(&wal_dir, first_lsn));
    if let Some(late) = crate::debug_hooks::slow_replay(me) {
        glommio::timer::sleep(late).await;
    }
    let mut replayer = crate::replay::Replayer::new(node);
    let mut apply = |r: &aionbd_io::wal::Record| -> Result<(), ReplayError> {
        replayer.apply(r)?;
        if replayer.records.is_multiple_of(64) {
            progress.fetch_add(64, Ordering::Relaxed);
        }
        Ok(())
    };
    let (recovered, read_bytes) = match reader {
        Some(reader) => {
            reader.replay(&mut apply, async || node.replay_pace(REPLAY_IN_FLIGHT).await).await.map_err(|e| match e {
                crate::wal::ReplayError::Log(e) => RestoreError::Log(e),
                crate::wal::ReplayError::Apply(e) => RestoreError::Replay(e),
            })?
        }
        // Cutting a damaged log needs the whole log first (the operator's
        // --wal-truncate-corrupt): read, recover (and cut), then replay.
        None => {
            let segments = crate::wal::read_segments(&wal_dir)
                .map_err(|source| RestoreError::Log(RecoveryError::ReadDir { dir: wal_dir.clone(), source }))?;
            let read: u64 = segments.iter().map(|s| s.bytes.len() as u64).sum();
            let mut rec =
                crate::wal::recover_dir(&wal_dir, first_lsn, true, Some(segments)).map_err(RestoreError::Log)?;
            for (i, r) in std::mem::take(&mut rec.records).iter().enumerate() {
                apply(r).map_err(RestoreError::Replay)?;
                node.replay_pace(REPLAY_IN_FLIGHT).await;
                if i % 64 == 63 {
                    futures_lite::future::yield_now().await;
                }
            }
            (rec, read)
        }
    };
    replayer.flush().map_err(RestoreError::Replay)?;
    node.replay_pace(0).await;
    let (replayed, replayed_bytes) = (replayer.records, replayer.bytes);
    if let Some(m) = &loaded.manifest {
        if !recovered.reaches_segment(m.wal_segment_seq) {
            return Err(RestoreError::SegmentMissing { segment_seq: m.wal_segment_seq, wal_dir, snapshot_lsn: m.lsn });
        }
    }
    if loaded.records > 0 || replayed > 0 {
        tracing::info!(
            "shard {me}: snapshot: {} records ({:.1} MB) in {:.2} s; WAL: {replayed} records ({:.1} MB of \
             segments read and scanned) replayed in {:.2} s",
            loaded.records,
            loaded.file_bytes as f64 / 1e6,
            (t1 - t0).as_secs_f64(),
            read_bytes as f64 / 1e6,
            t1.elapsed().as_secs_f64()
        );
    }
    let options = aionbd_io::wal::WalOptions {
        shard_id: me as u16,
        segment_bytes: p.wal_segment_bytes,
        policy: crate::wal::sync_policy(p),
        max_batch: p.wal_group_commit_max_batch as usize,
        flush_delay: Duration::from_millis(p.wal_group_commit_flush_delay_ms),
    };
    let wal = crate::wal::open(&shard_dir, &recovered, options).await.map_err(RestoreError::Wal)?;
    if let Some(t) = &recovered.torn_tail {
        tracing::warn!("WAL {}: truncated a torn tail at offset {} (an unacknowledged batch)", t.segment, t.offset);
    }
    // The replayed log counts toward the next snapshot.
    wal.bytes.set(recovered.log_bytes.max(replayed_bytes));
    node.set_wal(wal);
    let snaps = crate::snapshot::Snapshots::new(me, shard_dir, p, loaded.file_bytes);
    progress.store(loaded.records + replayed, Ordering::Relaxed);
    node.set_snapshots(snaps);
    Ok((loaded.records + replayed) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_segment_names_it_the_directory_and_the_snapshot() {
        let e = RestoreError::SegmentMissing { segment_seq: 9, wal_dir: "/d/shard-00/wal".into(), snapshot_lsn: 77 };
        assert_eq!(
            e.to_string(),
            "WAL segment 9 (and any after it) is missing from /d/shard-00/wal: the manifest recorded it when the \
             snapshot at LSN 77 was taken; acknowledged writes may be lost, refusing to start"
        );
        let e = RestoreError::File(FsError::new(
            "cannot create",
            "/d/wal",
            std::io::Error::from_raw_os_error(libc::EACCES),
        ));
        assert!(e.to_string().starts_with("cannot create /d/wal: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
