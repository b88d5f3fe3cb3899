//! Keeping each partition's reservoir of real queries across restarts
//! (`shard-NN/queries.bin`, format in `aionbd_io::queries`).
//!
//! `auto` chooses a search setting from a table of recall per setting
//! that a calibration measured. An index built at start-up used to be
//! measured on held-out stored points only, which overstate the recall of
//! queries unlike the stored texts, so until enough real queries came in
//! and a recalibration measured them, `auto` discounted those figures and
//! searched wider, and the recalibration's steps ran beside the load
//! (docs/benchmarks.md, "After a restart"). With the saved reservoirs given
//! back before the start-up builds, the indexes calibrate on the queries
//! users sent before the restart from the start.
//!
//! Each shard saves its own partitions' reservoirs when they changed, at
//! most every [`SAVE_EVERY`] (off the shard's thread: temporary file,
//! fsync, rename), and at a clean shutdown. The file is advisory: missing,
//! damaged or from another layout, calibration starts on held-out points.
//! It is not part of backups or exports, and a re-layout starts without it.

use crate::node::Node;
use aionbd_io::queries::{decode, encode, SavedQueries, FILE_NAME};
use aionbd_shards::index::calib::{metric_index, RealQueries};
use aionbd_shards::math::distance::Metric;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// How often a shard looks whether its reservoirs changed since saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The file of the shard directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn metric_of(i: u8) -> Metric {
    match i {
        0 => Metric::L2,
        1 => Metric::Dot,
        _ => Metric::Cosine,
    }
}

fn to_saved((name, uid, real): (String, u64, RealQueries)) -> SavedQueries {
    let queries = real.queries.into_iter().map(|(m, q)| (metric_index(m) as u8, q)).collect();
    SavedQueries { name, uid, metrics: real.metrics, queries }
}

fn from_saved(s: SavedQueries) -> (String, u64, RealQueries) {
    let queries = s.queries.into_iter().map(|(m, q)| (metric_of(m), q)).collect();
    (s.name, s.uid, RealQueries { queries, metrics: s.metrics })
}

/// Give the saved reservoirs in `dir` back to this shard's partitions (at
/// start-up, after recovery and before any index build). Never fails: a
/// file that cannot be used is logged and left for the next save to
/// replace.
pub fn restore(node: &Node, dir: &Path) {
    let file = path(dir);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return tracing::warn!("{}: {e}; calibration starts on held-out points", file.display()),
    };
    match decode(&bytes) {
        Ok(saved) => {
            let entries = saved.len();
            let taken = node.with_shard(&"restore saved queries", |s| {
                s.restore_real_queries(saved.into_iter().map(from_saved).collect())
            });
            tracing::info!(
                "shard {}: real queries of {taken} partitions restored for calibration ({entries} saved)",
                node.me()
            );
        }
        Err(e) => tracing::warn!("{}: {e}; ignored, calibration starts on held-out points", file.display()),
    }
}

/// What this shard would save now, and the state it reflects.
fn current(node: &Node) -> (Vec<(String, u64, u64)>, Vec<u8>) {
    node.with_shard(&"save queries", |s| {
        let state = s.real_queries_state();
        let bytes = encode(&s.real_queries().into_iter().map(to_saved).collect::<Vec<_>>());
        (state, bytes)
    })
}

/// Replace the file atomically (temporary file, fsync, rename).
fn write(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("bin.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// Save this shard's reservoirs whenever they changed, at most every
/// [`SAVE_EVERY`], for the life of the shard.
pub fn start(node: Rc<Node>, dir: PathBuf) {
    glommio::spawn_local(async move {
        let mut saved = node.with_shard(&"save queries", |s| s.real_queries_state());
        loop {
            glommio::timer::sleep(SAVE_EVERY).await;
            if node.with_shard(&"save queries", |s| s.real_queries_state()) == saved {
                continue;
            }
            let (state, bytes) = current(&node);
            let file = path(&dir);
            let shown = file.display().to_string();
            match glommio::executor().spawn_blocking(move || write(&file, &bytes)).await {
                Ok(()) => saved = state,
                Err(e) => tracing::warn!("cannot save the calibration queries to {shown}: {e}"),
            }
        }
    })
    .detach();
}

/// Save this shard's reservoirs now (clean shutdown).
pub fn save_now(node: &Node, dir: &Path) {
    let (state, bytes) = current(node);
    if state.is_empty() && !path(dir).exists() {
        return;
    }
    if let Err(e) = write(&path(dir), &bytes) {
        tracing::warn!("cannot save the calibration queries to {}: {e}", path(dir).display());
    }
}
