//! A shard's node: the per-shard context every task on the shard shares
//! (its [`Shard`], WAL, snapshot schedule, metrics, rate-limit window) and
//! the calls between shards built on the [`Router`]'s transport.
//!
//! - A caller gets the reply type its operation fixes (`ops::Op::Reply`);
//!   the one check that a shard answered what it was asked is
//!   `expect_reply`, under [`Pending::wait`].
//! - Partition operations run to completion on the receiving shard and never
//!   message anyone; only home operations fan out, and only to partitions.
//!   Both hold by type: a request carries a `HomeOp` or a `PartitionOp`;
//!   `Shard::execute_partition` returns a reply, `Shard::execute_home` a
//!   `Plan` whose fan-out is a list of `PartitionOp`s. The write pipeline
//!   (WAL admission, plan, log record, fan-out) is `node/pipeline.rs`.

use crate::metrics::Metrics;
use crate::router::{Answer, AnswerRx, Inbox, Msg, Req, Router, ShardStats};
use crate::wal::{Wal, WalError};
use aionbd_shards::ops::{Cut, ExportCut, HomeReply, Op, PartitionOp, ShardReply};
use aionbd_shards::placement::ShardId;
use aionbd_shards::record::{DecodeError, LogRecord};
use aionbd_shards::{Shard, ShardError};
use glommio::channels::channel_mesh::{Receivers, Senders};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

mod pipeline;

/// The wait for a write's log record to become durable.
type Durable = Pin<Box<dyn Future<Output = Result<u64, WalError>>>>;

pub struct Node {
    /// The `Rc` this node lives in, for tasks a request leaves running
    /// (an exact scan's remaining pieces).
    this: Weak<Node>,
    /// The task queue an exact scan's remaining pieces run in
    /// (`Node::scan_pieces`).
    scan_queue: glommio::TaskQueueHandle,
    router: Router,
    shard: RefCell<Shard>,
    pub metrics: Rc<Metrics>,
    next_export: Cell<u64>,
    /// This shard's write-ahead log; `None` when persistence is off.
    wal: RefCell<Option<Rc<Wal>>>,
    snapshots: RefCell<Option<Rc<crate::snapshot::Snapshots>>>,
    /// The request rate limit's window as this shard sees it.
    pub rate: crate::rate::RateLimit,
    /// Start-up replay: points sent to peers' partitions and not yet
    /// applied there, oldest first ([`Node::replay_pace`]).
    replay_sent: RefCell<std::collections::VecDeque<crate::router::AnswerRx>>,
}

/// Replayed upserts (each at most `replay::RUN_BYTES` of points per
/// partition) a shard sends its peers before it waits for the oldest to be
/// applied. Without a bound a replay ran ahead of its peers, and the
/// channels and outboxes between shards held a large share of the log
/// until they caught up.
pub const REPLAY_IN_FLIGHT: usize = 4;

/// A logged record (snapshot or WAL) that could not be applied again.
#[derive(Debug)]
pub struct ApplyError {
    /// Which record (file and position, or LSNs).
    pub what: String,
    pub cause: ApplyCause,
}

#[derive(Debug)]
pub enum ApplyCause {
    Decode(DecodeError),
    /// The shard refused the decoded record.
    Apply(ShardError),
    /// The shard refused a restored upsert's points.
    Restore(ShardError),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.cause {
            ApplyCause::Decode(e) => write!(f, "{}: {e}", self.what),
            ApplyCause::Apply(e) => write!(f, "{}: cannot be applied: {e}", self.what),
            ApplyCause::Restore(e) => write!(f, "{}: {e}", self.what),
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            ApplyCause::Decode(e) => Some(e),
            ApplyCause::Apply(e) | ApplyCause::Restore(e) => Some(e),
        }
    }
}

/// What [`Node::snapshot_cut`] returns; every export has begun.
pub struct SnapshotCut {
    pub lsn: u64,
    pub export: u64,
    pub collections: Vec<(aionbd_shards::ops::CollectionSpec, u64)>,
    /// (collection, uid, shard holding one of its partitions).
    pub parts: Vec<(String, u64, ShardId)>,
}

/// A call whose synchronous part has run; await it for the reply of type
/// `T` its request fixes.
pub struct Pending<T> {
    answering: Answering,
    /// The reply out of the answer (`None`: the answer to another request).
    extract: fn(Answer) -> Option<T>,
}

