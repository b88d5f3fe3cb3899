//! Tests of `calib::run`: tallies, margins, real queries per metric, the
//! ladder's early stops and the walk budget.

use super::super::{Dense, Rows, MIN_REAL, ZERO_MISS_BOUND};
use super::*;
use crate::math::rng::splitmix64;

#[test]
fn a_duplicate_at_the_same_distance_counts_for_the_point_it_ties_with() {
    let s = |id, key| Scored { key, id };
    // Exact answer: 1 and 2 are copies of one vector (key 0.5), then 3.
    let truth = [s(1, 0.5), s(2, 0.5), s(3, 0.7)];
    let mut hits = [0; CALIB_K];
    // Another copy (7) found instead of 2: as near, so rank 1 holds.
    assert_eq!(tally(&truth, &[s(1, 0.5), s(7, 0.5 + 1e-6), s(3, 0.7)], &mut hits), 3);
    assert_eq!(hits[..3], [1, 1, 1]);
    // A point farther than the one it replaces does not stand in, and
    // one stand-in covers one missed rank only.
    let mut hits = [0; CALIB_K];
    assert_eq!(tally(&truth, &[s(7, 0.5), s(8, 0.6), s(9, 0.71)], &mut hits), 1);
    assert_eq!(hits[..3], [1, 0, 0]);
    // Ids found: no key needed.
    let mut hits = [0; CALIB_K];
    assert_eq!(tally(&truth, &[s(3, 0.0), s(2, 9.0), s(1, 9.0)], &mut hits), 3);
    assert_eq!(hits[..3], [1, 1, 1]);
}

/// Two indexes with the same mean recall, one missing a little of every
/// answer and one missing much of every other answer: the second's
/// estimate is less certain (a hard query's misses come together), so
/// `auto` trusts its cheap setting less.
#[test]
fn the_spread_of_single_queries_widens_the_margin() {
    let (n, dim) = (200usize, 8usize);
    let mut s = 5u64;
    let raw: Vec<f32> = (0..n * dim).map(|_| (splitmix64(&mut s) % 1000) as f32 / 500.0 - 1.0).collect();
    let queries: Vec<(Metric, Vec<f32>)> =
        (0..MIN_REAL).map(|i| (Metric::L2, raw[i * dim..(i + 1) * dim].iter().map(|x| x + 0.01).collect())).collect();
    // At the first rung each query finds `kept(i)` of its 10 nearest.
    let measure = |kept: &dyn Fn(usize) -> usize| {
        let dense = Dense::new(raw.clone(), dim);
        let rows = Rows::new((0..n as u64).collect(), dim);
        let rows = rows.at(&dense);
        let real = RealQueries { queries: queries.clone(), metrics: [true, false, false] };
        let mut cal = Calibrator::new(Vec::new(), real, vec![1, 2]);
        let mut asked = 0;
        while !cal.step(&rows, 1000, |q: &CalibQuery| {
            let mut top = TopK::new(CALIB_K);
            for r in 0..n {
                let d = (kernels().dot)(q.query, rows.row(r));
                top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
            }
            let found = top.into_sorted();
            let first = kept(asked);
            asked += 1;
            (q.rung..q.ladder.len()).map(|rung| (found[..if rung == 0 { first } else { 10 }].to_vec(), 1.0)).collect()
        }) {}
        cal.finish()
    };
    let even = measure(&|_| 8);
    let uneven = measure(&|i| if i % 2 == 0 { 6 } else { 10 });
    for c in [&even, &uneven] {
        assert!((c.recall_at(Metric::L2, 1) - 0.8).abs() < 1e-6, "{:?}", c.recall[0]);
        assert_eq!(c.query_var[0][1], 0.0, "every query found everything at the second rung");
    }
    assert!(even.query_var[0][0] < 1e-9, "{:?}", even.query_var[0]);
    assert!((uneven.query_var[0][0] - 0.04).abs() < 1e-6, "{:?}", uneven.query_var[0]);
    // 640 answers: as independent samples, 0.8 is 0.0158 uncertain and
    // meets 0.78; spread as measured (design effect 0.04 / 0.016 = 2.5)
    // 0.025, and only the second rung does.
    assert_eq!(even.choose(Metric::L2, 0.78).map(|x| x.0), Some(1));
    assert_eq!(uneven.choose(Metric::L2, 0.78).map(|x| x.0), Some(2));
}

