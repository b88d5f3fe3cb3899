//! Memory-light partitions (`storage.rows = "disk"`): the f32 rows of the
//! points the HNSW graph holds move to a rows file, read back with direct
//! I/O only to re-rank a query's few best candidates, and the graph (codes
//! and links), ids, norms and payloads stay in memory.
//!
//! A row is *hot* (in the partition's row buffer, which then holds only
//! hot rows) or *cold* (a row of the file). New and updated points are hot
//! until the graph holds them; the indexer's paced [`Partition::evict_cold`]
//! steps then write them out. The file is a cache of the log and snapshot,
//! never a source of truth: it is not synced, a restart starts it empty,
//! and a file row freed by a delete or update is reused by the next
//! eviction.
//!
//! This crate does no I/O: the server hands each partition a [`ColdFile`]
//! (glommio is not involved: a read blocks the shard for the device's
//! latency, as a graph walk holds it for its CPU time). Reads that must
//! return a borrowed row (index builds, recalibration, a point's GET) go
//! through a per-partition cache that the shard empties after each
//! operation or step ([`Partition::release_reads`]).

use super::Partition;
use crate::math::aligned::AlignedF32;
use std::rc::Rc;

/// The rows file of one partition, written and read in whole rows of the
/// partition's dimension. File rows are numbered from 0.
pub trait ColdFile {
    /// Read the file rows `rows` (any order, repeats allowed) into `out`,
    /// one after another (`out.len() == rows.len() * dim`).
    fn read(&self, rows: &[u32], out: &mut [f32]) -> std::io::Result<()>;
    /// Read `out.len() / dim` consecutive file rows from `first`.
    fn read_run(&self, first: u32, out: &mut [f32]) -> std::io::Result<()>;
    /// Write `rows.len() / dim` consecutive file rows from `first`.
    fn write_run(&self, first: u32, rows: &[f32]) -> std::io::Result<()>;
}

/// Opens the rows file of a partition the shard creates (`None`: rows stay
/// in memory).
pub trait ColdFiles {
    fn open(&self, collection: &str, uid: u64, dim: usize) -> Option<Rc<dyn ColdFile>>;
}

/// `loc` flag: the row is hot, at this index of the row buffer.
const HOT: u32 = 1 << 31;
/// `file_slot` of a file row that holds no point.
const FREE: u32 = u32::MAX;
/// File rows an exact scan reads at once (384 dims: 768 KiB).
pub(super) const SCAN_RUN: usize = 512;
/// File rows read at once for a borrower (builds and recalibrations read
/// rows in slot order, which evictions keep close to file order).
const AHEAD_ROWS: usize = 32;

/// Where each row of a memory-light partition is.
pub(crate) struct Cold {
    file: Rc<dyn ColdFile>,
    /// Per slot: `HOT | index` in the row buffer, or its file row.
    loc: Vec<u32>,
    /// Per hot row: its slot.
    hot_slot: Vec<u32>,
    /// Per file row: its slot, or [`FREE`].
    file_slot: Vec<u32>,
    /// File rows to reuse.
    free: Vec<u32>,
    /// Cold rows read since the last [`Partition::release_reads`], by file row.
    cache: elsa::FrozenMap<u32, Box<[f32]>>,
    /// The last run of file rows read for the cache: its first row and
    /// rows (only the rows asked for are copied into the cache, so a build
    /// sampling every seventh row holds a seventh of them, not all).
    ahead: std::cell::RefCell<(u32, Vec<f32>)>,
    /// A write failed: nothing more is evicted (what is cold stays readable).
    write_failed: bool,
}

impl std::fmt::Debug for Cold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cold").field("hot", &self.hot_slot.len()).field("file_rows", &self.file_slot.len()).finish()
    }
}

impl Clone for Cold {
    /// Tests only clone partitions; a clone shares the file, so it must
    /// not evict (it could overwrite rows the original reads).
    fn clone(&self) -> Self {
        Cold {
            file: self.file.clone(),
            loc: self.loc.clone(),
            hot_slot: self.hot_slot.clone(),
            file_slot: self.file_slot.clone(),
            free: self.free.clone(),
            cache: Default::default(),
            ahead: Default::default(),
            write_failed: true,
        }
    }
}

/// Hot and cold rows of a partition (`GET /collections/{name}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowsStatus {
    pub in_memory: usize,
    pub on_disk: usize,
}

impl Cold {
    pub(super) fn new(file: Rc<dyn ColdFile>) -> Self {
        Cold {
            file,
            loc: Vec::new(),
            hot_slot: Vec::new(),
            file_slot: Vec::new(),
            free: Vec::new(),
            cache: Default::default(),
            ahead: Default::default(),
            write_failed: false,
        }
    }

    /// Where the row of `slot` is: `Ok(index in the row buffer)` or
    /// `Err(file row)`.
    #[inline]
    pub(super) fn place(&self, slot: usize) -> Result<usize, u32> {
        let l = self.loc[slot];
        if l & HOT != 0 {
            Ok((l & !HOT) as usize)
        } else {
            Err(l)
        }
    }

