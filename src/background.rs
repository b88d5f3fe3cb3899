//! A shard's background tasks and the task queue they run on: the
//! heartbeat every shard keeps (a glommio workaround and the watchdog's
//! pulse), the memory reports of the memory budget, and the low-priority
//! queues of index builds, snapshots and exports.

use crate::node::Node;
use std::rc::Rc;
use std::time::Duration;

/// Longest a shard goes without polling for network and channel events
/// while a background queue (index builds, snapshots) has work. Glommio
/// runs a busy queue step after step and polls only when the preempt timer
/// fires; requests and shard messages wait for that poll. A task that
/// yields its queue (`yield_task_queue_now`, the indexer's steps) ends the
/// round and so has the shard poll at once (`third_party/glommio`); this
/// bounds the wait behind work that does not.
const BACKGROUND_POLL: Duration = Duration::from_micros(500);

/// How often every shard wakes up whatever it is doing.
const HEARTBEAT: Duration = Duration::from_millis(5);

/// Least time between two measurements of a shard's memory (memory budget).
const MEMORY_REPORT_EVERY: Duration = Duration::from_millis(20);

/// With a memory budget, every shard measures the memory its data holds
/// and tells the other shards when it changed, so each home shard admits
/// new points against the whole process's use (`Shard::memory_in_use`).
/// Measuring walks the partitions and payload indexes, so the pause after
/// a measurement is at least 20x its length (at most ~5 % of the shard).
pub fn start_memory_reports(node: Rc<Node>) {
    glommio::spawn_local(async move {
        let mut last = None;
        loop {
            let t0 = std::time::Instant::now();
            let own = node.with_shard(&"memory measurement", |s| s.measure_memory());
            let took = t0.elapsed();
            if last != Some(own) {
                // Nothing to wait for: each peer just records it.
                node.router().report_memory(own);
                last = Some(own);
            }
            glommio::timer::sleep(MEMORY_REPORT_EVERY.max(took * 20)).await;
        }
    })
    .detach();
}

/// Work around a glommio 0.9 scheduler bug: when the preempt timer fires
/// before a round runs any task queue, the executor can park although a
/// queue is runnable, and sleeps until some I/O or timer completes (fixed
/// upstream in glommio/glommio#53, not in a release; the patched copy this
/// build uses, third_party/glommio, carries the fix, and the heartbeat
/// stays as the bound should another such path exist). A request
/// whose handling was runnable then waited for the client's next request,
/// seen as rare 30 s test timeouts under CPU contention. A pending timer
/// bounds that sleep, so every shard keeps one. Its turns are the watchdog's
/// pulse (a shard without one is signalled, and its stall reported:
/// `watchdog`); it notes how late each came (`shard_turn_lateness`), and
/// reads the wall clock for the shard's requests (`clock::tick`).
pub fn start_heartbeat(me: usize) {
    glommio::spawn_local(async move {
        let mut last = std::time::Instant::now();
        loop {
            glommio::timer::sleep(HEARTBEAT).await;
            crate::watchdog::beat(me);
            crate::clock::tick();
            let now = std::time::Instant::now();
            crate::watchdog::turn_late((now - last).saturating_sub(HEARTBEAT));
            last = now;
        }
    })
    .detach();
}

/// A low-priority task queue for background work: `shares` against request
/// handling's 1000, and the reactor polled every [`BACKGROUND_POLL`] while
/// it runs, so requests arriving meanwhile are not held back.
pub fn background_queue(shares: usize, name: &str) -> glommio::TaskQueueHandle {
    background_queue_with(glommio::Shares::Static(shares), name)
}

/// [`background_queue`] with shares that may change (the indexer's).
pub fn background_queue_with(shares: glommio::Shares, name: &str) -> glommio::TaskQueueHandle {
    glommio::executor().create_task_queue(shares, glommio::Latency::Matters(BACKGROUND_POLL), name)
}