/// Real queries are measured under every metric the partition is
/// queried with; on unit-length rows (the metrics rank alike) under
/// their own only, counting for all three.
#[test]
fn real_queries_measure_every_metric_queried() {
    let (n, dim) = (200usize, 8usize);
    let mut s = 3u64;
    let mut raw: Vec<f32> = (0..n * dim).map(|_| (splitmix64(&mut s) % 1000) as f32 / 500.0 - 1.0).collect();
    raw.chunks_mut(dim).for_each(|r| {
        let l = norm(r);
        r.iter_mut().for_each(|x| *x /= l);
    });
    let queries: Vec<(Metric, Vec<f32>)> = (0..MIN_REAL)
        .map(|i| (Metric::Cosine, raw[i * dim..(i + 1) * dim].iter().map(|x| x * 3.0).collect()))
        .collect();
    // Calibrate over `data` with the cosine queries, the partition
    // having been queried by `metrics`; also how many queries ran
    // under each metric.
    let measure = |data: Vec<f32>, metrics: [bool; 3]| {
        let dense = Dense::new(data, dim);
        let rows = Rows::new((0..n as u64).collect(), dim);
        let rows = rows.at(&dense);
        let real = RealQueries { queries: queries.clone(), metrics };
        let mut cal = Calibrator::new(Vec::new(), real, vec![1, 2]);
        let mut runs = [0usize; 3];
        // An index that, by dot only, misses the 10th nearest point at
        // the first rung.
        while !cal.step(&rows, 1000, |q: &CalibQuery| {
            runs[metric_index(q.metric)] += 1;
            let mut top = TopK::new(CALIB_K);
            for r in 0..n {
                let d = (kernels().dot)(q.query, rows.row(r));
                top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
            }
            let found = top.into_sorted();
            let miss = |rung: usize| (rung == 0 && q.metric == Metric::Dot) as usize;
            (q.rung..q.ladder.len()).map(|rung| (found[..CALIB_K - miss(rung)].to_vec(), 1.0)).collect()
        }) {}
        (cal.finish(), runs.map(|r| r > 0))
    };
    // Unit length: cosine alone ran and counts for every metric.
    let (c, ran) = measure(raw.clone(), [false, true, true]);
    assert_eq!(ran, [false, false, true]);
    assert_eq!((c.real, c.real_queries, c.samples), ([MIN_REAL; 3], MIN_REAL, [MIN_REAL; 3]));
    // Nothing missed over 64 queries x 10 answers: trusted up to the
    // rule-of-three bound, not 1.
    let full = 1.0 - ZERO_MISS_BOUND / (MIN_REAL * CALIB_K) as f32;
    for m in [Metric::L2, Metric::Dot, Metric::Cosine] {
        assert_eq!(c.real_basis(m), Some(MIN_REAL));
        assert_eq!((c.recall_at(m, 1), c.recall_at(m, 2)), (full, full), "{m:?}");
    }
    // Rows of length 2: the queries ran under cosine and dot (the
    // metrics queried), and dot's figures are its own.
    let long: Vec<f32> = raw.iter().map(|x| x * 2.0).collect();
    let (c, ran) = measure(long.clone(), [false, true, true]);
    assert_eq!(ran, [false, true, true]);
    assert_eq!((c.real, c.real_queries), ([0, MIN_REAL, MIN_REAL], MIN_REAL));
    assert_eq!(c.real_basis(Metric::L2), None);
    assert!((c.recall_at(Metric::Dot, 1) - 0.9).abs() < 1e-6 && c.recall_at(Metric::Dot, 2) == full);
    assert_eq!(c.recall_at(Metric::Cosine, 1), full);
    // Merged into a table resting on held-out points: dot and cosine
    // move, l2 keeps its figures.
    let mut base = Calibration { ladder: vec![1, 2], samples: [64; 3], ..Default::default() };
    base.by_rank = std::array::from_fn(|_| vec![[0.5; CALIB_K]; 2]);
    base.merge_real(c);
    assert_eq!((base.real, base.real_queries), ([0, MIN_REAL, MIN_REAL], MIN_REAL));
    assert_eq!(base.by_rank[0][0][0], 0.5);
    // Queried by cosine alone: only cosine is measured.
    let (c, ran) = measure(long, [false, false, true]);
    assert_eq!((c.real, ran), ([0, 0, MIN_REAL], [false, false, true]));
}

