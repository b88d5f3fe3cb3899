//! Index work at a lower kernel priority (`index.background_nice`).
//!
//! A shard thread that runs a paced index step (a build, a recalibration,
//! graph inserts) sets its own nice value to the configured one for the
//! step and back to the process's after it, so that while index work
//! runs, the kernel gives a CPU first to whatever else wants one: the
//! other shard's requests, and client processes on the same box (on two
//! cores, the load generator was 2-3 ms late at the p99 while both shards
//! rebuilt graphs at nice 0). Requests are always served at the process's
//! priority: a step never spans an await. Work that searches wait on
//! (inserts past `indexer::BACKLOG` waiting points, `Pace::rush`) is not
//! lowered: done later, it made searches slower around a bulk load.
//!
//! Lowering is always allowed; raising the priority back needs
//! `CAP_SYS_NICE` or an `RLIMIT_NICE` of at least `20 - base` (systemd:
//! `LimitNICE=`). [`resolve`] tries both on a thread of its own at start,
//! so a shard thread is never left at the lower priority: without the
//! permission the setting is off (with a warning).
//!
//! On Linux the nice value is a per-thread attribute (`setpriority(2)`,
//! NOTES), which is what this relies on.

use std::cell::Cell;
use std::io;

thread_local! {
    /// (nice for index steps, the thread's own): equal when off.
    static LEVELS: Cell<(i32, i32)> = const { Cell::new((0, 0)) };
}

/// `who` for `getpriority`/`setpriority` on the calling thread: on Linux
/// 0 means the calling task, that is this thread (no thread id lookup).
const THIS_THREAD: libc::id_t = 0;

/// This thread's nice value.
fn get() -> io::Result<i32> {
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: __errno_location points at this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall on this thread's id.
    let v = unsafe { libc::getpriority(libc::PRIO_PROCESS, THIS_THREAD) };
    match io::Error::last_os_error() {
        e if v == -1 && e.raw_os_error() != Some(0) => Err(e),
        _ => Ok(v),
    }
}

/// Set this thread's nice value.
fn set(nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall on this thread's id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, THIS_THREAD, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The nice value index steps may run at: `wanted` (0: off) if a thread of
/// this process may lower its priority to it and raise it back, tried on
/// a thread of its own; else 0, with the reason.
pub fn resolve(wanted: i32) -> (i32, Option<String>) {
    if wanted == 0 {
        return (0, None);
    }
    let tried = std::thread::spawn(move || -> Result<(), String> {
        let base = get().map_err(|e| format!("cannot read the thread's nice value: {e}"))?;
        if wanted <= base {
            return Err(format!("the server already runs at nice {base}"));
        }
        set(wanted).map_err(|e| format!("cannot lower a thread's priority to nice {wanted}: {e}"))?;
        set(base).map_err(|e| {
            format!(
                "a thread may not raise its priority back from nice {wanted} to {base} ({e}): \
                 grant CAP_SYS_NICE or an RLIMIT_NICE of at least {} (systemd: LimitNICE={base:+})",
                20 - base
            )
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the priority probe failed".to_owned()));
    match tried {
        Ok(()) => (wanted, None),
        Err(why) => (0, Some(format!("index.background_nice = {wanted} is off: {why}"))),
    }
}

/// Index steps on this thread run at `nice` (0: at the thread's own), as
/// [`resolve`] allowed.
pub fn init(nice: i32) {
    let base = get().unwrap_or(0);
    LEVELS.set(if nice > base { (nice, base) } else { (base, base) });
}

/// While held, this thread runs at the index steps' nice value.
pub struct Lowered(Option<i32>);

/// Lower this thread's priority for an index step (nothing if off).
pub fn lowered() -> Lowered {
    let (nice, base) = LEVELS.get();
    if nice == base {
        return Lowered(None);
    }
    match set(nice) {
        Ok(()) => Lowered(Some(base)),
        Err(_) => Lowered(None),
    }
}

impl Drop for Lowered {
    fn drop(&mut self) {
        if let Some(base) = self.0 {
            if let Err(e) = set(base) {
                // Not seen after a successful probe; stop lowering.
                LEVELS.set((base, base));
                tracing::error!("index steps: cannot raise the shard thread's priority back to nice {base}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step lowers the thread to the configured value and restores it;
    /// off, or on a thread already at that value, it changes nothing.
    #[test]
    fn a_step_runs_at_the_configured_nice_and_the_thread_gets_its_own_back() {
        std::thread::spawn(|| {
            let (nice, why) = resolve(7);
            let base = get().unwrap();
            if nice == 0 {
                // No permission here: the probe said why, and nothing changes.
                assert!(why.unwrap().contains("index.background_nice = 7 is off"));
            }
            init(nice);
            {
                let _low = lowered();
                assert_eq!(get().unwrap(), if nice == 0 { base } else { 7 });
            }
            assert_eq!(get().unwrap(), base);
            init(0);
            let _low = lowered();
            assert_eq!(get().unwrap(), base);
        })
        .join()
        .unwrap();
        assert_eq!(resolve(0), (0, None));
    }
}
