//! Graph tests: exhaustive beams are exact, tombstones never answer,
//! recall rises with the beam and filters only admit matches.

use super::*;
use crate::math::key::exact_key;
use crate::math::rng::lcg64;

fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut unit = || {
        s = lcg64(s);
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let centres: Vec<f32> = (0..16 * dim).map(|_| unit() * 4.0).collect();
    (0..n)
        .flat_map(|i| (0..dim).map(move |d| (i, d)).collect::<Vec<_>>())
        .map(|(i, d)| centres[(i % 16) * dim + d] + unit())
        .collect()
}

fn graph(rows: &[f32], dim: usize) -> (Hnsw, Vec<f32>) {
    let norms: Vec<f32> = rows.chunks(dim).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
    let sq = Sq8::fit_bits(dim, rows.chunks(dim), code_bits(dim));
    let mut g = Hnsw::new(dim, HnswParams { m: 8, ef_construction: 64 }, sq, 3);
    for (i, r) in rows.chunks(dim).enumerate() {
        g.insert(i as u64, r, norms[i]);
    }
    (g, norms)
}

fn exact_top(
    rows: &[f32],
    norms: &[f32],
    dim: usize,
    q: &[f32],
    metric: Metric,
    k: usize,
    live: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let mut t = TopK::new(k);
    for (i, r) in rows.chunks(dim).enumerate() {
        if live(i as u64) {
            t.push(Scored { key: exact_key(metric, q, r, norms[i]), id: i as u64 });
        }
    }
    t.into_sorted().into_iter().map(|s| s.id).collect()
}

#[test]
fn a_beam_as_wide_as_the_graph_equals_exact_for_every_metric() {
    // 8-bit codes at 12 dimensions, 4-bit at 160.
    for dim in [12, 160] {
        beam_as_wide_as_the_graph(dim);
    }
}

fn beam_as_wide_as_the_graph(dim: usize) {
    let n = 600;
    let rows = clustered(n, dim, 5);
    let (g, norms) = graph(&rows, dim);
    for metric in [Metric::L2, Metric::Dot, Metric::Cosine] {
        for qi in (0..n).step_by(41) {
            let q = &rows[qi * dim..(qi + 1) * dim];
            let got: Vec<u64> = g
                .search(
                    &HnswQuery { query: q, metric, k: 10, ef: n },
                    |_| true,
                    |id| Some(exact_key(metric, q, &rows[id as usize * dim..][..dim], norms[id as usize])),
                )
                .into_iter()
                .map(|s| s.id)
                .collect();
            assert_eq!(got, exact_top(&rows, &norms, dim, q, metric, 10, |_| true), "{metric:?} query {qi}");
        }
    }
}

#[test]
fn tombstoned_and_replaced_points_never_answer() {
    let (n, dim) = (800, 8);
    let rows = clustered(n, dim, 9);
    let (mut g, norms) = graph(&rows, dim);
    for id in (0..n as u64).filter(|id| id % 3 == 0) {
        g.remove(id);
    }
    // Point 1 moves far away: its old node must not answer for its old place.
    let far = vec![100.0f32; dim];
    g.insert(1, &far, far.iter().map(|x| x * x).sum::<f32>().sqrt());
    assert_eq!(g.tombstones(), n.div_ceil(3) + 1);
    let q = &rows[dim..2 * dim];
    let got = g.search(
        &HnswQuery { query: q, metric: Metric::L2, k: 20, ef: 200 },
        |_| true,
        |id| Some(exact_key(Metric::L2, q, &rows[id as usize * dim..][..dim], norms[id as usize])),
    );
    assert!(got.iter().all(|s| s.id % 3 != 0 && s.id != 1), "{got:?}");
    let q = &far[..];
    let got = g.search(
        &HnswQuery { query: q, metric: Metric::L2, k: 1, ef: 50 },
        |_| true,
        |id| {
            Some(if id == 1 {
                0.0
            } else {
                exact_key(Metric::L2, q, &rows[id as usize * dim..][..dim], norms[id as usize])
            })
        },
    );
    assert_eq!(got[0].id, 1, "the moved point is found at its new place");
}

#[test]
fn recall_rises_with_the_beam_and_filters_only_admit_matches() {
    let (n, dim) = (3000, 16);
    let rows = clustered(n, dim, 13);
    let (g, norms) = graph(&rows, dim);
    let recall = |ef: usize, accept: &dyn Fn(u64) -> bool| {
        let mut hit = 0;
        let queries = (0..n).step_by(97);
        let count = queries.clone().count();
        for qi in queries {
            let q = &rows[qi * dim..(qi + 1) * dim];
            let truth = exact_top(&rows, &norms, dim, q, Metric::L2, 10, accept);
            let got = g.search(&HnswQuery { query: q, metric: Metric::L2, k: 10, ef }, accept, |id| {
                Some(exact_key(Metric::L2, q, &rows[id as usize * dim..][..dim], norms[id as usize]))
            });
            assert!(got.iter().all(|s| accept(s.id)));
            hit += got.iter().filter(|s| truth.contains(&s.id)).count();
        }
        hit as f64 / (count * 10) as f64
    };
    let all = |_: u64| true;
    let (r10, r100) = (recall(10, &all), recall(100, &all));
    assert!(r100 >= r10 && r100 > 0.95, "ef 10: {r10}, ef 100: {r100}");
    let tenth = |id: u64| id.is_multiple_of(10);
    assert!(recall(100, &tenth) > 0.9, "filtered recall {}", recall(100, &tenth));
}

#[test]
fn code_storage_starts_on_a_cache_line_and_keeps_every_byte() {
    let mut b = LineBytes::default();
    let mut want = Vec::new();
    for n in 0..300u32 {
        let code: Vec<u8> = (0..(n % 70) as u8).map(|i| i.wrapping_mul(31).wrapping_add(n as u8)).collect();
        b.extend_from_slice(&code);
        want.extend_from_slice(&code);
        assert_eq!(b.as_slice(), &want[..]);
        assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
    }
    assert!(b.capacity() >= want.len());
}
