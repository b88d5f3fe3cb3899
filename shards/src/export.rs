//! Copying a partition out for a snapshot without stopping it.
//!
//! A snapshot must show every partition exactly as it was at the home
//! shard's cut (the LSN the snapshot covers), yet copying a large partition
//! in one go would stall its shard's searches. So the copy is taken in
//! chunks while writes go on, copy-before-write style: at the cut the
//! export remembers the ids present; before a later write touches one of
//! them that has not been copied yet, its pre-write value is copied first.
//! Ids born after the cut are never exported. The result is the state at
//! the cut, whatever the interleaving (property-tested below).

use crate::ops::PointIn;
use crate::partition::Partition;
use std::collections::HashSet;

#[derive(Debug)]
pub struct Export {
    /// Ids present at the cut, in slot order at that moment.
    cut_ids: Vec<u64>,
    cursor: usize,
    /// Ids already copied, copied early, or born after the cut: never
    /// exported (again).
    settled: HashSet<u64>,
    /// Pre-write copies waiting to go out with the next chunk.
    early: Vec<PointIn>,
}

fn copy_point(p: &Partition, id: u64) -> Option<PointIn> {
    p.get(id).map(|(values, payload)| PointIn { id, values: values.to_vec(), payload: payload.clone() })
}

impl Export {
    /// Start an export at the current state of `p` (cheap: copies the ids).
    pub fn begin(p: &Partition) -> Export {
        Export { cut_ids: p.ids().to_vec(), cursor: 0, settled: HashSet::new(), early: Vec::new() }
    }

    /// Call before any change to point `id` of `p`.
    pub fn before_write(&mut self, p: &Partition, id: u64) {
        if self.settled.insert(id) {
            // Present now and not settled: it was present at the cut (an id
            // inserted after the cut was settled by that insert) and is
            // unchanged since, so this is its value at the cut.
            if let Some(point) = copy_point(p, id) {
                self.early.push(point);
            }
        }
    }

    /// Up to about `max` points; `true` once everything has been handed out.
    pub fn next_chunk(&mut self, p: &Partition, max: usize) -> (Vec<PointIn>, bool) {
        let mut out = std::mem::take(&mut self.early);
        while out.len() < max && self.cursor < self.cut_ids.len() {
            let id = self.cut_ids[self.cursor];
            self.cursor += 1;
            if self.settled.insert(id) {
                out.push(copy_point(p, id).expect("an unsettled id from the cut is still present"));
            }
        }
        let done = self.cursor == self.cut_ids.len() && self.early.is_empty();
        (out, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Step {
        Upsert(u64, f32),
        Delete(u64),
        Chunk(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..40, -5.0f32..5.0).prop_map(|(id, v)| Step::Upsert(id, v)),
            (0u64..40).prop_map(Step::Delete),
            (1usize..8).prop_map(Step::Chunk),
        ]
    }

    fn state(p: &Partition, ids: impl Iterator<Item = u64>) -> BTreeMap<u64, f32> {
        ids.filter_map(|id| p.get(id).map(|(v, _)| (id, v[0]))).collect()
    }

    proptest! {
        /// Whatever writes interleave with the chunks, the exported points
        /// are exactly the partition at the cut.
        #[test]
        fn export_equals_state_at_cut(
            before in proptest::collection::vec((0u64..40, -5.0f32..5.0), 0..40),
            steps in proptest::collection::vec(step(), 0..80),
        ) {
            let mut p = Partition::new(2);
            for (id, v) in before {
                p.upsert(id, &[v, 0.0], Payload::new());
            }
            let at_cut = state(&p, 0..40);
            let mut ex = Export::begin(&p);
            let mut got = BTreeMap::new();
            let mut done = false;
            let take = |ex: &mut Export, p: &Partition, n: usize, got: &mut BTreeMap<u64, f32>| {
                let (pts, d) = ex.next_chunk(p, n);
                for pt in pts {
                    prop_assert!(got.insert(pt.id, pt.values[0]).is_none(), "id {} exported twice", pt.id);
                }
                Ok(d)
            };
            for s in steps {
                match s {
                    Step::Upsert(id, v) => {
                        ex.before_write(&p, id);
                        p.upsert(id, &[v, 0.0], Payload::new());
                    }
                    Step::Delete(id) => {
                        ex.before_write(&p, id);
                        p.delete(id);
                    }
                    Step::Chunk(n) if !done => done = take(&mut ex, &p, n, &mut got)?,
                    Step::Chunk(_) => {}
                }
            }
            while !done {
                done = take(&mut ex, &p, 3, &mut got)?;
            }
            prop_assert_eq!(got, at_cut);
        }
    }
}
