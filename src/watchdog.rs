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
//!
//! The same thread reports stalls: a shard without a turn for [`STALL`] or
//! more is counted (`/metrics`: `shard_stalls_total` and where the time
//! went), and logged, with the time split from the kernel's scheduler
//! statistics of the shard's thread (`/proc/self/task/TID/schedstat`:
//! running, runnable but waiting for a CPU, asleep) and the synchronous
//! steps the shard was seen in ([`doing`]: a request's operation, an index
//! build step, a trim). A VM's stolen time counts as running.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A shard this long without a heartbeat turn is signalled.
pub const STALE: Duration = Duration::from_millis(100);
/// How often the watchdog looks.
const LOOK_EVERY: Duration = Duration::from_millis(25);
/// A shard this long without a heartbeat turn had a stall: counted, and
/// logged at debug level...
pub const STALL: Duration = Duration::from_millis(50);
/// ...or as a warning from this long (what an operator should hear of).
pub const STALL_WARN: Duration = Duration::from_millis(500);

/// What a shard is doing synchronously: a reference to a constant string
/// (one word, so a slot holds it in an atomic): `&"graph build step"`.
pub type StepName = &'static &'static str;

struct Slot {
    /// Kernel thread id of the shard's thread; 0 while not watched.
    tid: AtomicI64,
    /// Milliseconds since [`epoch`] of its last heartbeat turn.
    turn_ms: AtomicU64,
    /// The synchronous step the shard is in ([`doing`]), null between steps.
    step: AtomicPtr<&'static str>,
}

thread_local! {
    /// The slot the calling thread beats, while watched.
    static MINE: Cell<Option<&'static Slot>> = const { Cell::new(None) };
}

static SLOTS: OnceLock<Vec<Slot>> = OnceLock::new();
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Signals sent (`/metrics`: `shard_watchdog_signals_total`).
static SIGNALS: AtomicU64 = AtomicU64::new(0);
/// Stalls of [`STALL`] or more, and their milliseconds running, waiting
/// for a CPU and asleep (`/metrics`: `shard_stalls_total`, ...).
static STALLS: AtomicU64 = AtomicU64::new(0);
static STALL_MS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

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
        (0..shards)
            .map(|_| Slot {
                tid: AtomicI64::new(0),
                turn_ms: AtomicU64::new(0),
                step: AtomicPtr::new(std::ptr::null_mut()),
            })
            .collect()
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
        let mut stalls: Vec<StallWatch> = slots.iter().map(|_| StallWatch::default()).collect();
        loop {
            std::thread::sleep(LOOK_EVERY);
            let now = now_ms();
            for (i, (slot, watch)) in slots.iter().zip(&mut stalls).enumerate() {
                watch.look(i, slot, now);
            }
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
        MINE.set(Some(slot));
    }
    Watched { me, tid }
}

/// Mark the calling shard as in `step` until the guard drops (for stall
/// reports; a nested step is restored to the outer one). Two relaxed
/// stores: cheap enough for every request's operation.
pub fn doing(step: StepName) -> Doing {
    let slot = MINE.get();
    let outer = slot.map_or(std::ptr::null_mut(), |s| s.step.swap(step as *const _ as *mut _, Ordering::Relaxed));
    Doing { slot, outer }
}

/// Ends a [`doing`] step when dropped.
pub struct Doing {
    slot: Option<&'static Slot>,
    outer: *mut &'static str,
}

impl Drop for Doing {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.step.store(self.outer, Ordering::Relaxed);
        }
    }
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

/// Stalls of [`STALL`] or more so far, and their milliseconds: running,
/// waiting for a CPU, asleep.
pub fn stalls() -> (u64, [u64; 3]) {
    (STALLS.load(Ordering::Relaxed), STALL_MS.each_ref().map(|a| a.load(Ordering::Relaxed)))
}

/// A thread's scheduler statistics: nanoseconds on a CPU, nanoseconds
/// runnable but waiting for one (`None` if unreadable: no schedstats).
fn schedstat(tid: i64) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// One reading of a thread's schedstat: (look time ms, (on a CPU ns,
/// waiting ns)).
type Sample = (u64, (u64, u64));

/// The watchdog thread's view of one shard: the schedstat sample from
/// before its last turn, and the stall in progress. Each look reads the
/// shard thread's schedstat (a few microseconds: 40 small reads a second
/// per shard), since a stall's split needs a sample from before it began.
#[derive(Default)]
struct StallWatch {
    tid: i64,
    /// The previous look's sample, and the turn it saw.
    last: Option<Sample>,
    last_turn: u64,
    /// The newest sample taken before the shard's last turn: where a
    /// stall that starts at that turn is measured from.
    before_turn: Option<Sample>,
    stall: Option<Stall>,
    /// Time of the last debug log line, and stalls not logged since.
    logged_ms: Option<u64>,
    unlogged: u64,
}

