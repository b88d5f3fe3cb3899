//! Payload indexes of one partition: per field, the points holding each
//! string or boolean value, and the points ordered by numeric value. They
//! answer "which points can a filter match at all" (a superset: the full
//! filter is still checked on every candidate), so a selective filter
//! scores a few candidates instead of scanning the partition.
//!
//! An index is wanted for a field the first time a filter's `must` clause
//! names it (at most [`MAX_FIELDS`] per partition), built by the indexer in
//! bounded steps over a snapshot of the ids (writes meanwhile index the
//! points they touch at once), used once complete, kept up to date on every
//! write, and rebuilt after a restart (it is not persisted).

use crate::payload::filter::{Clause, Filter};
use crate::payload::{Payload, PayloadValue, Scalar};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A string or boolean value as an index key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Term {
    Str(String),
    Bool(bool),
}

/// f64 with the total order (`total_cmp`), for the numeric index.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Num(f64);

impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Num {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// The index of one field.
#[derive(Clone, Debug, Default)]
pub struct FieldIndex {
    terms: HashMap<Term, HashSet<u64>>,
    numbers: BTreeSet<(Num, u64)>,
}

fn scalars(v: &PayloadValue) -> &[Scalar] {
    match v {
        PayloadValue::One(s) => std::slice::from_ref(s),
        PayloadValue::Many(v) => v,
    }
}

impl FieldIndex {
    fn add(&mut self, id: u64, v: &PayloadValue) {
        for s in scalars(v) {
            match s {
                Scalar::Str(t) => {
                    self.terms.entry(Term::Str(t.clone())).or_default().insert(id);
                }
                Scalar::Bool(b) => {
                    self.terms.entry(Term::Bool(*b)).or_default().insert(id);
                }
                Scalar::Int(_) | Scalar::Float(_) => {
                    self.numbers.insert((Num(s.as_f64().unwrap_or(f64::NAN)), id));
                }
            }
        }
    }

    fn remove(&mut self, id: u64, v: &PayloadValue) {
        for s in scalars(v) {
            match s {
                Scalar::Str(t) => {
                    let key = Term::Str(t.clone());
                    if let Some(ids) = self.terms.get_mut(&key) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.terms.remove(&key);
                        }
                    }
                }
                Scalar::Bool(b) => {
                    if let Some(ids) = self.terms.get_mut(&Term::Bool(*b)) {
                        ids.remove(&id);
                    }
                }
                Scalar::Int(_) | Scalar::Float(_) => {
                    self.numbers.remove(&(Num(s.as_f64().unwrap_or(f64::NAN)), id));
                }
            }
        }
    }

    /// Every point the clause can match (a superset), at most `cap` of
    /// them; `None` past `cap` (the clause is not selective enough).
    fn candidates(&self, clause: &Clause, cap: usize) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        let mut push_all = |it: &mut dyn Iterator<Item = u64>| -> Option<()> {
            for id in it {
                if out.len() >= cap {
                    return None;
                }
                out.push(id);
            }
            Some(())
        };
        match clause {
            Clause::Match { value, .. } => match value {
                Scalar::Str(t) => push_all(&mut self.terms.get(&Term::Str(t.clone())).into_iter().flatten().copied())?,
                Scalar::Bool(b) => push_all(&mut self.terms.get(&Term::Bool(*b)).into_iter().flatten().copied())?,
                Scalar::Int(_) | Scalar::Float(_) => {
                    // Equality of numbers has a relative tolerance (filter.rs).
                    let x = value.as_f64().unwrap_or(f64::NAN);
                    let eps = 1e-12 * x.abs().max(1.0) * 2.0;
                    let lo = (Num(x - eps), 0);
                    let hi = (Num(x + eps), u64::MAX);
                    push_all(&mut self.numbers.range(lo..=hi).map(|&(_, id)| id))?
                }
            },
            Clause::Range { gt, gte, lt, lte, .. } => {
                let lo = gte.or(*gt).unwrap_or(f64::NEG_INFINITY);
                let hi = lte.or(*lt).unwrap_or(f64::INFINITY);
                push_all(&mut self.numbers.range((Num(lo), 0)..=(Num(hi), u64::MAX)).map(|&(_, id)| id))?
            }
        }
        // A point with several matching values appears once per value.
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Distinct strings and booleans, and numeric entries.
    pub fn sizes(&self) -> (usize, usize) {
        (self.terms.len(), self.numbers.len())
    }

    pub fn mem_bytes(&self) -> usize {
        let terms: usize = self.terms.iter().map(|(t, ids)| 48 + matches_len(t) + ids.capacity() * 16).sum();
        terms + self.numbers.len() * 32
    }
}

fn matches_len(t: &Term) -> usize {
    match t {
        Term::Str(s) => s.len(),
        Term::Bool(_) => 0,
    }
}

