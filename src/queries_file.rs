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
//! most every [`SAVE_EVERY`] (the file written off the shard's thread:
//! temporary file, fsync, rename, fsync of the directory), and at a clean
//! stop. The file is advisory: missing or damaged, calibration starts on
//! held-out points. A re-layout carries each collection's entry to every
//! new shard (`datadir::carry_saved_queries`), and a backup keeps each
//! collection's (`crate::backup`), which a restore writes to every shard.

use crate::fs::write_atomically;
use crate::node::Node;
use aionbd_io::queries::{decode, encode, SavedQueries, FILE_NAME};
use aionbd_shards::index::calib::{metric_index, RealQueries, METRICS};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// How often a shard looks whether its reservoirs changed since saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The file of the shard directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The entries saved in the shard directory `dir`: `Ok(None)` without a
/// file; `Err` says why a file cannot be used (read error or damage).
pub fn read(dir: &Path) -> Result<Option<Vec<SavedQueries>>, String> {
    let file = path(dir);
    match std::fs::read(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", file.display())),
        Ok(b) => decode(&b).map(Some).map_err(|e| format!("{}: {e}", file.display())),
    }
}

/// A reservoir as saved (in `queries.bin` and in backups).
pub fn to_saved((name, uid, real): (String, u64, RealQueries)) -> SavedQueries {
    let queries = real.queries.into_iter().map(|(m, q)| (metric_index(m) as u8, q)).collect();
    SavedQueries { name, uid, metrics: real.metrics, queries }
}

fn from_saved(s: SavedQueries) -> (String, u64, RealQueries) {
    // `decode` refuses metrics above 2.
    let queries = s.queries.into_iter().map(|(m, q)| (METRICS[m as usize], q)).collect();
    (s.name, s.uid, RealQueries { queries, metrics: s.metrics })
}

/// Give the saved reservoirs in `dir` back to this shard's partitions (at
/// start-up, after recovery and before any index build). Never fails: a
/// file that cannot be used is logged. Returns whether the file holds
/// anything no partition took (damage, dropped collections): the saver
/// then rewrites it at its first look.
pub fn restore(node: &Node, dir: &Path) -> bool {
    match read(dir) {
        Ok(None) => false,
        Ok(Some(saved)) => {
            let entries = saved.len();
            let taken = node.with_shard(&"restore saved queries", |s| {
                s.restore_real_queries(saved.into_iter().map(from_saved).collect())
            });
            tracing::info!(
                "shard {}: real queries of {taken} partitions restored for calibration ({entries} saved)",
                node.me()
            );
            taken < entries
        }
        Err(e) => {
            tracing::warn!("{e}; ignored, calibration starts on held-out points");
            true
        }
    }
}

/// What this shard would save now, and the state it reflects (the copy
/// and encoding run on the shard: ~200 KB per partition at 384 dims).
fn current(node: &Node) -> (Vec<(String, u64, u64)>, Vec<u8>) {
    node.with_shard(&"save queries", |s| {
        let state = s.real_queries_state();
        let bytes = encode(&s.real_queries().into_iter().map(to_saved).collect::<Vec<_>>());
        (state, bytes)
    })
}

/// The shard's saver: saves in the background while the shard serves,
/// then once more at a clean stop.
pub struct Saver {
    node: Rc<Node>,
    dir: PathBuf,
    /// A background write is in flight (on a blocking thread).
    writing: Rc<Cell<bool>>,
    stopped: Rc<Cell<bool>>,
}

impl Saver {
    /// Save this shard's reservoirs whenever they changed, at most every
    /// [`SAVE_EVERY`]; `rewrite`: the file holds entries no partition
    /// took, so the first look saves whatever the state.
    pub fn start(node: Rc<Node>, dir: PathBuf, rewrite: bool) -> Saver {
        let saver = Saver { node, dir, writing: Rc::new(Cell::new(false)), stopped: Rc::new(Cell::new(false)) };
        let (node, dir) = (saver.node.clone(), saver.dir.clone());
        let (writing, stopped) = (saver.writing.clone(), saver.stopped.clone());
        let mut saved = (!rewrite).then(|| node.with_shard(&"save queries", |s| s.real_queries_state()));
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(SAVE_EVERY).await;
                if stopped.get() {
                    break;
                }
                if saved.as_ref() == Some(&node.with_shard(&"save queries", |s| s.real_queries_state())) {
                    continue;
                }
                let (state, bytes) = current(&node);
                let file = path(&dir);
                writing.set(true);
                let result = glommio::executor().spawn_blocking(move || write_atomically(&file, &bytes)).await;
                writing.set(false);
                match result {
                    Ok(()) => saved = Some(state),
                    Err(e) => tracing::warn!("cannot save the calibration queries: {e}"),
                }
            }
        })
        .detach();
        saver
    }

    /// Stop the background saves (waiting for one in flight) and save now
    /// (a clean stop).
    pub async fn stop(self) {
        self.stopped.set(true);
        while self.writing.get() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let (state, bytes) = current(&self.node);
        if state.is_empty() && !path(&self.dir).exists() {
            return;
        }
        if let Err(e) = write_atomically(&path(&self.dir), &bytes) {
            tracing::warn!("cannot save the calibration queries: {e}");
        }
    }
}