/// The ladder of the two tests below.
const LADDER: [usize; 5] = [1, 2, 4, 8, 16];

/// Calibrate [`LADDER`] with 16 sample points of a fixed 300 x 4 data
/// set; each index search is answered by `answer`, given the query and
/// its exact answer (scored as the calibration's exact scan scores:
/// ties and rounding alike).
fn calibrate(mut answer: impl FnMut(&CalibQuery, Vec<Scored>) -> (Vec<Scored>, f32)) -> Calibrator {
    let (n, dim) = (300usize, 4usize);
    let data: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let dense = Dense::new(data, dim);
    let rows = Rows::new((0..n as u64).collect(), dim);
    let rows = rows.at(&dense);
    let probes: Vec<usize> = (0..16).collect();
    let mut cal = Calibrator::new(probes, RealQueries::default(), LADDER.to_vec());
    while !cal.step(&rows, 1000, |q: &CalibQuery| {
        let mut top = TopK::new(CALIB_K);
        for r in (0..n).filter(|&r| r != q.me) {
            let d = (kernels().dot)(q.query, rows.row(r));
            top.push(Scored { key: key_from_dot(q.metric, d, norm(q.query), rows.norm(r)), id: r as u64 });
        }
        vec![answer(q, top.into_sorted())]
    }) {}
    cal
}

/// A calibration of an index that always finds the exact answer runs
/// two rungs for most queries, the whole ladder for every eighth, and
/// still measures recall 1 and a cost for every rung, never less for
/// a wider one.
#[test]
fn queries_answered_fully_twice_stop_climbing() {
    let mut runs = 0usize;
    let cal = calibrate(|q, exact| {
        runs += 1;
        // Rung 1 (setting 2) is slowed by something else each time.
        let cost = if q.rung == 1 { 1e6 } else { 1000.0 * q.ladder[q.rung] as f32 };
        (exact, cost)
    });
    let jobs = 16usize * 3;
    let full = jobs.div_ceil(FULL_LADDER_EVERY);
    assert_eq!(runs, full * LADDER.len() + (jobs - full) * 2);
    let c = cal.finish();
    assert!(c.recall.iter().all(|r| r.iter().all(|&x| x == 1.0)), "{:?}", c.recall);
    // A rung measured dearer than the one above it takes that cost.
    assert_eq!(c.cost_ns, vec![1000.0, 4000.0, 4000.0, 8000.0, 16000.0]);
}

/// An index whose searches take 3 ms per unit of setting: settings 1,
/// 2 and 4 run (the last 12 ms), 8 would take 24 ms, past the budget,
/// so neither it nor 16 runs; they count as misses although the index
/// would have found everything there, and are costed in proportion.
#[test]
fn settings_past_the_walk_budget_are_not_run_and_not_trusted() {
    let mut widest = 0;
    let cal = calibrate(|q, mut exact| {
        widest = widest.max(q.ladder[q.rung]);
        // Below setting 8 the search misses its last answer.
        if q.ladder[q.rung] < 8 {
            exact.pop();
        }
        (exact, 3e6 * q.ladder[q.rung] as f32)
    });
    assert_eq!(widest, 4);
    assert_eq!(cal.walks_cut(), 16 * 3);
    let c = cal.finish();
    for m in 0..3 {
        assert!((c.recall[m][2] - 0.9).abs() < 1e-6, "{:?}", c.recall[m]);
        assert_eq!(c.recall[m][3..], [0.0, 0.0]);
    }
    assert_eq!(c.cost_ns, vec![3e6, 6e6, 12e6, 24e6, 48e6]);
}