/// Most fields a partition indexes: filters on more fields are answered
/// without payload indexes (each index costs memory and a scan to build).
pub const MAX_FIELDS: usize = 16;

/// An index being built: the ids to scan, how far, and the points writes
/// touched meanwhile (already indexed by `update`; the scan skips them).
#[derive(Clone, Debug, Default)]
struct Building {
    ids: Vec<u64>,
    next: usize,
    touched: HashSet<u64>,
}

/// The payload indexes of a partition, by field.
#[derive(Clone, Debug, Default)]
pub struct PayloadIndexes {
    fields: HashMap<String, FieldIndex>,
    /// Fields whose index is still being built (not used by `candidates`).
    building: HashMap<String, Building>,
}

impl PayloadIndexes {
    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// Ask for indexes on the fields of `filter`'s `must` clauses (up to
    /// [`MAX_FIELDS`] in all); `ids` gives the partition's ids to scan.
    /// Cheap: the scan is left to [`PayloadIndexes::build_step`].
    pub fn want(&mut self, filter: &Filter, ids: impl Fn() -> Vec<u64>) {
        for clause in &filter.must {
            let (Clause::Match { field, .. } | Clause::Range { field, .. }) = clause;
            if !self.fields.contains_key(field) && self.fields.len() < MAX_FIELDS {
                self.fields.insert(field.clone(), FieldIndex::default());
                self.building.insert(field.clone(), Building { ids: ids(), ..Default::default() });
            }
        }
    }

    /// Whether an index is being built.
    pub fn is_building(&self) -> bool {
        !self.building.is_empty()
    }

