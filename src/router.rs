//! Cross-shard transport: the messages between shards and how they travel.
//! Every shard's [`Node`](crate::node::Node) holds one [`Router`].
//!
//! Rules that keep it deadlock-free and ordered (ARCHITECTURE.md):
//! - One glommio full mesh carries both requests and responses. Receive loops
//!   never await a send: a message goes straight into the peer's channel when
//!   it has room and nothing is queued before it, else into an unbounded
//!   per-peer outbox drained by one forwarder task per peer. So receive loops
//!   always drain, a full channel cannot deadlock two shards, and a send
//!   reaches the peer before the sender's next synchronous work (a scatter's
//!   remote parts run while the local part scans).
//! - Sends happen synchronously, in program order (direct only while the
//!   outbox is empty), so all messages from shard A to shard B arrive in the
//!   order A issued them. The home shard relies on this to order a
//!   collection's writes on every partition.

use crate::metrics::MetricsSnapshot;
use aionbd_shards::ops::{ShardDataStats, ShardOp, ShardReply};
use aionbd_shards::placement::ShardId;
use aionbd_shards::ShardError;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedReceiver;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// What crosses the mesh.
pub enum Msg {
    Request {
        req_id: u64,
        req: Req,
    },
    Response {
        req_id: u64,
        answer: Result<Answer, ShardError>,
    },
    /// The sender's memory as it last measured it (for the memory budget;
    /// `Shard::record_peer_memory`). Needs no answer.
    PeerMemory {
        bytes: u64,
    },
    /// The sender's request count in a rate-limit window (`rate`).
    Rate {
        tenant: std::sync::Arc<str>,
        minute: u64,
        count: u64,
    },
}

/// What a request asks of the receiving shard.
pub enum Req {
    /// A home or partition operation on its data.
    Shard(ShardOp),
    /// Its data statistics and HTTP metrics.
    Stats,
}

/// A shard's answer: the reply to an operation, or statistics with the
/// shard's HTTP metrics.
#[derive(Debug)]
pub enum Answer {
    Shard(ShardReply),
    Stats(ShardStats),
}

/// A shard's data statistics and its HTTP metrics (`Req::Stats`).
pub type ShardStats = (ShardDataStats, Box<MetricsSnapshot>);

type AnswerTx = LocalSender<Result<Answer, ShardError>>;
/// Where the answer to a request sent to a peer arrives.
pub type AnswerRx = LocalReceiver<Result<Answer, ShardError>>;

/// The messages from one peer, in the order it sent them.
pub type Inbox = (ShardId, ConnectedReceiver<Msg>);

/// This shard's end of the mesh: outboxes to every peer and the requests
/// it waits on.
pub struct Router {
    me: ShardId,
    n_shards: usize,
    outboxes: Vec<Option<LocalSender<Msg>>>,
    /// Messages waiting in each outbox (sent directly only when 0).
    queued: Rc<Vec<Cell<usize>>>,
    senders: Option<Rc<Senders<Msg>>>,
    pending: RefCell<HashMap<u64, AnswerTx>>,
    next_req: Cell<u64>,
}

impl Router {
    /// The transport, with its forwarder tasks started, and the inboxes of
    /// every peer (the node drains them: handling a message needs the
    /// shard).
    pub fn new(me: ShardId, n_shards: usize, mesh: Option<(Senders<Msg>, Receivers<Msg>)>) -> (Router, Vec<Inbox>) {
        let mut outboxes: Vec<Option<LocalSender<Msg>>> = (0..n_shards).map(|_| None).collect();
        let mut forwarders = Vec::new();
        let mut inboxes = Vec::new();
        let mut direct = None;
        if let Some((senders, mut receivers)) = mesh {
            let senders = Rc::new(senders);
            direct = Some(senders.clone());
            for (peer, outbox) in outboxes.iter_mut().enumerate() {
                if peer == me {
                    continue;
                }
                let (tx, rx) = local_channel::new_unbounded::<Msg>();
                *outbox = Some(tx);
                forwarders.push((peer, rx, senders.clone()));
            }
            inboxes = receivers.streams();
        }
        let router = Router {
            me,
            n_shards,
            outboxes,
            queued: Rc::new((0..n_shards).map(|_| Cell::new(0)).collect()),
            senders: direct,
            pending: RefCell::new(HashMap::new()),
            next_req: Cell::new(1),
        };
        for (peer, rx, senders) in forwarders {
            let queued = router.queued.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    let sent = senders.send_to(peer, msg).await;
                    queued[peer].set(queued[peer].get() - 1);
                    if sent.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
        (router, inboxes)
    }

    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn n_shards(&self) -> usize {
        self.n_shards
    }

    /// Messages waiting in the outbox to each shard (metrics).
    pub fn backlog(&self) -> Vec<u64> {
        self.queued.iter().map(|q| q.get() as u64).collect()
    }

    /// Tell every other shard the memory this shard's data holds.
    pub fn report_memory(&self, bytes: u64) {
        for peer in (0..self.n_shards).filter(|&p| p != self.me) {
            self.push(peer, Msg::PeerMemory { bytes });
        }
    }

    /// Tell every other shard this shard's count in a rate-limit window.
    pub fn report_rate(&self, tenant: &std::sync::Arc<str>, minute: u64, count: u64) {
        for peer in (0..self.n_shards).filter(|&p| p != self.me) {
            self.push(peer, Msg::Rate { tenant: tenant.clone(), minute, count });
        }
    }

    /// Send `req` to shard `to` now; its answer arrives on the receiver.
    pub fn request(&self, to: ShardId, req: Req) -> AnswerRx {
        let req_id = self.next_req.get();
        self.next_req.set(req_id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(req_id, tx);
        self.push(to, Msg::Request { req_id, req });
        rx
    }

    /// Answer request `req_id` of shard `to`.
    pub fn respond(&self, to: ShardId, req_id: u64, answer: Result<Answer, ShardError>) {
        self.push(to, Msg::Response { req_id, answer });
    }

    /// Hand a peer's answer to the request waiting for it.
    pub fn deliver(&self, req_id: u64, answer: Result<Answer, ShardError>) {
        if let Some(tx) = self.pending.borrow_mut().remove(&req_id) {
            // The caller may have timed out and dropped its end.
            let _ = tx.try_send(answer);
        }
    }

    fn push(&self, to: ShardId, msg: Msg) {
        let (Some(senders), Some(Some(outbox))) = (&self.senders, self.outboxes.get(to)) else { return };
        let msg = if self.queued[to].get() == 0 {
            use glommio::{GlommioError, ResourceType};
            match senders.try_send_to(to, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => msg,
                // Peer gone (shutdown): its callers see "peer stopped".
                Err(_) => return,
            }
        } else {
            msg
        };
        // Unbounded: never fails while the forwarder lives.
        self.queued[to].set(self.queued[to].get() + 1);
        if outbox.try_send(msg).is_err() {
            self.queued[to].set(self.queued[to].get() - 1);
        }
    }
}