    /// The hot rows' slots, in row-buffer order.
    pub(super) fn hot_slots(&self) -> &[u32] {
        &self.hot_slot
    }

    /// File rows in use or free.
    pub(super) fn file_rows(&self) -> usize {
        self.file_slot.len()
    }

    /// The slot of file row `r` (`usize::MAX`: free).
    #[inline]
    pub(super) fn slot_of_file_row(&self, r: usize) -> usize {
        match self.file_slot[r] {
            FREE => usize::MAX,
            s => s as usize,
        }
    }

    pub(super) fn read_run(&self, first: usize, out: &mut [f32]) {
        self.file.read_run(first as u32, out).unwrap_or_else(|e| read_failed(e));
    }

    /// Read cold rows into `out`, one after another.
    pub(super) fn read(&self, rows: &[u32], out: &mut [f32]) {
        self.file.read(rows, out).unwrap_or_else(|e| read_failed(e));
    }

    /// A cold row, read once per operation (see the module doc).
    pub(super) fn cached(&self, r: u32, dim: usize) -> &[f32] {
        if let Some(row) = self.cache.get(&r) {
            return row;
        }
        let mut ahead = self.ahead.borrow_mut();
        let (first, rows) = &mut *ahead;
        if r < *first || r as usize >= *first as usize + rows.len() / dim.max(1) {
            let n = AHEAD_ROWS.min(self.file_slot.len() - r as usize);
            rows.resize(n * dim, 0.0);
            self.read_run(r as usize, rows);
            *first = r;
        }
        let at = (r - *first) as usize * dim;
        let row: Box<[f32]> = rows[at..at + dim].into();
        drop(ahead);
        self.cache.insert(r, row)
    }

    pub(super) fn status(&self) -> RowsStatus {
        RowsStatus { in_memory: self.hot_slot.len(), on_disk: self.file_slot.len() - self.free.len() }
    }

    pub(super) fn mem_bytes(&self) -> usize {
        (self.loc.capacity() + self.hot_slot.capacity() + self.file_slot.capacity() + self.free.capacity()) * 4
    }

    /// A new slot, its row appended to the row buffer.
    pub(super) fn push_hot(&mut self, slot: usize, hot_rows: usize) {
        debug_assert_eq!(slot, self.loc.len());
        self.loc.push(HOT | hot_rows as u32);
        self.hot_slot.push(slot as u32);
    }

    /// An existing slot's row is replaced. Returns the row-buffer index to
    /// overwrite, or `None` once the slot was made hot at `hot_rows` (the
    /// caller appends the row there).
    pub(super) fn rewrite(&mut self, slot: usize, hot_rows: usize) -> Option<usize> {
        let l = self.loc[slot];
        if l & HOT != 0 {
            return Some((l & !HOT) as usize);
        }
        self.free_file_row(l);
        self.loc[slot] = HOT | hot_rows as u32;
        self.hot_slot.push(slot as u32);
        None
    }

    fn free_file_row(&mut self, r: u32) {
        self.file_slot[r as usize] = FREE;
        self.free.push(r);
    }

    /// Slot `slot` is deleted and the last slot moves into it (the caller
    /// moves ids, norms and payloads). A hot row is removed from the row
    /// buffer by moving its last row into the hole.
    pub(super) fn delete(&mut self, slot: usize, vectors: &mut AlignedF32, dim: usize) {
        let l = self.loc[slot];
        if l & HOT != 0 {
            self.remove_hot((l & !HOT) as usize, vectors, dim);
        } else {
            self.free_file_row(l);
        }
        let last = self.loc.len() - 1;
        if slot != last {
            let moved = self.loc[last];
            self.loc[slot] = moved;
            if moved & HOT != 0 {
                self.hot_slot[(moved & !HOT) as usize] = slot as u32;
            } else {
                self.file_slot[moved as usize] = slot as u32;
            }
        }
        self.loc.pop();
    }

    /// Drop hot row `h`, moving the last hot row into it.
    fn remove_hot(&mut self, h: usize, vectors: &mut AlignedF32, dim: usize) {
        let last = self.hot_slot.len() - 1;
        if h != last {
            vectors.copy_within(last * dim..(last + 1) * dim, h * dim);
            let s = self.hot_slot[last];
            self.hot_slot[h] = s;
            self.loc[s as usize] = HOT | h as u32;
        }
        self.hot_slot.pop();
        vectors.truncate(last * dim);
    }
}

/// The rows file could not be read: the process ends (a panic aborts it),
/// and the restart rebuilds the partition from the log and snapshot into a
/// new file. Answering without those rows would lose results silently.
fn read_failed(e: std::io::Error) -> ! {
    panic!("reading the rows file failed: {e}")
}