struct Stall {
    /// The last turn before the stall.
    turn_ms: u64,
    /// The schedstat sample from before that turn.
    before: Option<Sample>,
    /// Steps seen while it lasted (distinct, in order), and whether a look
    /// found the shard between steps.
    steps: Vec<&'static str>,
    between: bool,
}

impl StallWatch {
    fn look(&mut self, me: usize, slot: &Slot, now: u64) {
        let tid = slot.tid.load(Ordering::Acquire);
        if tid != self.tid {
            *self = StallWatch { tid, ..Default::default() };
        }
        if tid == 0 {
            return;
        }
        // Read before the turn: a turn seen now came after this sample.
        let sample = schedstat(tid);
        let turn = slot.turn_ms.load(Ordering::Relaxed);
        if turn != self.last_turn {
            self.before_turn = self.last;
            self.last_turn = turn;
        }
        if let Some(stall) = &mut self.stall {
            if turn == stall.turn_ms {
                stall.saw(slot);
            } else {
                let stall = self.stall.take().expect("a stall");
                self.ended(me, stall, turn, sample, now);
            }
        } else if now.saturating_sub(turn) >= STALL.as_millis() as u64 {
            let mut stall = Stall { turn_ms: turn, before: self.before_turn, steps: Vec::new(), between: false };
            stall.saw(slot);
            self.stall = Some(stall);
        }
        self.last = sample.map(|s| (now, s));
    }

    /// A stall ended with the turn at `turn` (ms).
    fn ended(&mut self, me: usize, stall: Stall, turn: u64, after: Option<(u64, u64)>, now: u64) {
        let took = turn.saturating_sub(stall.turn_ms);
        if took < STALL.as_millis() as u64 {
            return;
        }
        // The samples bracket the stall to within a look (25 ms) on each
        // side: the split is the bracket's, scaled to the stall.
        let (ran, waited) = match (stall.before, after) {
            (Some((t, b)), Some(a)) => {
                let bracket = now.saturating_sub(t).max(took) * 1_000_000;
                let share = |d: u64| (d as u128 * took as u128 / bracket as u128) as u64;
                (share(a.0.saturating_sub(b.0)).min(took), share(a.1.saturating_sub(b.1)))
            }
            _ => (0, 0),
        };
        let waited = waited.min(took - ran);
        let slept = took - ran - waited;
        STALLS.fetch_add(1, Ordering::Relaxed);
        for (total, ms) in STALL_MS.iter().zip([ran, waited, slept]) {
            total.fetch_add(ms, Ordering::Relaxed);
        }
        let warn = took >= STALL_WARN.as_millis() as u64;
        if !warn && self.logged_ms.is_some_and(|t| now.saturating_sub(t) < 1000) {
            self.unlogged += 1;
            return;
        }
        let mut doing = stall.steps.join(", ");
        if stall.between || doing.is_empty() {
            doing.push_str(if doing.is_empty() { "between steps" } else { ", between steps" });
        }
        let what = if after.is_none() { " (no scheduler statistics)" } else { "" };
        let report = format!(
            "shard {me}: no turn for {took} ms: its thread ran {ran} ms, waited {waited} ms for a CPU, slept {slept} ms{what}; seen in: {doing}"
        );
        if warn {
            tracing::warn!("{report}; work queued meanwhile waited");
            return;
        }
        match std::mem::take(&mut self.unlogged) {
            0 => tracing::debug!("{report}"),
            n => tracing::debug!("{report} ({n} more stalls since the last report, not logged)"),
        }
        self.logged_ms = Some(now);
    }
}

impl Stall {
    fn saw(&mut self, slot: &Slot) {
        let step = slot.step.load(Ordering::Relaxed);
        if step.is_null() {
            self.between = true;
        } else {
            // SAFETY: a non-null step is a `StepName` ([`doing`]): a
            // reference to a `&'static str` that lives for the program.
            let name: &'static str = unsafe { *step };
            if !self.steps.contains(&name) && self.steps.len() < 4 {
                self.steps.push(name);
            }
        }
    }
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
            if MINE.get().is_some_and(|mine| std::ptr::eq(mine, slot)) {
                MINE.set(None);
            }
        }
    }
}
