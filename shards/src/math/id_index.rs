//! [`IdIndex`]: the position of each key in a vector of keys (a partition's
//! point id -> slot, a graph's point id -> node), grown without a pause.
//!
//! A hash map doubles all at once: every entry is moved into a table twice
//! the size within one insert. At ~900,000 entries that insert took tens
//! of milliseconds, a stall of the shard applying the write (or of the
//! graph insert step) with every request queued behind it. Here the full
//! table becomes the old one, a table twice its size takes the new
//! inserts, and each insert moves [`MOVE_PER_INSERT`] more entries across,
//! walking the vector of keys (whose entry `i` is the key at position `i`,
//! so it lists every key the old table holds) from a cursor; lookups and
//! removals look in both tables until the old one is empty.
//!
//! Keys are the users' ids: the tables hash with ahash, seeded at random,
//! so ids chosen to collide cannot be crafted.

use std::collections::HashMap;

type Table = HashMap<u64, u32, ahash::RandomState>;

/// Entries moved from the old table by each insert while it empties: the
/// new table, twice the old one's size, can take the old entries and the
/// inserts meanwhile (one per this many) without growing itself.
const MOVE_PER_INSERT: usize = 4;

/// Key -> position in the caller's vector of keys; see the module doc.
#[derive(Clone, Debug, Default)]
pub struct IdIndex {
    new: Table,
    /// The table being emptied into `new` (empty when none is).
    old: Table,
    /// Position in the vector of keys up to which the old table's keys
    /// have been moved.
    cursor: usize,
}

impl IdIndex {
    /// An index with room for `n` keys before it first grows.
    pub fn with_capacity(n: usize) -> IdIndex {
        IdIndex { new: Table::with_capacity_and_hasher(n, Default::default()), ..Default::default() }
    }

    /// Room for `n` keys before it grows, if it holds none yet (a filled
    /// index grows by itself, without a pause; making room at once would
    /// move every entry in one go).
    pub fn presize(&mut self, n: usize) {
        if self.is_empty() {
            self.new.reserve(n);
        }
    }

    pub fn get(&self, key: &u64) -> Option<&u32> {
        self.new.get(key).or_else(|| self.old.get(key))
    }

    pub fn contains_key(&self, key: &u64) -> bool {
        self.get(key).is_some()
    }

    /// Map `key` to `at`, returning its previous position. `keys` is the
    /// caller's vector of keys (`keys[p]` is the key at position `p`, as
    /// it stands before this insert).
    pub fn insert(&mut self, key: u64, at: u32, keys: &[u64]) -> Option<u32> {
        if self.old.is_empty() && self.new.len() >= self.new.capacity() {
            let room = (2 * self.new.capacity()).max(16);
            self.old = std::mem::replace(&mut self.new, Table::with_capacity_and_hasher(room, Default::default()));
            self.cursor = 0;
        }
        if !self.old.is_empty() {
            self.move_some(keys);
        }
        let before = self.old.remove(&key);
        self.new.insert(key, at).or(before)
    }

    pub fn remove(&mut self, key: &u64) -> Option<u32> {
        self.new.remove(key).or_else(|| self.old.remove(key))
    }

    pub fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries the tables have room for (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.new.capacity() + self.old.capacity()
    }

    /// Move the old table's entries for the next keys of `keys` into the
    /// new one. A key that moved to a position the cursor had passed was
    /// inserted again meanwhile (into the new table), and a removed one is
    /// in neither; whatever the vector does not list any more goes across
    /// at once when the cursor reaches its end (none, if the caller keeps
    /// the vector and the index in step).
    fn move_some(&mut self, keys: &[u64]) {
        let from = self.cursor.min(keys.len());
        let end = (from + MOVE_PER_INSERT).min(keys.len());
        for &key in &keys[from..end] {
            if let Some(at) = self.old.remove(&key) {
                self.new.insert(key, at);
            }
        }
        self.cursor = end;
        if self.cursor == keys.len() {
            self.new.extend(self.old.drain());
            self.old = Table::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::rng::splitmix64;

    /// A vector of keys with swap-remove deletes (as a partition's rows,
    /// and re-used slots as a graph's nodes), indexed by an `IdIndex` and
    /// by a plain map: they agree after every operation, through several
    /// doublings, and the index never moves more than a bounded number of
    /// entries in one insert.
    #[test]
    fn agrees_with_a_map_through_growth_and_deletes() {
        let mut s = 7u64;
        let mut keys: Vec<u64> = Vec::new();
        let mut index = IdIndex::default();
        let mut plain: HashMap<u64, u32> = HashMap::new();
        let mut doublings = 0;
        for step in 0..60_000u32 {
            let was_moving = !index.old.is_empty();
            let r = splitmix64(&mut s);
            if r.is_multiple_of(4) && !keys.is_empty() {
                // Delete: the last key moves into the hole.
                let at = (r >> 8) as usize % keys.len();
                let gone = keys[at];
                assert_eq!(index.remove(&gone), plain.remove(&gone));
                let last = keys.pop().expect("not empty");
                if at < keys.len() {
                    keys[at] = last;
                    assert_eq!(index.insert(last, at as u32, &keys), plain.insert(last, at as u32));
                }
            } else if r % 4 == 1 && !keys.is_empty() {
                // Update in place: the same key, the same position.
                let at = (r >> 8) as usize % keys.len();
                let key = keys[at];
                assert_eq!(index.insert(key, at as u32, &keys), plain.insert(key, at as u32));
            } else {
                // A new key (ids may be reused after a delete).
                let key = (r >> 8) % 200_000;
                if plain.contains_key(&key) {
                    continue;
                }
                let at = keys.len() as u32;
                let growing = index.old.is_empty() && index.new.len() >= index.new.capacity();
                let old_before = index.old.len();
                assert_eq!(index.insert(key, at, &keys), plain.insert(key, at));
                keys.push(key);
                // At most MOVE_PER_INSERT entries move, except the last
                // stragglers when the cursor reaches the end (none here).
                if !growing && old_before > 0 && !index.old.is_empty() {
                    assert!(old_before - index.old.len() <= MOVE_PER_INSERT, "step {step}");
                }
            }
            doublings += (!was_moving && !index.old.is_empty()) as u32;
            assert_eq!(index.len(), plain.len(), "step {step}");
            if step.is_multiple_of(97) {
                for (k, v) in &plain {
                    assert_eq!(index.get(k), Some(v), "step {step}, key {k}");
                }
                assert!(!index.contains_key(&(1 << 40)));
            }
        }
        assert!(doublings >= 5, "{doublings} doublings");
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(index.get(k), Some(&(p as u32)));
        }
    }
}