/// Where a call's answer comes from.
enum Answering {
    Ready(Result<Answer, ShardError>),
    Remote(AnswerRx),
    /// A home operation waiting for its partition operations and, for a
    /// write, for its log record to be durable.
    Fanout(HomeReply, Vec<AnswerRx>, Option<Durable>),
    /// Work on this shard going on in its own task (an exact scan's pieces).
    Later(glommio::Task<Result<Answer, ShardError>>),
}

impl<T> Pending<T> {
    pub async fn wait(self) -> Result<T, ShardError> {
        expect_reply(self.answering.wait().await?, self.extract)
    }
}

impl Answering {
    async fn wait(self) -> Result<Answer, ShardError> {
        match self {
            Answering::Ready(r) => r,
            Answering::Remote(rx) => rx.recv().await.unwrap_or_else(|| Err(peer_gone())),
            Answering::Later(task) => task.await,
            Answering::Fanout(mut reply, acks, durable) => {
                if let Some(d) = durable {
                    d.await.map_err(wal_error)?;
                }
                for rx in acks {
                    let ack = rx.recv().await.unwrap_or_else(|| Err(peer_gone()))?;
                    reply.add_changed(expect_reply(ack, shard_reply::<PartitionOp>)?.changed());
                }
                Ok(Answer::Shard(ShardReply::Home(reply)))
            }
        }
    }
}

/// The reply its request fixes, out of an answer. Every answer goes
/// through here, the one place a wrong one (a bug) is caught.
fn expect_reply<T>(answer: Answer, extract: fn(Answer) -> Option<T>) -> Result<T, ShardError> {
    extract(answer).ok_or_else(|| ShardError::Internal("a shard answered with the reply to another request".into()))
}

fn shard_reply<Q: Op>(answer: Answer) -> Option<Q::Reply> {
    match answer {
        Answer::Shard(reply) => Q::reply(reply),
        Answer::Stats(_) => None,
    }
}

fn stats_reply(answer: Answer) -> Option<ShardStats> {
    match answer {
        Answer::Stats(stats) => Some(stats),
        Answer::Shard(_) => None,
    }
}

/// Await every call, in order.
async fn wait_all<T>(pend: Vec<Pending<T>>) -> Vec<Result<T, ShardError>> {
    let mut out = Vec::with_capacity(pend.len());
    for p in pend {
        out.push(p.wait().await);
    }
    out
}

/// How a WAL failure reaches the client.
pub fn wal_error(e: WalError) -> ShardError {
    match e {
        WalError::NoSpareSegment(_) | WalError::DiskFull(_) => {
            ShardError::InsufficientStorage(format!("disk full: the write was not applied ({e}); free space and retry"))
        }
        WalError::TooLarge { .. } => ShardError::InvalidArgument(e.to_string()),
        WalError::Io(_) | WalError::ShortWrite { .. } | WalError::Stopped(_) => {
            ShardError::Internal(format!("write-ahead log failure: {e}"))
        }
    }
}

fn peer_gone() -> ShardError {
    ShardError::Internal("peer shard stopped before answering".into())
}

impl Node {
    /// Build the node: its transport (forwarders started) and a receive
    /// task per peer.
    pub fn start(
        shard: Shard,
        n_shards: usize,
        metrics: Rc<Metrics>,
        mesh: Option<(Senders<Msg>, Receivers<Msg>)>,
    ) -> Rc<Node> {
        let (router, inboxes) = Router::new(shard.id(), n_shards, mesh);
        let node = Rc::new_cyclic(|this| Node {
            this: this.clone(),
            scan_queue: pipeline::scan_queue(),
            router,
            shard: RefCell::new(shard),
            metrics,
            next_export: Cell::new(1),
            wal: RefCell::new(None),
            snapshots: RefCell::new(None),
            rate: Default::default(),
            replay_sent: Default::default(),
        });
        for inbox in inboxes {
            node.clone().drain(inbox);
        }
        node
    }

    /// Handle a peer's messages as they come.
    fn drain(self: Rc<Self>, (peer, inbox): Inbox) {
        glommio::spawn_local(async move {
            while let Some(msg) = inbox.recv().await {
                self.receive(peer, msg);
                // recv() does not yield while messages are waiting; let
                // this shard's own requests run between peer requests,
                // or a busy peer can starve them.
                futures_lite::future::yield_now().await;
            }
        })
        .detach();
    }

    pub fn me(&self) -> ShardId {
        self.router.me()
    }

