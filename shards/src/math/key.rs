//! The key of a point under a metric: the one number every exact scan,
//! index re-ranking and calibration ranks by, lower is better (l2: the
//! squared distance; dot and cosine: the negated similarity), and its
//! conversion to the API's `value`.
//!
//! [`key`] is the formula, written once; the other functions feed it from
//! vectors ([`exact_key`], [`exact_key_normed`]) or from a dot product
//! alone ([`key_from_dot`]), and the exact scan calls it on its kernels'
//! outputs ([`raw_pair`], [`raw_block`]).

use super::distance::{kernels, BlockFn, Kernels, Metric, PairFn};

/// The key of a point from the kernel output for it and the query (`raw`:
/// the squared l2 distance for l2, the dot product otherwise, see
/// [`raw_pair`]). Cosine divides by both norms (`q_norm` 1.0 for a query
/// normalised beforehand) and has no key, NaN, if either is zero; l2 and
/// dot ignore the norms.
#[inline(always)]
pub fn key(metric: Metric, raw: f32, q_norm: f32, x_norm: f32) -> f32 {
    match metric {
        Metric::L2 => raw,
        Metric::Dot => -raw,
        Metric::Cosine if q_norm == 0.0 || x_norm == 0.0 => f32::NAN,
        Metric::Cosine => -raw / (q_norm * x_norm),
    }
}

/// The kernel [`key`] takes its `raw` from: squared l2 distance for l2,
/// dot product for dot and cosine.
#[inline]
pub fn raw_pair(kern: &Kernels, metric: Metric) -> PairFn {
    if metric == Metric::L2 {
        kern.l2sq
    } else {
        kern.dot
    }
}

/// [`raw_pair`] for the blocked kernels.
#[inline]
pub fn raw_block(kern: &Kernels, metric: Metric) -> BlockFn {
    if metric == Metric::L2 {
        kern.l2sq_block
    } else {
        kern.dot_block
    }
}

/// The Euclidean norm, from the dot kernel.
pub fn norm(v: &[f32]) -> f32 {
    (kernels().dot)(v, v).sqrt()
}

/// Exact key of `x` for `query`, as the partition scores (`x_norm`: the
/// norm of `x`, used by cosine only).
pub fn exact_key(metric: Metric, query: &[f32], x: &[f32], x_norm: f32) -> f32 {
    let q_norm = if metric == Metric::Cosine { norm(query) } else { 0.0 };
    exact_key_normed(metric, query, q_norm, x, x_norm)
}

/// [`exact_key`] with the query's norm (used by cosine only) computed once
/// by the caller, for scoring many points against one query.
#[inline]
pub fn exact_key_normed(metric: Metric, query: &[f32], q_norm: f32, x: &[f32], x_norm: f32) -> f32 {
    key(metric, raw_pair(kernels(), metric)(query, x), q_norm, x_norm)
}

/// [`key`] from the dot product of query and row and their norms, so one
/// dot product per row gives all three metrics' keys (calibration's exact
/// scan). Its l2 is `|q|² + |x|² - 2 q·x` (clamped at 0), not the l2
/// kernel [`exact_key`] uses: the two round differently (for `x = q` this
/// one need not be 0), so calibration's truth and an index's re-ranked
/// keys can order near-ties differently. Dot and cosine are
/// [`exact_key`]'s, bit for bit.
#[inline]
pub fn key_from_dot(metric: Metric, dot: f32, q_norm: f32, x_norm: f32) -> f32 {
    let raw = if metric == Metric::L2 { (q_norm * q_norm + x_norm * x_norm - 2.0 * dot).max(0.0) } else { dot };
    key(metric, raw, q_norm, x_norm)
}

