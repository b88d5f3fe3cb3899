//! Replaying the log records of a random write history rebuilds exactly the
//! state the history produced: the property WAL recovery rests on.

use crate::ops::{
    CollectionSpec, CreateCollection, DeleteCollection, DeletePayloadKeys, DeletePoint, GetCollection, GetPoint,
    HomeWrite, ListPoints, Op, PageFrom, PointIn, SetPayload, ShardOp, ShardReply, Upsert,
};
use crate::payload::{Payload, PayloadValue, Scalar};
use crate::placement::Placement;
use crate::record::LogRecord;
use crate::{Shard, ShardLimits};
use proptest::prelude::*;

/// Shards in one thread; fan-out is delivered at once, in order.
struct Cluster {
    shards: Vec<Shard>,
    placement: Placement,
    /// Per home shard, the log it wrote.
    logs: Vec<Vec<(u8, Vec<u8>)>>,
}

impl Cluster {
    fn new(n: usize, partitions: usize) -> Self {
        let placement = Placement::new(n, partitions);
        let limits = ShardLimits {
            max_points_per_collection: 40,
            memory_budget_bytes: 0,
            hnsw: Default::default(),
            tenant_quota: Default::default(),
        };
        Cluster {
            shards: (0..n).map(|i| Shard::new(i, placement, limits)).collect(),
            placement,
            logs: vec![Vec::new(); n],
        }
    }

    fn run(&mut self, to: usize, op: impl Into<ShardOp>) -> Result<ShardReply, crate::ShardError> {
        let plan = match op.into() {
            ShardOp::Home(op) => self.shards[to].execute_home(op)?,
            ShardOp::Partition(op) => return self.shards[to].execute_partition(op).map(ShardReply::Partition),
        };
        if let Some(log) = plan.log {
            self.logs[to].push(log);
        }
        for (target, op) in plan.fanout {
            self.shards[target].execute_partition(op).expect("partition ops never fail");
        }
        Ok(ShardReply::Home(plan.reply))
    }

    /// [`Cluster::run`] with the request's own reply type.
    fn ask<Q: Op>(&mut self, to: usize, q: Q) -> Result<Q::Reply, crate::ShardError> {
        self.run(to, q).map(|r| Q::reply(r).expect("a shard answers the request it was asked"))
    }

    fn replay_into(&self, fresh: &mut Cluster) {
        for (home, log) in self.logs.iter().enumerate() {
            for (kind, body) in log {
                let rec = LogRecord::decode(*kind, body).expect("own records decode");
                let plan = fresh.shards[home].apply_record(rec).expect("replay applies");
                for (target, op) in plan.fanout {
                    fresh.shards[target].execute_partition(op).unwrap();
                }
            }
        }
    }

    /// Everything a client can observe about the collections.
    fn observe(&mut self, names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let home = self.placement.home(name);
            let info = self.ask(home, GetCollection { name: name.to_string() });
            let Ok(info) = info else {
                out.push(format!("{name}: absent"));
                continue;
            };
            out.push(format!("{name}: {:?} count {}", info.spec, info.point_count));
            let page = self.ask(home, ListPoints { name: name.to_string(), from: PageFrom::Offset(0), limit: 1000 });
            let Ok(page) = page else { panic!("list") };
            for id in page.ids {
                let shard = self.placement.shard_of_point(name, id);
                let p = self.ask(shard, GetPoint { name: name.to_string(), id });
                out.push(format!("{name}/{id}: {p:?}"));
            }
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Action {
    Create(usize, usize),
    Drop(usize),
    Upsert(usize, Vec<(u64, f32, i64)>),
    Delete(usize, u64),
    SetPayload(usize, Vec<u64>, i64),
    DeleteKeys(usize, Vec<u64>),
}

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

fn arb_action() -> impl Strategy<Value = Action> {
    let c = 0usize..NAMES.len();
    let ids = prop::collection::vec(0u64..30, 1..6);
    prop_oneof![
        1 => (c.clone(), 1usize..4).prop_map(|(c, d)| Action::Create(c, d)),
        1 => c.clone().prop_map(Action::Drop),
        6 => (c.clone(), prop::collection::vec((0u64..30, -5f32..5.0, 0i64..4), 1..8)).prop_map(|(c, p)| Action::Upsert(c, p)),
        2 => (c.clone(), 0u64..30).prop_map(|(c, id)| Action::Delete(c, id)),
        2 => (c.clone(), ids.clone(), 0i64..4).prop_map(|(c, ids, v)| Action::SetPayload(c, ids, v)),
        1 => (c, ids).prop_map(|(c, ids)| Action::DeleteKeys(c, ids)),
    ]
}

fn op_of(a: &Action, dims: &[usize; 3]) -> (String, HomeWrite) {
    let name = |c: usize| NAMES[c].to_string();
    let payload = |v: i64| -> Payload { [("k".to_string(), PayloadValue::One(Scalar::Int(v)))].into_iter().collect() };
    match a {
        Action::Create(c, d) => {
            (name(*c), CreateCollection(CollectionSpec { name: name(*c), dimension: *d, strict_finite: true }).into())
        }
        Action::Drop(c) => (name(*c), DeleteCollection { name: name(*c) }.into()),
        Action::Upsert(c, pts) => {
            let points =
                pts.iter().map(|&(id, x, v)| PointIn { id, values: vec![x; dims[*c]], payload: payload(v) }).collect();
            (name(*c), Upsert { name: name(*c), points }.into())
        }
        Action::Delete(c, id) => (name(*c), DeletePoint { name: name(*c), id: *id }.into()),
        Action::SetPayload(c, ids, v) => {
            let patch: Payload = [("p".to_string(), PayloadValue::One(Scalar::Int(*v)))].into_iter().collect();
            (name(*c), SetPayload { name: name(*c), ids: ids.clone(), patch }.into())
        }
        Action::DeleteKeys(c, ids) => {
            (name(*c), DeletePayloadKeys { name: name(*c), ids: ids.clone(), keys: vec!["k".into()] }.into())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]
    #[test]
    fn replaying_the_logs_rebuilds_the_same_state(
        actions in prop::collection::vec(arb_action(), 1..60),
        shards in 1usize..4,
        parts_seed in 0usize..3,
    ) {
        let partitions = 1 + parts_seed % shards;
        let mut live = Cluster::new(shards, partitions);
        // Track each collection's current dimension so most upserts are valid
        // (invalid ones are refused and must leave no log record).
        let mut dims = [1usize; 3];
        for a in &actions {
            if let Action::Create(c, d) = a {
                if live.run(live.placement.home(NAMES[*c]), GetCollection { name: NAMES[*c].into() }).is_err() {
                    dims[*c] = *d;
                }
            }
            let (name, op) = op_of(a, &dims);
            let home = live.placement.home(&name);
            let _ = live.run(home, op);
        }
        let mut rebuilt = Cluster::new(shards, partitions);
        live.replay_into(&mut rebuilt);
        prop_assert_eq!(rebuilt.observe(&NAMES), live.observe(&NAMES));
    }
}
