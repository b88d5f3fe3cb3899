//! Waking a shard whose executor sleeps through its own timers.
//!
//! Seen in session 7: after a burst of load, one shard's glommio executor
//! slept in `io_uring_enter` with its 5 ms heartbeat and its 50 ms shutdown
//! check pending, and did not wake for ten minutes (SIGTERM never finished);
//! attaching a debugger (which interrupts the system call) let it go on at
//! once. A lost wake-up of this kind also fits the rare test requests that
//! waited 30 s with no late-turn report. So a plain thread outside glommio
//! watches every shard's heartbeat: a shard without a turn for
//! [`STALE`] gets a signal (SIGURG, with a handler that does nothing and no
//! `SA_RESTART`), which makes a sleeping `io_uring_enter` return EINTR; the
//! executor then runs its due timers and carries on. A shard busy in a long
//! synchronous step gets the same signal; it returns to that step at once.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A shard this long without a heartbeat turn is signalled.
pub const STALE: Duration = Duration::from_millis(100);
/// How often the watchdog looks.
const LOOK_EVERY: Duration = Duration::from_millis(25);

struct Slot {
    /// Kernel thread id of the shard's thread; 0 while not watched.
    tid: AtomicI64,
    /// Milliseconds since [`epoch`] of its last heartbeat turn.
    turn_ms: AtomicU64,
}

static SLOTS: OnceLock<Vec<Slot>> = OnceLock::new();
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Signals sent (`/metrics`: `shard_watchdog_signals_total`).
static SIGNALS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

extern "C" fn on_signal(_: libc::c_int) {}

/// Install the signal handler and start the watchdog thread for `shards`
/// shards (once per process).
pub fn install(shards: usize) {
    let mut first = false;
    SLOTS.get_or_init(|| {
        first = true;
        (0..shards).map(|_| Slot { tid: AtomicI64::new(0), turn_ms: AtomicU64::new(0) }).collect()
    });
    if !first {
        return;
    }
    now_ms();
    // SAFETY: a zeroed sigaction is a valid start; the handler does nothing
    // (async-signal-safe) and no SA_RESTART, so blocking calls see EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut());
    }
    // systemd's watchdog (WatchdogSec=): ping every half interval while
    // every watched shard had a turn within it; a stuck shard stops the
    // pings and systemd restarts the service.
    let systemd = crate::notify::watchdog_interval().map(|i| (i / 2).as_millis().max(1) as u64);
    let _ = std::thread::Builder::new().name("aionbd-watchdog".into()).spawn(move || {
        let slots = SLOTS.get().expect("installed");
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut last_ping = 0u64;
        loop {
            std::thread::sleep(LOOK_EVERY);
            let now = now_ms();
            if let Some(half) = systemd {
                let turning = slots.iter().all(|s| {
                    s.tid.load(Ordering::Acquire) == 0 || now.saturating_sub(s.turn_ms.load(Ordering::Relaxed)) <= half
                });
                if turning && now.saturating_sub(last_ping) >= half {
                    crate::notify::watchdog();
                    last_ping = now;
                }
            }
            for slot in slots {
                let tid = slot.tid.load(Ordering::Acquire);
                if tid != 0 && now.saturating_sub(slot.turn_ms.load(Ordering::Relaxed)) > STALE.as_millis() as u64 {
                    // SAFETY: tgkill only reaches a thread of this process;
                    // one that has exited gives ESRCH.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGURG) };
                    SIGNALS.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
}

/// Watch the calling thread as shard `me` until the guard drops.
pub fn watch(me: usize) -> Watched {
    beat(me);
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as i64;
    if let Some(slot) = SLOTS.get().and_then(|s| s.get(me)) {
        slot.tid.store(tid, Ordering::Release);
    }
    Watched { me, tid }
}

/// Shard `me` had a turn now.
pub fn beat(me: usize) {
    if let Some(slot) = SLOTS.get().and_then(|s| s.get(me)) {
        slot.turn_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Lateness window: the gauge is the worst of this one and the one before.
const LATE_WINDOW_MS: u64 = 10_000;

thread_local! {
    /// (window number, worst lateness in it, worst in the window before), us.
    static LATENESS: std::cell::Cell<(u64, u64, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
}

/// Note how late the calling shard's heartbeat turn came.
pub fn turn_late(late: Duration) {
    let window = now_ms() / LATE_WINDOW_MS;
    let us = late.as_micros() as u64;
    LATENESS.with(|l| {
        let (w, cur, prev) = l.get();
        l.set(match window - w.min(window) {
            0 => (w, cur.max(us), prev),
            1 => (window, us, cur),
            _ => (window, us, 0),
        });
    });
}

/// The calling shard's worst heartbeat lateness over the last 10-20 s.
pub fn recent_lateness() -> Duration {
    let window = now_ms() / LATE_WINDOW_MS;
    let us = LATENESS.with(|l| {
        let (w, cur, prev) = l.get();
        match window - w.min(window) {
            0 => cur.max(prev),
            1 => cur,
            _ => 0,
        }
    });
    Duration::from_micros(us)
}

/// Signals sent to shards without a turn for [`STALE`] so far.
pub fn signals() -> u64 {
    SIGNALS.load(Ordering::Relaxed)
}

/// Stops watching its thread when dropped (the shard's thread is ending,
/// or it joined the mesh under a provisional slot). A slot another thread
/// took meanwhile stays watched.
pub struct Watched {
    me: usize,
    tid: i64,
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(slot) = SLOTS.get().and_then(|s| s.get(self.me)) {
            let _ = slot.tid.compare_exchange(self.tid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}