    /// Index up to `n` more points of one field being built (`payload`:
    /// a point's current payload, `None` if deleted); `true` while any
    /// build goes on.
    pub fn build_step<'a>(&mut self, n: usize, payload: impl Fn(u64) -> Option<&'a Payload>) -> bool {
        let Some(field) = self.building.keys().next().cloned() else { return false };
        let (b, index) = (self.building.get_mut(&field).expect("listed"), self.fields.get_mut(&field));
        let Some(index) = index else {
            self.building.remove(&field);
            return self.is_building();
        };
        let end = (b.next + n).min(b.ids.len());
        for &id in &b.ids[b.next..end] {
            if b.touched.contains(&id) {
                continue;
            }
            if let Some(v) = payload(id).and_then(|p| p.get(&field)) {
                index.add(id, v);
            }
        }
        b.next = end;
        if end == b.ids.len() {
            self.building.remove(&field);
        }
        self.is_building()
    }

    /// Index `field` over `points` (id, payload) at once.
    #[cfg(test)]
    pub fn create<'a>(&mut self, field: &str, points: impl Iterator<Item = (u64, &'a Payload)>) {
        let mut index = FieldIndex::default();
        for (id, p) in points {
            if let Some(v) = p.get(field) {
                index.add(id, v);
            }
        }
        self.fields.insert(field.to_owned(), index);
    }

    /// Point `id`'s payload changed from `old` (`None`: new point) to
    /// `new` (`None`: deleted).
    pub fn update(&mut self, id: u64, old: Option<&Payload>, new: Option<&Payload>) {
        let Self { fields, building } = self;
        for (field, index) in fields.iter_mut() {
            let (o, n) = (old.and_then(|p| p.get(field)), new.and_then(|p| p.get(field)));
            // A field being built: this point is indexed here, now, and
            // its scan will skip it.
            let scanning = building.get_mut(field).map(|b| b.touched.insert(id)).is_some();
            if o == n && !scanning {
                continue;
            }
            if let Some(v) = o.filter(|_| o != n) {
                index.remove(id, v);
            }
            if let Some(v) = n {
                index.add(id, v);
            }
        }
    }

    /// The points `filter` can match, from the most selective indexed
    /// `must` clause, if one yields at most `cap` of them.
    pub fn candidates(&self, filter: &Filter, cap: usize) -> Option<Vec<u64>> {
        let mut best: Option<Vec<u64>> = None;
        for clause in &filter.must {
            let field = match clause {
                Clause::Match { field, .. } | Clause::Range { field, .. } => field,
            };
            let Some(index) = self.fields.get(field).filter(|_| !self.building.contains_key(field)) else { continue };
            let limit = best.as_ref().map_or(cap, |b| b.len());
            if let Some(c) = index.candidates(clause, limit) {
                best = Some(c);
            }
        }
        best
    }

    /// (field, distinct strings/booleans, numeric entries, still being
    /// built) per index.
    pub fn status(&self) -> Vec<(String, usize, usize, bool)> {
        let mut v: Vec<_> = self
            .fields
            .iter()
            .map(|(f, i)| (f.clone(), i.sizes().0, i.sizes().1, self.building.contains_key(f)))
            .collect();
        v.sort();
        v
    }

    pub fn mem_bytes(&self) -> usize {
        self.fields.iter().map(|(f, i)| f.len() + i.mem_bytes()).sum::<usize>()
            + self.building.values().map(|b| b.ids.capacity() * 8 + b.touched.capacity() * 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::filter::FilterSpec;
    use proptest::prelude::*;

    fn payload(tag: u8, n: i64, many: bool) -> Payload {
        let tag = Scalar::Str(format!("t{tag}"));
        let mut p = Payload::new();
        p.insert(
            "tag".into(),
            if many { PayloadValue::Many(vec![tag, Scalar::Str("all".into())]) } else { PayloadValue::One(tag) },
        );
        p.insert(
            "n".into(),
            PayloadValue::One(if n % 2 == 0 { Scalar::Int(n) } else { Scalar::Float(n as f64 + 0.5) }),
        );
        p.insert("b".into(), PayloadValue::One(Scalar::Bool(n % 3 == 0)));
        p
    }

    /// An index is used only once its build has scanned every point.
    #[test]
    fn an_index_being_built_is_not_used() {
        let points: HashMap<u64, Payload> = (0..10).map(|i| (i, payload(0, i as i64 * 2, false))).collect();
        let filter = serde_json::from_str::<FilterSpec>(r#"{"must":[{"field":"n","lt":5}]}"#).unwrap();
        let filter = filter.validate().unwrap();
        let mut idx = PayloadIndexes::default();
        idx.want(&filter, || (0..10).collect());
        assert!(idx.is_building() && idx.candidates(&filter, usize::MAX).is_none());
        assert!(idx.build_step(4, |id| points.get(&id)));
        assert!(idx.candidates(&filter, usize::MAX).is_none(), "4 of 10 scanned");
        assert!(!idx.build_step(100, |id| points.get(&id)));
        assert_eq!(idx.candidates(&filter, usize::MAX), Some(vec![0, 1, 2]));
        assert_eq!(idx.status(), vec![("n".to_owned(), 0, 10, false)]);
    }

    /// No more than MAX_FIELDS fields are indexed.
    #[test]
    fn indexed_fields_are_capped() {
        let mut idx = PayloadIndexes::default();
        for i in 0..MAX_FIELDS + 5 {
            let spec = format!(r#"{{"must":[{{"field":"f{i}","value":1}}]}}"#);
            idx.want(&serde_json::from_str::<FilterSpec>(&spec).unwrap().validate().unwrap(), Vec::new);
        }
        assert_eq!(idx.status().len(), MAX_FIELDS);
    }

    proptest! {
        /// After any sequence of upserts and deletes, the candidates of an
        /// indexed must clause include every point the filter matches.
        #[test]
        fn candidates_cover_every_match(
            ops in prop::collection::vec((0u64..40, 0u8..4, -20i64..20, any::<bool>(), any::<bool>()), 1..120),
            probe in 0usize..4,
            bound in -20i64..20,
        ) {
            let mut points: HashMap<u64, Payload> = HashMap::new();
            let mut idx = PayloadIndexes::default();
            // Half the writes come before the indexes are asked for, the
            // rest while they are built a few points per write.
            let asked_at = ops.len() / 2;
            for (i, (id, tag, n, many, delete)) in ops.into_iter().enumerate() {
                if i == asked_at {
                    let all = r#"{"must":[{"field":"tag","value":"x"},{"field":"n","gte":0},{"field":"b","value":true}]}"#;
                    let filter = serde_json::from_str::<FilterSpec>(all).unwrap().validate().unwrap();
                    let mut ids: Vec<u64> = points.keys().copied().collect();
                    ids.sort_unstable();
                    idx.want(&filter, || ids.clone());
                }
                if i > asked_at {
                    idx.build_step(3, |id| points.get(&id));
                }
                let old = points.get(&id).cloned();
                if delete {
                    points.remove(&id);
                    idx.update(id, old.as_ref(), None);
                } else {
                    let p = payload(tag, n, many);
                    idx.update(id, old.as_ref(), Some(&p));
                    points.insert(id, p);
                }
            }
            let spec = match probe {
                0 => format!(r#"{{"must":[{{"field":"tag","value":"t{}"}}]}}"#, bound.rem_euclid(4)),
                1 => format!(r#"{{"must":[{{"field":"n","gte":{bound},"lt":{}}}]}}"#, bound + 7),
                2 => format!(r#"{{"must":[{{"field":"n","value":{bound}}}]}}"#),
                _ => format!(r#"{{"must":[{{"field":"b","value":{}}},{{"field":"tag","value":"all"}}]}}"#, bound % 2 == 0),
            };
            let filter = serde_json::from_str::<FilterSpec>(&spec).unwrap().validate().unwrap();
            while idx.build_step(3, |id| points.get(&id)) {}
            let cand = idx.candidates(&filter, usize::MAX).expect("an indexed must clause");
            for (id, p) in &points {
                if filter.matches(p) {
                    prop_assert!(cand.contains(id), "{spec}: point {id} matches but is no candidate");
                }
            }
        }
    }
}