    pub fn n_shards(&self) -> usize {
        self.router.n_shards()
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Run `f` on this shard's data (synchronously; never across an await).
    /// Run `f` on this shard's data, as `step` for stall reports
    /// (`watchdog::doing`).
    pub fn with_shard<R>(&self, step: crate::watchdog::StepName, f: impl FnOnce(&mut Shard) -> R) -> R {
        let _doing = crate::watchdog::doing(step);
        f(&mut self.shard.borrow_mut())
    }

    pub fn set_wal(&self, wal: Rc<Wal>) {
        *self.wal.borrow_mut() = Some(wal);
    }

    pub fn set_snapshots(&self, s: Rc<crate::snapshot::Snapshots>) {
        *self.snapshots.borrow_mut() = Some(s);
    }

    pub fn snapshots(&self) -> Option<Rc<crate::snapshot::Snapshots>> {
        self.snapshots.borrow().clone()
    }

    pub fn wal(&self) -> Option<Rc<Wal>> {
        self.wal.borrow().clone()
    }

    /// A new export id, unique in this process (several exports of one
    /// partition may run at once: a snapshot, backups, NDJSON exports).
    pub fn new_export_id(&self) -> u64 {
        let n = self.next_export.get();
        self.next_export.set(n + 1);
        ((self.me() as u64) << 48) | n
    }

    /// Re-apply one logged record (start-up, before serving: snapshot
    /// records, then WAL records); its partition operations go to their
    /// shards in order. `what` names the record in errors.
    pub fn apply_logged(&self, kind: u8, body: &[u8], what: &dyn Fn() -> String) -> Result<(), ApplyError> {
        let fail = |cause| ApplyError { what: what(), cause };
        let rec = LogRecord::decode(kind, body).map_err(|e| fail(ApplyCause::Decode(e)))?;
        let _doing = crate::watchdog::doing(&"replay of a logged record");
        let plan = self.shard.borrow_mut().apply_record(rec).map_err(|e| fail(ApplyCause::Apply(e)))?;
        for (to, op) in plan.fanout {
            drop(self.router.request(to, Req::Shard(op.into())));
        }
        Ok(())
    }

    /// Start-up replay of one logged record (snapshot or WAL): like
    /// [`Router::apply_logged`], but an `Upsert` only updates the catalog
    /// here and each partition's shard decodes and applies its own points,
    /// so all cores share the work of a restart.
    pub fn restore_logged(&self, kind: u8, body: &[u8], what: &dyn Fn() -> String) -> Result<(), ApplyError> {
        if kind != aionbd_shards::record::kind::UPSERT {
            return self.apply_logged(kind, body, what);
        }
        let fail = |e| ApplyError { what: what(), cause: ApplyCause::Restore(e) };
        let _doing = crate::watchdog::doing(&"replay of a logged upsert");
        let ops = self.shard.borrow_mut().restore_upsert(body).map_err(fail)?;
        for (shard, op) in ops {
            if shard == self.me() {
                self.shard.borrow_mut().execute_partition(op.into()).map_err(fail)?;
            } else {
                let sent = self.router.request(shard, Req::Shard(op.into()));
                self.replay_sent.borrow_mut().push_back(sent);
            }
        }
        Ok(())
    }

    /// Called by a replay between records (`max`: [`REPLAY_IN_FLIGHT`]) and
    /// at its end (0): wait until at most `max` of the upserts it sent peers
    /// are still being applied there. Their answers are not checked, as
    /// when nothing waited for them. A peer that fails its start-up does
    /// not leave this waiting: the failure ends the process (`runtime`).
    pub async fn replay_pace(&self, max: usize) {
        loop {
            let oldest = {
                let mut sent = self.replay_sent.borrow_mut();
                if sent.len() <= max {
                    return;
                }
                sent.pop_front().expect("more than the bound")
            };
            let _ = oldest.recv().await;
        }
    }

    /// A snapshot's cut of every collection homed here (see [`ExportCut`]):
    /// the LSN of the last write queued to the WAL, and an export begun on
    /// every partition of those collections.
    pub async fn snapshot_cut(&self) -> Result<SnapshotCut, ShardError> {
        let export = self.new_export_id();
        let Cut { lsn, collections, .. } =
            self.call(self.me(), ExportCut { export, only: Vec::new(), tenant: None }).wait().await?;
        let placement = self.shard.borrow().placement();
        let parts = collections
            .iter()
            .flat_map(|(spec, uid)| placement.shards_of(&spec.name).into_iter().map(|s| (spec.name.clone(), *uid, s)))
            .collect();
        Ok(SnapshotCut { lsn, export, collections, parts })
    }

    /// Resolves once every message this shard sent so far has been
    /// processed by its peer (channels are FIFO per pair).
    pub async fn barrier(&self) {
        let peers: Vec<ShardId> = (0..self.n_shards()).filter(|&s| s != self.me()).collect();
        let _ = self.scatter_stats(&peers).await;
    }

    /// Issue `op` to shard `to`. The synchronous part (a local execution, or
    /// the push into the peer's outbox) happens now, before this returns.
    pub fn call<Q: Op>(&self, to: ShardId, op: Q) -> Pending<Q::Reply> {
        Pending { answering: self.issue(to, Req::Shard(op.into())), extract: shard_reply::<Q> }
    }

    /// Ask shard `to` for its statistics and metrics.
    pub fn stats(&self, to: ShardId) -> Pending<ShardStats> {
        Pending { answering: self.issue(to, Req::Stats), extract: stats_reply }
    }

    fn issue(&self, to: ShardId, req: Req) -> Answering {
        if to == self.me() {
            self.execute_here(req)
        } else {
            Answering::Remote(self.router.request(to, req))
        }
    }

    /// Issue `op` to every shard in `to` (same order), then await them all.
    pub fn scatter<Q: Op>(
        &self,
        to: &[ShardId],
        op: impl Fn() -> Q,
    ) -> impl Future<Output = Vec<Result<Q::Reply, ShardError>>> {
        wait_all(self.issue_all(to, |s| self.call(s, op())))
    }

    /// [`Router::stats`] of every shard in `to`.
    pub fn scatter_stats(&self, to: &[ShardId]) -> impl Future<Output = Vec<Result<ShardStats, ShardError>>> {
        wait_all(self.issue_all(to, |s| self.stats(s)))
    }

    /// Issue a call to every shard in `to` (same order): remote sends
    /// first, so peers work while the local part runs.
    fn issue_all<T>(&self, to: &[ShardId], call: impl Fn(ShardId) -> Pending<T>) -> Vec<Pending<T>> {
        let mut pend: Vec<Option<Pending<T>>> =
            to.iter().map(|&s| if s == self.me() { None } else { Some(call(s)) }).collect();
        for (slot, &s) in pend.iter_mut().zip(to) {
            if s == self.me() {
                *slot = Some(call(s));
            }
        }
        pend.into_iter().map(|p| p.expect("every slot issued")).collect()
    }

    /// Issue `steps` pieces of work to every shard in `to`: every remote
    /// piece is sent first (a peer runs one per turn), then this shard's own
    /// pieces run one per turn of the calling task, which yields in between.
    /// So work split into steps never holds a shard for its whole length
    /// and both shards still work at once. Answers are `[step][shard]`.
    pub async fn scatter_steps<Q: Op>(
        &self,
        to: &[ShardId],
        steps: usize,
        op: impl Fn(usize) -> Q,
    ) -> Vec<Vec<Result<Q::Reply, ShardError>>> {
        let mut pend: Vec<Vec<Option<Pending<Q::Reply>>>> =
            (0..steps).map(|i| to.iter().map(|&s| (s != self.me()).then(|| self.call(s, op(i)))).collect()).collect();
        if to.contains(&self.me()) {
            for (i, row) in pend.iter_mut().enumerate() {
                if i > 0 {
                    futures_lite::future::yield_now().await;
                }
                for (slot, &s) in row.iter_mut().zip(to) {
                    if s == self.me() {
                        *slot = Some(self.call(s, op(i)));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(steps);
        for row in pend {
            let mut answers = Vec::with_capacity(row.len());
            for p in row {
                answers.push(p.expect("every slot issued").wait().await);
            }
            out.push(answers);
        }
        out
    }

    /// Handle one message from a peer. Never awaits.
    fn receive(self: &Rc<Self>, peer: ShardId, msg: Msg) {
        match msg {
            Msg::Rate { tenant, minute, count } => self.rate.record_peer(&tenant, peer, minute, count),
            Msg::Response { req_id, answer } => self.router.deliver(req_id, answer),
            Msg::PeerMemory { bytes } => self.shard.borrow_mut().record_peer_memory(peer, bytes),
            Msg::Request { req_id, req } => match self.execute_here(req) {
                Answering::Ready(answer) => self.router.respond(peer, req_id, answer),
                answering => {
                    let r = self.clone();
                    glommio::spawn_local(async move {
                        let answer = answering.wait().await;
                        r.router.respond(peer, req_id, answer);
                    })
                    .detach();
                }
            },
        }
    }
}
