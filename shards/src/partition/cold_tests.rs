//! Memory-light partitions against the same writes kept in memory: exact
//! scans, graph searches, point reads and builds answer the same, whatever
//! is hot and cold, through deletes, updates, free file rows reused and a
//! rows file that stops taking writes.

use super::*;
use crate::math::rng::splitmix64;
use crate::payload::filter::Clause;
use crate::payload::{PayloadValue, Scalar};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A rows file in memory; `fail_writes` makes every write fail.
#[derive(Default)]
struct MemFile {
    dim: usize,
    rows: RefCell<Vec<f32>>,
    fail_writes: Cell<bool>,
    reads: Cell<usize>,
    /// Rows read by `read` (re-ranks: rows anywhere), not in runs.
    scattered_reads: Cell<usize>,
}

impl ColdFile for MemFile {
    fn read(&self, rows: &[u32], out: &mut [f32]) -> std::io::Result<()> {
        let data = self.rows.borrow();
        for (&r, out) in rows.iter().zip(out.chunks_exact_mut(self.dim)) {
            out.copy_from_slice(&data[r as usize * self.dim..][..self.dim]);
        }
        self.reads.set(self.reads.get() + rows.len());
        self.scattered_reads.set(self.scattered_reads.get() + rows.len());
        Ok(())
    }

    fn read_run(&self, first: u32, out: &mut [f32]) -> std::io::Result<()> {
        out.copy_from_slice(&self.rows.borrow()[first as usize * self.dim..][..out.len()]);
        self.reads.set(self.reads.get() + out.len() / self.dim);
        Ok(())
    }

    fn write_run(&self, first: u32, rows: &[f32]) -> std::io::Result<()> {
        if self.fail_writes.get() {
            return Err(std::io::Error::other("disk gone"));
        }
        let mut data = self.rows.borrow_mut();
        let at = first as usize * self.dim;
        if data.len() < at + rows.len() {
            data.resize(at + rows.len(), f32::NAN);
        }
        data[at..at + rows.len()].copy_from_slice(rows);
        Ok(())
    }
}

struct Pair {
    light: Partition,
    full: Partition,
    file: Rc<MemFile>,
}

const DIM: usize = 12;

fn point(seed: u64) -> Vec<f32> {
    let mut s = seed;
    let centre = (seed % 17) as f32;
    (0..DIM).map(|_| centre + (splitmix64(&mut s) >> 40) as f32 / (1u64 << 24) as f32).collect()
}

fn tagged(i: u64) -> Payload {
    let mut p = Payload::new();
    p.insert("odd".into(), PayloadValue::One(Scalar::Bool(i % 2 == 1)));
    p
}

impl Pair {
    fn new() -> Pair {
        let file = Rc::new(MemFile { dim: DIM, ..Default::default() });
        let mut light = Partition::new(DIM);
        light.set_cold(file.clone());
        let mut full = Partition::new(DIM);
        // The light partition builds no IVF lists: nor does this one.
        full.ivf_dropped = true;
        Pair { light, full, file }
    }

    /// A pair holding points `0..n`, each from its own seed.
    fn loaded(n: u64) -> Pair {
        let mut t = Pair::new();
        for i in 0..n {
            t.upsert(i, i);
        }
        t
    }

    fn upsert(&mut self, id: u64, seed: u64) {
        let v = point(seed);
        assert_eq!(self.light.upsert(id, &v, tagged(id)), self.full.upsert(id, &v, tagged(id)));
    }

    fn delete(&mut self, id: u64) {
        assert_eq!(self.light.delete(id), self.full.delete(id));
    }

    fn build(&mut self, seed: u64) {
        for p in [&mut self.light, &mut self.full] {
            let mut g = p.graph_build_start(seed);
            while !p.graph_build_step(&mut g) {}
            let _ = p.graph_install(g.finish(), Instant::now());
            p.release_reads();
            while p.graph_extend(std::time::Duration::from_secs(1)) {}
        }
    }

    fn evict_all(&mut self) {
        while self.light.evict_cold(100) {}
    }

    /// Every way of reading the points answers the same in both. Graph
    /// searches: exhaustive ones always (every candidate re-ranked from
    /// its row), narrow ones only while both graphs were built alike
    /// (extension inserts pending points in hash-set order).
    fn check(&mut self, when: &str) {
        self.check_graphs(when, false);
    }

