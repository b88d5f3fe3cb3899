//! Memory handed back to the kernel off the shards' threads.
//!
//! Installing a rebuilt graph replaces the old one: on a partition of
//! ~755,000 points that is ~400 MB of arrays, and unmapping them and then
//! trimming the allocator's free pages (`malloc_trim`) took the shard
//! 195-272 ms between two requests (commits 6b65002 and bc1ea5b). Both
//! now run on one thread of their own, at the lowest CPU priority, so
//! the kernel takes that work from whatever a shard leaves idle and
//! preempts it within its scheduling slice when a shard wants its core
//! back.
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

/// A fixed mmap threshold: every allocation at or above it gets its own
/// mapping, returned to the kernel when freed and grown by `mremap` (page
/// table entries move, bytes do not). glibc otherwise raises its threshold
/// to the size of the largest mapped block freed (up to 32 MiB), and a
/// server frees large blocks all the time (replaced indexes, build
/// buffers): after that a partition's arrays of ids, norms and payloads
/// (a few MiB each at half a million points) came from the shard's arena
/// and grew by copying on the shard (a batch of 256 upserts up to 25-38 ms
/// against 6 ms: docs/benchmarks.md, "Index builds on large partitions").
///
/// Full mode: 4 MiB, above any request's own buffers (a 256-point batch
/// body is about 1 MiB), so requests keep reusing arena memory. Memory-light
/// mode: 64 KiB; there a settled 50k x 384 server otherwise kept about
/// 30 MiB of free arena pages that `malloc_trim` could not hand back (free
/// chunks between live ones), as much as its data.
///
/// Call it before the shard threads start (`benches/id_growth.rs` calls it
/// between its rows to show both behaviours).
pub fn fixed_mmap_threshold(memory_light: bool) {
    let bytes = if memory_light { MMAP_THRESHOLD_LIGHT } else { MMAP_THRESHOLD };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    let _ = bytes;
}

/// [`fixed_mmap_threshold`] in full mode.
pub const MMAP_THRESHOLD: i32 = 4 << 20;
/// [`fixed_mmap_threshold`] in memory-light mode.
pub const MMAP_THRESHOLD_LIGHT: i32 = 64 << 10;

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

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn blocks_past_the_threshold_are_mapped_after_a_large_free() {
        fixed_mmap_threshold(false);
        // Freeing a mapped 30 MiB block raises glibc's own threshold to
        // 30 MiB; the fixed one stays, so 5 MiB still gets its own mapping.
        drop(std::hint::black_box(vec![1u8; 30 << 20]));
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let mapped = || unsafe { libc::mallinfo2() }.hblkhd;
        // Other tests free mapped blocks meanwhile: one try in three is enough.
        let grew = (0..3).any(|_| {
            let before = mapped();
            let block = std::hint::black_box(vec![1u8; 5 << 20]);
            let after = mapped();
            drop(block);
            after >= before + (5 << 20)
        });
        assert!(grew, "a 5 MiB block came from an arena");
    }
}
