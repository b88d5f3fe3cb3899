//! Fault-injection hooks for the integration tests (`tests/server`), which
//! run the release binary and so cannot use `cfg(test)`. Each is read from
//! an `AIONBD_DEBUG_*` environment variable; this module is the only place
//! the server reads them, and nothing happens unless one is set (config's
//! unknown-variable check knows the family and never warns about it).

use std::time::Duration;

/// The number the variable holds, if set and one.
fn num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn ms(name: &str) -> Option<Duration> {
    num(name).map(Duration::from_millis)
}

/// `AIONBD_DEBUG_RECOVERY_DELAY_MS`: stretch the recovery window (the main
/// thread sleeps before the shards start) so tests can observe it.
pub fn recovery_delay() -> Option<Duration> {
    ms("AIONBD_DEBUG_RECOVERY_DELAY_MS")
}

/// `AIONBD_DEBUG_SLOW_REPLAY_SHARD_<n>_MS`: shard n's replay starts this
/// late, as a long log's would end.
pub fn slow_replay(shard: usize) -> Option<Duration> {
    ms(&format!("AIONBD_DEBUG_SLOW_REPLAY_SHARD_{shard}_MS"))
}

/// `AIONBD_DEBUG_SLOW_SYNC_DIR_MS`: every fsync of a WAL or snapshot
/// directory takes this much longer, as on a busy disk (read once).
pub fn slow_sync_dir() -> Option<Duration> {
    static SLOW: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *SLOW.get_or_init(|| ms("AIONBD_DEBUG_SLOW_SYNC_DIR_MS"))
}

/// `AIONBD_DEBUG_SLOW_FDATASYNC_US`: every fdatasync of a WAL segment
/// returns this much later (read once), as on a disk whose cache flush is
/// slow (SD cards, eMMC, SSDs without power-loss protection): benchmarks
/// of group commit use it on a fast disk.
pub fn slow_fdatasync() -> Option<Duration> {
    static SLOW: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *SLOW.get_or_init(|| num("AIONBD_DEBUG_SLOW_FDATASYNC_US").filter(|&us| us > 0).map(Duration::from_micros))
}

/// `AIONBD_DEBUG_SCAN_PIECE_ROWS`: an exact scan's pieces hold this many
/// rows (`shards::partition::set_scan_piece_rows`), so a small collection
/// is scanned in many pieces.
pub fn scan_piece_rows() -> Option<usize> {
    num("AIONBD_DEBUG_SCAN_PIECE_ROWS").filter(|&n| n > 0)
}

/// `AIONBD_DEBUG_SCAN_PIECE_PAUSE_MS`: an exact scan waits this long
/// between its pieces (read once), so requests arriving meanwhile run
/// between them even on a small collection, as they would between the
/// pieces of a large one.
pub fn scan_piece_pause() -> Option<Duration> {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| ms("AIONBD_DEBUG_SCAN_PIECE_PAUSE_MS"))
}

/// After this long, shard n's thread...
pub enum ShardFault {
    /// ...blocks in pause(2), as in a sleep no timer ends; only a signal
    /// frees it (`AIONBD_DEBUG_PAUSE_SHARD_<n>_MS`).
    Pause(Duration),
    /// ...is held 2 s with no turn (asleep), as in one long step named
    /// "debug stall" (`AIONBD_DEBUG_STALL_SHARD_<n>_MS`).
    Stall(Duration),
    /// ...panics (`AIONBD_DEBUG_PANIC_SHARD_<n>_MS`).
    Panic(Duration),
}

/// The faults asked for shard n.
fn shard_faults(shard: usize) -> Vec<ShardFault> {
    let var = |kind: &str| ms(&format!("AIONBD_DEBUG_{kind}_SHARD_{shard}_MS"));
    let mut out = Vec::new();
    out.extend(var("PAUSE").map(ShardFault::Pause));
    out.extend(var("STALL").map(ShardFault::Stall));
    out.extend(var("PANIC").map(ShardFault::Panic));
    out
}

/// Start the faults asked for shard n (on its executor).
pub fn start_shard_faults(me: usize) {
    for fault in shard_faults(me) {
        glommio::spawn_local(async move {
            match fault {
                ShardFault::Pause(after) => {
                    glommio::timer::sleep(after).await;
                    // SAFETY: pause has no preconditions; it returns after a signal.
                    unsafe { libc::pause() };
                }
                ShardFault::Stall(after) => {
                    glommio::timer::sleep(after).await;
                    // Asleep rather than spinning: a test beside it keeps its CPU.
                    let _doing = crate::watchdog::doing(&"debug stall");
                    std::thread::sleep(Duration::from_secs(2));
                }
                ShardFault::Panic(after) => {
                    glommio::timer::sleep(after).await;
                    panic!("AIONBD_DEBUG_PANIC_SHARD_{me}_MS: shard {me} panics as asked");
                }
            }
        })
        .detach();
    }
}

/// `AIONBD_DEBUG_RELAYOUT_CRASH=<step>`: abort the process at the named
/// step of a re-layout, as a crash there would.
pub fn relayout_crash_point(step: &str) {
    if std::env::var("AIONBD_DEBUG_RELAYOUT_CRASH").is_ok_and(|s| s == step) {
        eprintln!("aionbd: AIONBD_DEBUG_RELAYOUT_CRASH: aborting at {step}");
        std::process::abort();
    }
}
