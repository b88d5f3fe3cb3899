//! Memory handed back to the kernel off the shards' threads.
//!
//! Installing a rebuilt graph replaces the old one: on a partition of
//! ~755,000 points that is ~400 MB of arrays, and unmapping them and then
//! trimming the allocator's free pages (`malloc_trim`) took the shard
//! 195-272 ms between two requests (docs/benchmarks.md, "An hour of
//! ingest"). Both now run on one thread of their own, at the lowest CPU
//! priority, so the kernel takes that work from whatever a shard leaves
//! idle and preempts it within its scheduling slice when a shard wants its
//! core back.
//!
//! What stays on a shard: a trim still locks each allocator arena while it
//! walks it, so a shard allocating during the trim of its own arena waits
//! for that walk (what it did anyway when it ran the trim itself); freeing
//! the small pieces of an old graph takes that arena's lock once per piece.

use aionbd_shards::partition::Retired;
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;
use std::time::Instant;

enum Job {
    Free(Retired),
    Trim,
}

static JOBS: OnceLock<Option<Sender<Job>>> = OnceLock::new();

/// The reclaim thread's queue, started on first use (`None`, and the
/// caller does the work itself, if the thread cannot be started).
fn jobs() -> Option<&'static Sender<Job>> {
    JOBS.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let spawned = std::thread::Builder::new().name("aionbd-reclaim".into()).spawn(move || {
            any_cpu();
            lowest_priority();
            for job in rx {
                match job {
                    Job::Free(retired) => drop(retired),
                    Job::Trim => trim_now(),
                }
            }
        });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the reclaim thread: shards free index memory themselves");
                None
            }
        }
    })
    .as_ref()
}

/// Free `retired` on the reclaim thread (here if it holds nothing or the
/// thread is gone).
pub fn free(retired: Retired) {
    if retired.is_empty() {
        return;
    }
    if let Some(tx) = jobs() {
        // A send fails only if the thread died; the value comes back.
        if let Err(std::sync::mpsc::SendError(Job::Free(retired))) = tx.send(Job::Free(retired)) {
            drop(retired);
        }
    }
}

/// Hand the allocator's free pages back to the kernel, on the reclaim
/// thread after everything handed to [`free`] before it.
pub fn trim() {
    match jobs() {
        Some(tx) if tx.send(Job::Trim).is_ok() => {}
        _ => trim_now(),
    }
}

/// `malloc_trim(0)`: releases the free pages of every arena (glibc keeps
/// what a thread frees in that thread's arena, which returns only its top
/// to the kernel; without it a settled 50k x 384 server kept 47 MiB, a
/// quarter of its RSS, that it no longer used).
fn trim_now() {
    let t0 = Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reorganises the allocator's own free lists
    // under its arena locks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!(took_us = t0.elapsed().as_micros() as u64, "malloc_trim after index work");
}

/// Let the calling thread run on every CPU the process may use (the main
/// thread's set). A thread inherits its creator's affinity, and the first
/// caller is a shard, pinned to its core: there, at nice 19 behind that
/// busy shard, a trim holding the other shard's arena lock starved it
/// (trims of 840 ms, the other shard asleep on the lock for 640 ms).
fn any_cpu() {
    #[cfg(target_os = "linux")]
    // SAFETY: the set is a plain bitmask owned here; both calls only read
    // or write the affinity of a thread of this process, and a failure
    // leaves the affinity as it was.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}

/// Nice 19 for the calling thread (Linux: `setpriority` on a thread id
/// sets that thread's nice value).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority changes only this
    // thread's nice value, and its failure is harmless.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::debug!("reclaim thread: cannot lower its priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reports(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Reports {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[test]
    fn retired_memory_is_freed_on_the_reclaim_thread() {
        let (tx, rx) = channel();
        let mut retired = Retired::default();
        retired.keep(Some(Reports(tx)));
        free(retired);
        trim();
        let dropped_on = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some("aionbd-reclaim"));
    }
}