/// Convert a key (lower is better) to the API's `value`: the l2 distance,
/// or the similarity.
pub fn key_to_value(metric: Metric, key: f32) -> f32 {
    match metric {
        Metric::L2 => key.max(0.0).sqrt(),
        Metric::Dot | Metric::Cosine => -key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: [Metric; 3] = [Metric::L2, Metric::Dot, Metric::Cosine];

    /// Small integers: every product and sum is exact, so the values do
    /// not depend on the kernel set this CPU picked. The third is zero.
    const VS: [[f32; 4]; 4] = [[1.0, 2.0, 3.0, 4.0], [4.0, -5.0, 6.0, 0.5], [0.0; 4], [-3.0, 0.0, 4.0, 0.0]];

    fn bits(f: impl Fn(&[f32], &[f32]) -> f32) -> [[u32; 4]; 4] {
        std::array::from_fn(|i| std::array::from_fn(|j| f(&VS[i], &VS[j]).to_bits()))
    }

    // The expected values below were printed by the copies these functions
    // replaced (ivf's `exact_key` / `exact_key_normed`, calibration's
    // `key_from_dot`, the `key_of` closure of `Partition::search_with`,
    // partition's `key_to_value` and `norm`), before they were merged.

    #[test]
    fn exact_keys_are_those_of_the_replaced_copies() {
        let want: [[[u32; 4]; 4]; 3] = [
            [
                [0x00000000, 0x429e8000, 0x41f00000, 0x42140000],
                [0x429e8000, 0x00000000, 0x429a8000, 0x429c8000],
                [0x41f00000, 0x429a8000, 0x00000000, 0x41c80000],
                [0x42140000, 0x429c8000, 0x41c80000, 0x00000000],
            ],
            [
                [0xc1f00000, 0xc1600000, 0x80000000, 0xc1100000],
                [0xc1600000, 0xc29a8000, 0x80000000, 0xc1400000],
                [0x80000000, 0x80000000, 0x80000000, 0x80000000],
                [0xc1100000, 0xc1400000, 0x80000000, 0xc1c80000],
            ],
            [
                [0xbf7fffff, 0xbe94e5d2, 0x7fc00000, 0xbea842a7],
                [0xbe94e5d2, 0xbf800000, 0x7fc00000, 0xbe8bced7],
                [0x7fc00000, 0x7fc00000, 0x7fc00000, 0x7fc00000],
                [0xbea842a7, 0xbe8bced7, 0x7fc00000, 0xbf800000],
            ],
        ];
        for (m, want) in METRICS.into_iter().zip(want) {
            assert_eq!(bits(|q, x| exact_key(m, q, x, norm(x))), want, "{m:?}");
            assert_eq!(bits(|q, x| exact_key_normed(m, q, norm(q), x, norm(x))), want, "{m:?}");
            if m != Metric::L2 {
                let from_dot = |q: &[f32], x: &[f32]| key_from_dot(m, (kernels().dot)(q, x), norm(q), norm(x));
                assert_eq!(bits(from_dot), want, "{m:?}: dot and cosine from a dot product are the same keys");
            }
        }
    }

    #[test]
    fn l2_from_a_dot_product_keeps_its_own_rounding() {
        let want = [
            [0x36800000, 0x429e8000, 0x41f00001, 0x42140000],
            [0x429e8000, 0x00000000, 0x429a8000, 0x429c8000],
            [0x41f00001, 0x429a8000, 0x00000000, 0x41c80000],
            [0x42140000, 0x429c8000, 0x41c80000, 0x00000000],
        ];
        assert_eq!(bits(|q, x| key_from_dot(Metric::L2, (kernels().dot)(q, x), norm(q), norm(x))), want);
    }

    /// The exact scan's use: the raw kernel output of a normalised query
    /// (`q_norm` 1.0) and the row's norm, zero included.
    #[test]
    fn scan_keys_are_those_of_the_replaced_closure() {
        let raws = [0.7f32, -3.25, 0.0, 12.5];
        let norms = [0.0f32, 2.5, 77f32.sqrt(), 1.0];
        let cosine: [[u32; 4]; 4] = [
            [0x7fc00000, 0xbe8f5c29, 0xbda35fb7, 0xbf333333],
            [0x7fc00000, 0x3fa66666, 0x3ebda162, 0x40500000],
            [0x7fc00000, 0x80000000, 0x80000000, 0x80000000],
            [0x7fc00000, 0xc0a00000, 0xbfb65641, 0xc1480000],
        ];
        let l2 = [0x3f333333, 0xc0500000, 0x00000000, 0x41480000];
        let dot = [0xbf333333, 0x40500000, 0x80000000, 0xc1480000];
        for (i, &raw) in raws.iter().enumerate() {
            for (j, &n) in norms.iter().enumerate() {
                assert_eq!(key(Metric::Cosine, raw, 1.0, n).to_bits(), cosine[i][j], "cosine {raw} / {n}");
                assert_eq!(key(Metric::L2, raw, 1.0, n).to_bits(), l2[i], "l2 {raw}");
                assert_eq!(key(Metric::Dot, raw, 1.0, n).to_bits(), dot[i], "dot {raw}");
            }
        }
    }

    #[test]
    fn values_and_norms_are_those_of_the_replaced_copies() {
        let keys = [-4.0f32, 0.0, 2.25, -0.5, 9.0];
        let want: [[u32; 5]; 3] = [
            [0x00000000, 0x00000000, 0x3fc00000, 0x00000000, 0x40400000],
            [0x40800000, 0x80000000, 0xc0100000, 0x3f000000, 0xc1100000],
            [0x40800000, 0x80000000, 0xc0100000, 0x3f000000, 0xc1100000],
        ];
        for (m, want) in METRICS.into_iter().zip(want) {
            assert_eq!(keys.map(|k| key_to_value(m, k).to_bits()), want, "{m:?}");
        }
        assert_eq!(VS.map(|v| norm(&v).to_bits()), [0x40af456f, 0x410ca08e, 0x00000000, 0x40a00000]);
    }
}