    fn check_graphs(&mut self, when: &str, same_graph: bool) {
        let (l, f) = (&self.light, &self.full);
        assert_eq!(l.len(), f.len(), "{when}");
        for &id in f.ids() {
            let (lv, lp) = l.get(id).unwrap();
            let (fv, fp) = f.get(id).unwrap();
            assert_eq!((lv, lp), (fv, fp), "{when}: point {id}");
        }
        let only_odd = Filter {
            must: vec![Clause::Match { field: "odd".into(), value: Scalar::Bool(true) }],
            ..Default::default()
        };
        for filter in [None, Some(&only_odd)] {
            for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
                let params = SearchParams { metric, k: 7, filter };
                for n in [1, 2, 9] {
                    let qs: Vec<Vec<f32>> = (0..n).map(|i| point(1000 + i)).collect();
                    assert_eq!(l.search(&qs, &params), f.search(&qs, &params), "{when}: exact {metric:?} x{n}");
                    if f.hnsw.is_some() {
                        let all = f.len();
                        assert_eq!(
                            l.search_graph(&qs, &params, all),
                            f.search_graph(&qs, &params, all),
                            "{when}: exhaustive graph {metric:?} x{n}"
                        );
                    }
                    if f.hnsw.is_some() && same_graph {
                        assert_eq!(
                            l.search_graph(&qs, &params, 24),
                            f.search_graph(&qs, &params, 24),
                            "{when}: graph {metric:?} x{n}"
                        );
                    }
                }
            }
        }
        self.light.release_reads();
    }
}

#[test]
fn cold_rows_answer_as_rows_in_memory() {
    let mut t = Pair::loaded(3000);
    t.check("all hot, no graph");
    assert!(!t.light.evict_cold(100), "nothing leaves memory before the graph holds it");
    t.build(5);
    t.evict_all();
    let st = t.light.rows_status().unwrap();
    assert_eq!((st.in_memory, st.on_disk), (0, 3000));
    assert_eq!(t.light.vectors.len(), 0);
    t.check_graphs("all cold", true);
    // Updates and inserts are hot until the graph holds them; deletes
    // free file rows that the next evictions reuse.
    let mut s = 9u64;
    for round in 0..4u64 {
        for _ in 0..300 {
            let id = splitmix64(&mut s) % 3400;
            match splitmix64(&mut s) % 3 {
                0 => t.delete(id),
                _ => t.upsert(id, id * 7 + round),
            }
        }
        t.check(&format!("round {round}: written"));
        for p in [&mut t.light, &mut t.full] {
            while p.graph_extend(std::time::Duration::from_secs(1)) {}
        }
        t.check(&format!("round {round}: in the graph"));
        t.evict_all();
        t.check(&format!("round {round}: evicted"));
        let st = t.light.rows_status().unwrap();
        assert_eq!((st.in_memory, st.on_disk), (0, t.full.len()));
        let cold = t.light.cold.as_ref().unwrap();
        assert!(cold.file_rows() <= 3400, "free file rows are reused ({} rows)", cold.file_rows());
    }
    // A rebuild reads the cold rows (and builds the same graph).
    t.build(8);
    t.check_graphs("rebuilt", true);
    assert!(t.file.reads.get() > 0);
}

#[test]
fn a_rows_file_that_fails_keeps_rows_in_memory() {
    let mut t = Pair::loaded(2500);
    t.build(3);
    assert!(t.light.evict_cold(1000));
    t.file.fail_writes.set(true);
    assert!(!t.light.evict_cold(1000), "a failed write stops eviction");
    assert!(!t.light.evict_cold(1000));
    let st = t.light.rows_status().unwrap();
    assert_eq!((st.in_memory, st.on_disk), (1500, 1000));
    for i in 0..200 {
        t.upsert(i * 11, i);
    }
    t.check("after a failed write");
}