impl Partition {
    /// Keep this partition's rows on disk once the graph holds them (a new,
    /// empty partition). Such a partition builds no IVF lists unless a
    /// search forces them.
    pub fn set_cold(&mut self, file: Rc<dyn ColdFile>) {
        assert!(self.is_empty(), "rows move to disk from the start");
        self.cold = Some(Cold::new(file));
        self.ivf_dropped = true;
    }

    /// Rows in memory and on disk (`None`: every row is in memory).
    pub fn rows_status(&self) -> Option<RowsStatus> {
        self.cold.as_ref().map(Cold::status)
    }

    /// Forget the cold rows read for borrowers since the last call, and
    /// the run read ahead for them (the shard calls it after each
    /// operation and background step, so an idle partition holds neither).
    pub fn release_reads(&mut self) {
        if let Some(c) = &mut self.cold {
            if !c.cache.is_empty() {
                c.cache = Default::default();
            }
            if c.ahead.get_mut().1.capacity() > 0 {
                *c.ahead.get_mut() = Default::default();
            }
        }
    }

    /// Write up to `max` hot rows the graph holds (not pending) to the rows
    /// file and drop them from memory; `true` if more could go.
    pub fn evict_cold(&mut self, max: usize) -> bool {
        let (Some(c), Some(h)) = (&self.cold, &self.hnsw) else { return false };
        if c.write_failed {
            return false;
        }
        // From the end of the row buffer: removing those rows moves none.
        let picked: Vec<usize> = (0..c.hot_slot.len())
            .rev()
            .filter(|&hot| !h.pending.contains(&self.ids[c.hot_slot[hot] as usize]))
            .take(max)
            .collect();
        self.evict_rows(picked)
    }

    /// A restart's replay (graphs are not stored, so none exists yet): once
    /// `at_least` rows are in memory, write every one of them to the rows
    /// file, so the replay holds at most that many rows per partition
    /// instead of every row until a graph is built. The build then reads
    /// them back in file order, which is the order they were replayed in.
    /// `true` if rows were written.
    pub fn evict_replayed(&mut self, at_least: usize) -> bool {
        let Some(c) = &self.cold else { return false };
        if self.hnsw.is_some() || c.write_failed || c.hot_slot.len() < at_least.max(1) {
            return false;
        }
        let picked: Vec<usize> = (0..c.hot_slot.len()).rev().collect();
        self.evict_rows(picked)
    }

    /// Write the hot rows `picked` (row-buffer indexes, descending) to the
    /// rows file and drop them from memory.
    fn evict_rows(&mut self, picked: Vec<usize>) -> bool {
        let Some(c) = &mut self.cold else { return false };
        if picked.is_empty() {
            return false;
        }
        let dim = self.dim;
        // In slot order, so that reading rows by slot reads the file
        // forwards (see `cached`): free file rows first (written one by
        // one), then appended ones in one run.
        let mut by_slot = picked.clone();
        by_slot.sort_unstable_by_key(|&hot| c.hot_slot[hot]);
        let reuse = picked.len().min(c.free.len());
        let mut targets: Vec<u32> = c.free.split_off(c.free.len() - reuse);
        let first_new = c.file_slot.len() as u32;
        targets.extend(first_new..first_new + (picked.len() - reuse) as u32);
        let row = |hot: usize| &self.vectors[hot * dim..(hot + 1) * dim];
        let mut written = Ok(());
        for (&hot, &r) in by_slot.iter().zip(&targets).take(reuse) {
            written = written.and_then(|()| c.file.write_run(r, row(hot)));
        }
        if picked.len() > reuse && written.is_ok() {
            let mut run = Vec::with_capacity((picked.len() - reuse) * dim);
            by_slot[reuse..].iter().for_each(|&hot| run.extend_from_slice(row(hot)));
            written = c.file.write_run(first_new, &run);
        }
        if written.is_err() {
            c.write_failed = true;
            c.free.extend_from_slice(&targets[..reuse]);
            return false;
        }
        c.file_slot.resize(first_new as usize + picked.len() - reuse, FREE);
        let mut target_of: Vec<(usize, u32)> = by_slot.into_iter().zip(targets).collect();
        // Descending, so each removal moves a row not picked (or none).
        target_of.sort_unstable_by_key(|&(hot, _)| std::cmp::Reverse(hot));
        for (hot, r) in target_of {
            let slot = c.hot_slot[hot];
            c.remove_hot(hot, &mut self.vectors, dim);
            c.loc[slot as usize] = r;
            c.file_slot[r as usize] = slot;
        }
        // Emptied, the buffer goes entirely: rows now leave it between the
        // steps of a build, so it no longer grows to thousands of rows and
        // shrinks once, and up to 1,024 rows' slack (1.5 MiB at 384
        // dimensions) stayed mapped per partition once all were out.
        if self.vectors.is_empty() || self.vectors.capacity() > 2 * self.vectors.len() + 1024 * dim {
            self.vectors.shrink_to_fit();
        }
        true
    }
}
