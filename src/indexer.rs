//! Background index builds: one task per shard, on a low-priority task
//! queue, that inserts points written since into the HNSW graphs, then
//! finds a partition wanting its IVF index (or, once that is in, its HNSW
//! graph) (re)built, copies its
//! rows in chunks, builds and calibrates the index in bounded steps (yielding the CPU
//! to request handling after every step), and installs it. Writes and
//! searches go on meanwhile; points changed since the copy are searched
//! exactly until the next build (`shards::partition`).

use crate::router::Router;
use std::rc::Rc;
use std::time::Duration;

/// How often an idle shard looks for a partition to index.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Shares of the build queue; request handling has 1000.
const BUILD_SHARES: usize = 50;

/// Time a graph-extension step may take.
const EXTEND_STEP: Duration = Duration::from_micros(500);

/// Build the HNSW graph of a partition that wants one (after its IVF index).
async fn build_graph(router: &Router, seed: u64) {
    let Some((name, uid, mut builder)) = router.with_shard(|s| s.graph_next_build(seed)) else { return };
    let mut copied = Some(false);
    while copied == Some(false) {
        copied = router.with_shard(|s| s.graph_copy_rows(&name, uid, &mut builder));
        glommio::executor().yield_task_queue_now().await;
    }
    if copied.is_none() {
        return;
    }
    while !builder.step() {
        glommio::executor().yield_task_queue_now().await;
    }
    router.metrics.index_builds_total.set(router.metrics.index_builds_total.get() + 1);
    let built = builder.finish();
    router.with_shard(|s| s.graph_install(&name, uid, built));
}

pub fn start(router: Rc<Router>, cooldown: Duration) {
    let queue = crate::runtime::background_queue(BUILD_SHARES, "ivf-build");
    let mut seed = 0x5eed_u64 ^ router.me() as u64;
    glommio::spawn_local_into(
        async move {
            loop {
                glommio::timer::sleep(CHECK_EVERY).await;
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Points written since a graph's build go in first.
                while router.with_shard(|s| s.graph_extend(EXTEND_STEP)) {
                    glommio::executor().yield_task_queue_now().await;
                }
                let Some((name, uid, mut builder)) =
                    router.with_shard(|s| s.ivf_next_build(seed, std::time::Instant::now()))
                else {
                    build_graph(&router, seed).await;
                    continue;
                };
                // Rows come over in chunks between requests.
                let mut copied = Some(false);
                while copied == Some(false) {
                    copied = router.with_shard(|s| s.ivf_copy_rows(&name, uid, &mut builder));
                    glommio::executor().yield_task_queue_now().await;
                }
                if copied.is_none() {
                    continue; // the partition was dropped
                }
                while !builder.step() {
                    glommio::executor().yield_task_queue_now().await;
                }
                let index = builder.finish();
                router.metrics.index_builds_total.set(router.metrics.index_builds_total.get() + 1);
                router.with_shard(|s| s.ivf_install(&name, uid, index));
                glommio::timer::sleep(cooldown).await;
            }
        },
        queue,
    )
    .expect("the build queue exists")
    .detach();
}