/// A recalibration of a memory-light graph counts each walk's recall from
/// the exact answer it already has, without re-ranking the walk's
/// candidates from the rows file: the table is the one the same graph in
/// memory gets re-ranking from its rows, and the only rows read are the
/// exact scans' runs (a search reads ~20 scattered rows per walk).
#[test]
fn a_light_recalibration_reads_no_row_for_its_walks() {
    let mut t = Pair::loaded(3000);
    t.build(5);
    t.evict_all();
    let real = crate::index::calib::MIN_REAL as u64;
    for i in 0..real {
        let q: Vec<f32> = point(7000 + i).iter().map(|x| x * 0.9 + 0.5).collect();
        t.light.remember_query(Metric::L2, &q);
        t.full.remember_query(Metric::L2, &q);
    }
    let now = Instant::now();
    let (scattered, reads) = (t.file.scattered_reads.get(), t.file.reads.get());
    for p in [&mut t.light, &mut t.full] {
        let mut r = p.recal_start(now).expect("real queries: due");
        while p.recal_step(&mut r) == Some(false) {
            p.release_reads();
        }
        let _ = p.recal_install(r, now);
    }
    let table = |p: &Partition| {
        let c = &p.hnsw.as_ref().unwrap().calibration;
        (c.real, c.by_rank.clone())
    };
    assert_eq!(table(&t.light).0[0], real as usize);
    assert_eq!(table(&t.light), table(&t.full));
    assert_eq!(t.file.scattered_reads.get(), scattered);
    // The exact scans read the file in order: once per
    // `calib::SCAN_BATCH` queries, each run of rows once.
    let (runs, once) = (t.file.reads.get() - reads, (real as usize).div_ceil(crate::index::calib::SCAN_BATCH) * 3000);
    assert!(runs <= once + once / 20, "{runs} rows read in runs; the scans need {once}");
    let params = SearchParams { metric: Metric::L2, k: 10, filter: None };
    let _ = t.light.search_graph(&[point(7000)], &params, 16);
    assert!(t.file.scattered_reads.get() > scattered, "a search re-ranks from the file");
}

/// A restart's replay writes rows out as it applies them
/// (`evict_replayed`, before any graph exists), and the graph built
/// afterwards over rows that are all on disk reads them in runs: its
/// calibration walks key their candidates from the exact answers and
/// re-read no row, and find what the same build in memory finds.
#[test]
fn a_replay_moves_rows_out_as_it_goes_and_the_build_reads_them_in_runs() {
    let mut t = Pair::new();
    let mut s = 5u64;
    for i in 0..3000u64 {
        t.upsert(i, i);
        // Updates and deletes of earlier points, as a log holds them.
        if i % 10 == 9 {
            let id = splitmix64(&mut s) % i;
            match splitmix64(&mut s) % 2 {
                0 => t.delete(id),
                _ => t.upsert(id, id * 3 + 1),
            }
        }
        t.light.evict_replayed(256);
        let st = t.light.rows_status().unwrap();
        assert!(st.in_memory < 256, "{} rows in memory after point {i}", st.in_memory);
    }
    assert!(t.light.evict_replayed(1));
    let st = t.light.rows_status().unwrap();
    assert_eq!((st.in_memory, st.on_disk), (0, t.full.len()));
    t.check("replayed, every row on disk");
    // As the shard runs a build: what was read for one step is dropped
    // after it.
    let reads = t.file.reads.get();
    let mut g = t.light.graph_build_start(5);
    while !t.light.graph_build_step(&mut g) {
        t.light.release_reads();
    }
    let _ = t.light.graph_install(g.finish(), Instant::now());
    t.light.release_reads();
    let (build_reads, n) = (t.file.reads.get() - reads, t.full.len());
    let mut g = t.full.graph_build_start(5);
    while !t.full.graph_build_step(&mut g) {}
    let _ = t.full.graph_install(g.finish(), Instant::now());
    t.check_graphs("built over rows on disk", true);
    // L2: these points (clusters along one diagonal) are near-ties under
    // cosine and dot, where a walk keyed by the exact answer counts a
    // candidate tied with a missed point as a miss and the re-rank's tally
    // as a hit (`CalibQuery::known_key`).
    let table = |p: &Partition| p.hnsw.as_ref().unwrap().calibration.by_rank[0].clone();
    assert_eq!(table(&t.light), table(&t.full), "the calibration walks find the same");
    assert!(!t.light.evict_replayed(1), "a graph exists: rows wait for it again");
    // The calibration's exact scans read the file in runs,
    // `calib::SCAN_BATCH` queries a pass. Walks that re-ranked their
    // candidates from the file read it 590 times over.
    assert!(build_reads < 100 * n, "the build read {build_reads} rows for {n}");
}
