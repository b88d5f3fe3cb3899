//! Running a request on this shard, synchronously up to its fan-out: a
//! partition operation runs to completion; a home operation goes through
//! the write pipeline (WAL admission, plan, log record queued in apply
//! order, partition operations sent on); statistics gather the shard's
//! metrics with its WAL's and snapshots' counters.

use super::{wal_error, Answering, Durable, Node};
use crate::router::{Answer, Req, ShardStats};
use aionbd_shards::ops::{
    HomeOp, HomeReadReply, HomeReply, PartitionHits, PartitionOp, PartitionReply, Plan, ShardOp, ShardReply,
};
use aionbd_shards::shard::{ExactScan, SearchStart};
use aionbd_shards::ShardError;

impl Node {
    /// Run a request on this shard: synchronously up to its fan-out.
    pub(super) fn execute_here(&self, req: Req) -> Answering {
        match req {
            Req::Stats => Answering::Ready(Ok(Answer::Stats(self.stats_here()))),
            Req::Shard(ShardOp::Partition(PartitionOp::Search(op))) => {
                let _doing = crate::watchdog::doing(&"Search");
                let start = self.shard.borrow_mut().search_start(op);
                match start {
                    SearchStart::Done(hits) => Answering::Ready(hits.map(search_answer)),
                    SearchStart::Pieces(scan) => Answering::Later(self.scan_pieces(scan)),
                }
            }
            Req::Shard(ShardOp::Partition(op)) => {
                if op.changes_data() {
                    self.metrics.write_applied();
                }
                let _doing = crate::watchdog::doing(op.name());
                let reply = self.shard.borrow_mut().execute_partition(op);
                Answering::Ready(reply.map(|r| Answer::Shard(ShardReply::Partition(r))))
            }
            Req::Shard(ShardOp::Home(op)) => self.execute_home(op),
        }
    }

    /// The rest of an exact scan, a piece per turn in a task of its own: the
    /// requests that reach this shard meanwhile run between pieces. The
    /// task runs in its own queue ([`scan_queue`]), which has the executor
    /// read the network at least every 500 us while it runs, so a request
    /// arriving during the scan waits for the current piece, not for the
    /// preempt timer of the request queue (`runtime::PREEMPT_TIMER`, 5 ms).
    fn scan_pieces(&self, mut scan: ExactScan) -> glommio::Task<Result<Answer, ShardError>> {
        let node = self.this.upgrade().expect("a node outlives its requests");
        let pieces = async move {
            loop {
                match crate::debug_hooks::scan_piece_pause() {
                    Some(pause) => glommio::timer::sleep(pause).await,
                    None => futures_lite::future::yield_now().await,
                }
                let _doing = crate::watchdog::doing(&"Search: a piece of an exact scan");
                if let Some(hits) = node.shard.borrow_mut().search_continue(&mut scan) {
                    return hits.map(search_answer);
                }
            }
        };
        glommio::spawn_local_into(pieces, self.scan_queue).expect("the scan queue lives as long as its shard")
    }

    /// A home operation: a write is admitted by the WAL before it is
    /// planned, and its record queued in the same step (log order is apply
    /// order); the plan's partition operations are sent on.
    fn execute_home(&self, op: HomeOp) -> Answering {
        if let HomeOp::Write(_) = op {
            self.metrics.write_applied();
            if let Some(wal) = self.wal.borrow().as_ref() {
                if let Err(e) = wal.admit() {
                    return Answering::Ready(Err(wal_error(e)));
                }
            }
        }
        let doing = crate::watchdog::doing(op.name());
        let plan = self.shard.borrow_mut().execute_home(op);
        drop(doing);
        match plan {
            Err(e) => Answering::Ready(Err(e)),
            Ok(Plan { mut reply, fanout, log }) => {
                // Queue the record now, in apply order; acknowledge later.
                let mut durable: Option<Durable> = match (log, self.wal.borrow().as_ref()) {
                    (Some((kind, body)), Some(wal)) => Some(Box::pin(wal.append(kind, body))),
                    _ => None,
                };
                // An export's cut is the last write queued so far; it is
                // answered once that is durable, so an export never holds a
                // write a crash could still take back.
                if let (HomeReply::Read(HomeReadReply::ExportCut(cut)), Some(wal)) =
                    (&mut reply, self.wal.borrow().as_ref())
                {
                    cut.lsn = wal.last_assigned();
                    let (wal, upto) = (wal.clone(), cut.lsn);
                    durable = Some(Box::pin(async move { wal.wait_durable(upto).await.map(|()| upto) }));
                }
                if fanout.is_empty() && durable.is_none() {
                    return Answering::Ready(Ok(Answer::Shard(ShardReply::Home(reply))));
                }
                let acks = fanout.into_iter().map(|(to, op)| self.router.request(to, Req::Shard(op.into()))).collect();
                Answering::Fanout(reply, acks, durable)
            }
        }
    }

    /// This shard's data statistics and metrics, with its WAL's and
    /// snapshots' counters.
    fn stats_here(&self) -> ShardStats {
        let data = self.shard.borrow().data_stats();
        let mut m = self.metrics.snapshot();
        if let Some(wal) = self.wal.borrow().as_ref() {
            m.wal_records = wal.records.get();
            m.wal_syncs = wal.syncs.get();
            m.wal_group_waits = wal.gathers.get();
            m.wal_group_waits_missed = wal.gathers_missed.get();
            m.wal_failed_shards = wal.is_failed() as u64;
            m.wal_disk_full_shards = wal.is_disk_full() as u64;
            m.wal_shards = 1;
            m.wal_size_bytes = wal.segment_count() * wal.segment_bytes();
            m.wal_batches = wal.batches.get();
        }
        let mut gauges = crate::metrics::ShardGauges {
            shard: self.me(),
            requests_in_flight: m.in_flight,
            connections_open: m.connections_open,
            backlog_to: self.router.backlog(),
            turn_lateness_us: crate::watchdog::recent_lateness().as_micros() as u64,
            ..Default::default()
        };
        if let Some(wal) = self.wal.borrow().as_ref() {
            m.fsync_latency = wal.io().sync_latency.borrow().clone();
            gauges.wal_segments = wal.segment_count();
        }
        if let Some(s) = self.snapshots.borrow().as_ref() {
            m.snapshots_taken = s.taken.get();
            m.snapshots_failed = s.failed.get();
            m.snapshots_in_flight = s.in_flight.get() as u64;
            gauges.snapshot_age_s = s.last_taken.get().elapsed().as_secs_f64();
            gauges.wal_bytes_since_snapshot = s.wal_bytes_since(self);
        }
        m.shards = vec![gauges];
        (data, Box::new(m))
    }
}

/// The shard's queue for exact scans' remaining pieces: the shares of
/// request handling (1000), so a scan and the requests beside it split the
/// core evenly, and the reactor polled every 500 us while it runs
/// (`background::background_queue`).
pub(super) fn scan_queue() -> glommio::TaskQueueHandle {
    crate::background::background_queue(1000, "exact scans")
}

fn search_answer(hits: PartitionHits) -> Answer {
    Answer::Shard(ShardReply::Partition(PartitionReply::Search(hits)))
}
