//! Distance kernels: scalar, AVX2+FMA and AVX-512, picked once per process.
//!
//! Every kernel exists in a single-query form (`dot`, `l2sq`) and a blocked
//! form that scores [`QUERY_BLOCK`] queries against [`ROW_BLOCK`] stored
//! vectors per pass (`dot_block`, `l2sq_block`): each vector chunk loaded
//! feeds four queries and each query chunk four vectors, so a batch search
//! is bound by arithmetic, not by loads or memory. The safe wrappers check
//! slice lengths before any `unsafe` code runs; the SIMD bodies live in `x86`.

use std::sync::OnceLock;

/// Queries scored per pass by the blocked kernels.
pub const QUERY_BLOCK: usize = 4;
/// Stored vectors scored per pass by the blocked kernels.
pub const ROW_BLOCK: usize = 4;

/// Similarity / distance function requested by a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Dot,
    L2,
    Cosine,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Dot => "dot",
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
        }
    }
}

/// A kernel over one query and one stored vector.
pub type PairFn = fn(&[f32], &[f32]) -> f32;
/// A kernel over [`QUERY_BLOCK`] queries and [`ROW_BLOCK`] stored vectors:
/// `out[q][r]` is the pair kernel's value for `qs[q]` and `xs[r]` (summed
/// in another order, so it may differ in the last bits).
pub type BlockFn = fn(&[&[f32]; QUERY_BLOCK], &[&[f32]; ROW_BLOCK]) -> Block;
/// The output of a [`BlockFn`], by query then stored vector.
pub type Block = [[f32; ROW_BLOCK]; QUERY_BLOCK];

/// One instruction set's kernels. All functions panic if lengths differ
/// (callers validate dimensions first; a mismatch here is a bug).
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub dot: PairFn,
    pub l2sq: PairFn,
    pub dot_block: BlockFn,
    pub l2sq_block: BlockFn,
}

/// The best kernels this CPU supports, detected once.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| avx512().or_else(avx2).unwrap_or_else(scalar))
}

/// Every kernel set this CPU can run, scalar first (for tests and benches).
pub fn available() -> Vec<Kernels> {
    let mut out = vec![scalar()];
    out.extend(avx2());
    out.extend(avx512());
    out
}

pub fn scalar() -> Kernels {
    Kernels {
        name: "scalar",
        dot: scalar_dot,
        l2sq: scalar_l2sq,
        dot_block: |qs, xs| qs.map(|q| xs.map(|x| scalar_dot(q, x))),
        l2sq_block: |qs, xs| qs.map(|q| xs.map(|x| scalar_l2sq(q, x))),
    }
}

fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel slices differ in length");
    // Eight independent partial sums, like the SIMD kernels, so rounding is
    // comparable and the compiler can vectorise.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

fn scalar_l2sq(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel slices differ in length");
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            let d = a[c * 8 + l] - b[c * 8 + l];
            acc[l] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        let d = a[i] - b[i];
        sum += d * d;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub fn avx2() -> Option<Kernels> {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return None;
    }
    Some(Kernels {
        name: "avx2+fma",
        dot: |a, b| {
            assert_eq!(a.len(), b.len(), "kernel slices differ in length");
            // SAFETY: avx2+fma detected above; lengths checked.
            unsafe { x86::dot_avx2(a, b) }
        },
        l2sq: |a, b| {
            assert_eq!(a.len(), b.len(), "kernel slices differ in length");
            // SAFETY: avx2+fma detected above; lengths checked.
            unsafe { x86::l2sq_avx2(a, b) }
        },
        dot_block: |qs, xs| {
            check_block(qs, xs);
            // SAFETY: avx2+fma detected above; lengths checked.
            unsafe { x86::block_avx2::<false>(qs, xs) }
        },
        l2sq_block: |qs, xs| {
            check_block(qs, xs);
            // SAFETY: avx2+fma detected above; lengths checked.
            unsafe { x86::block_avx2::<true>(qs, xs) }
        },
    })
}

#[cfg(target_arch = "x86_64")]
pub fn avx512() -> Option<Kernels> {
    if !is_x86_feature_detected!("avx512f") {
        return None;
    }
    Some(Kernels {
        name: "avx512f",
        dot: |a, b| {
            assert_eq!(a.len(), b.len(), "kernel slices differ in length");
            // SAFETY: avx512f detected above; lengths checked.
            unsafe { x86::pair_avx512::<false>(a, b) }
        },
        l2sq: |a, b| {
            assert_eq!(a.len(), b.len(), "kernel slices differ in length");
            // SAFETY: avx512f detected above; lengths checked.
            unsafe { x86::pair_avx512::<true>(a, b) }
        },
        dot_block: |qs, xs| {
            check_block(qs, xs);
            // SAFETY: avx512f detected above; lengths checked.
            unsafe { x86::block_avx512::<false>(qs, xs) }
        },
        l2sq_block: |qs, xs| {
            check_block(qs, xs);
            // SAFETY: avx512f detected above; lengths checked.
            unsafe { x86::block_avx512::<true>(qs, xs) }
        },
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub fn avx2() -> Option<Kernels> {
    None
}

#[cfg(not(target_arch = "x86_64"))]
pub fn avx512() -> Option<Kernels> {
    None
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn check_block(qs: &[&[f32]; QUERY_BLOCK], xs: &[&[f32]; ROW_BLOCK]) {
    for v in qs.iter().chain(xs) {
        assert_eq!(v.len(), xs[0].len(), "kernel slices differ in length");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Block, QUERY_BLOCK, ROW_BLOCK};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let va = _mm256_loadu_ps(pa.add(i + 8 * j));
                let vb = _mm256_loadu_ps(pb.add(i + 8 * j));
                *acc_j = _mm256_fmadd_ps(va, vb, *acc_j);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum256(v);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j)));
                *acc_j = _mm256_fmadd_ps(d, d, *acc_j);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut sum = hsum256(v);
        while i < n {
            let d = *pa.add(i) - *pb.add(i);
            sum += d * d;
            i += 1;
        }
        sum
    }

    /// `L2 = true`: squared Euclidean distance; else dot product. Four
    /// queries against two stored vectors per inner pass (16 ymm registers
    /// hold 8 sums, a query chunk and 2 vector chunks).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block_avx2<const L2: bool>(qs: &[&[f32]; QUERY_BLOCK], xs: &[&[f32]; ROW_BLOCK]) -> Block {
        const { assert!(QUERY_BLOCK.is_multiple_of(4) && ROW_BLOCK.is_multiple_of(2)) };
        let mut out = [[0f32; ROW_BLOCK]; QUERY_BLOCK];
        for q0 in (0..QUERY_BLOCK).step_by(4) {
            let quad: [&[f32]; 4] = std::array::from_fn(|i| qs[q0 + i]);
            for r0 in (0..ROW_BLOCK).step_by(2) {
                let sums = block_avx2_2::<L2>(&quad, &[xs[r0], xs[r0 + 1]]);
                for (i, pair) in sums.iter().enumerate() {
                    out[q0 + i][r0..r0 + 2].copy_from_slice(pair);
                }
            }
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2_2<const L2: bool>(qs: &[&[f32]; 4], xs: &[&[f32]; 2]) -> [[f32; 2]; 4] {
        let n = xs[0].len();
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i + 8 <= n {
            let vx = xs.map(|x| _mm256_loadu_ps(x.as_ptr().add(i)));
            for (q, acc_q) in qs.iter().zip(acc.iter_mut()) {
                let vq = _mm256_loadu_ps(q.as_ptr().add(i));
                for (v, a) in vx.iter().zip(acc_q.iter_mut()) {
                    if L2 {
                        let d = _mm256_sub_ps(vq, *v);
                        *a = _mm256_fmadd_ps(d, d, *a);
                    } else {
                        *a = _mm256_fmadd_ps(vq, *v, *a);
                    }
                }
            }
            i += 8;
        }
        let mut out = [[0f32; 2]; 4];
        for (qi, q) in qs.iter().enumerate() {
            for (r, x) in xs.iter().enumerate() {
                let mut s = hsum256(acc[qi][r]);
                for j in i..n {
                    let (a, b) = (*q.as_ptr().add(j), *x.as_ptr().add(j));
                    s += if L2 { (a - b) * (a - b) } else { a * b };
                }
                out[qi][r] = s;
            }
        }
        out
    }

    /// Four independent sums over 64-float steps, like the AVX2 kernel
    /// (two sums left the scan of a 384-dim row waiting on FMA latency).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn pair_avx512<const L2: bool>(a: &[f32], b: &[f32]) -> f32 {
        #[inline(always)]
        unsafe fn step<const L2: bool>(va: __m512, vb: __m512, acc: __m512) -> __m512 {
            if L2 {
                let d = _mm512_sub_ps(va, vb);
                _mm512_fmadd_ps(d, d, acc)
            } else {
                _mm512_fmadd_ps(va, vb, acc)
            }
        }
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let k = i + 16 * j;
                *acc_j = step::<L2>(_mm512_loadu_ps(pa.add(k)), _mm512_loadu_ps(pb.add(k)), *acc_j);
            }
            i += 64;
        }
        while i < n {
            let left = (n - i).min(16);
            let mask: __mmask16 = if left == 16 { 0xffff } else { (1u16 << left) - 1 };
            let (va, vb) = (_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i)));
            acc[0] = step::<L2>(va, vb, acc[0]);
            i += left;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }

    /// Four queries against four stored vectors: 16 zmm sums, then one
    /// butterfly that leaves sum `q * ROW_BLOCK + r` in that lane of one
    /// register.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn block_avx512<const L2: bool>(qs: &[&[f32]; QUERY_BLOCK], xs: &[&[f32]; ROW_BLOCK]) -> Block {
        const { assert!(QUERY_BLOCK * ROW_BLOCK == 16) };
        let n = xs[0].len();
        let mut acc = [[_mm512_setzero_ps(); ROW_BLOCK]; QUERY_BLOCK];
        let mut i = 0;
        while i < n {
            let left = (n - i).min(16);
            let mask: __mmask16 = if left == 16 { 0xffff } else { (1u16 << left) - 1 };
            let vx = xs.map(|x| _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)));
            for (q, acc_q) in qs.iter().zip(acc.iter_mut()) {
                let vq = _mm512_maskz_loadu_ps(mask, q.as_ptr().add(i));
                for (v, a) in vx.iter().zip(acc_q.iter_mut()) {
                    if L2 {
                        let d = _mm512_sub_ps(vq, *v);
                        *a = _mm512_fmadd_ps(d, d, *a);
                    } else {
                        *a = _mm512_fmadd_ps(vq, *v, *a);
                    }
                }
            }
            i += left;
        }
        let v: [__m512; 16] = std::array::from_fn(|k| acc[k / ROW_BLOCK][k % ROW_BLOCK]);
        let sums: [f32; 16] = std::mem::transmute(reduce16(&v));
        std::array::from_fn(|q| std::array::from_fn(|r| sums[q * ROW_BLOCK + r]))
    }

    /// Lane `k` of the result is the sum of `v[k]`'s 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce16(v: &[__m512; 16]) -> __m512 {
        // 256-bit halves: w[i] holds v[i] (lanes 0-7) and v[i + 8] (8-15).
        let w: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[i], v[i + 8]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
        });
        // 128-bit quarters: x[i] holds v[i], v[i + 8], v[i + 4], v[i + 12].
        let x: [__m512; 4] = std::array::from_fn(|i| {
            let (a, b) = (w[i], w[i + 4]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
        });
        // Within each quarter: pairs of lanes, then single lanes.
        let y: [__m512; 2] = std::array::from_fn(|i| {
            let (a, b) = (x[i], x[i + 2]);
            _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
        });
        let z = _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
        // Quarters now hold v[0..4], v[8..12], v[4..8], v[12..16].
        _mm512_shuffle_f32x4::<0xD8>(z, z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::rng::lcg64;
    use proptest::prelude::*;

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    fn vecs(len: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut s = lcg64(seed);
        let mut next = || {
            s = lcg64(s);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let a = (0..len).map(|_| next()).collect();
        let b = (0..len).map(|_| next()).collect();
        (a, b)
    }

    #[test]
    fn every_kernel_equals_scalar_on_lengths_0_to_257() {
        let reference = scalar();
        for k in available() {
            for len in 0..=257usize {
                let (a, b) = vecs(len, len as u64);
                let scale = len as f32;
                let (d0, d1) = ((reference.dot)(&a, &b), (k.dot)(&a, &b));
                assert!(close(d0, d1, scale), "{} dot len {len}: {d0} vs {d1}", k.name);
                let (l0, l1) = ((reference.l2sq)(&a, &b), (k.l2sq)(&a, &b));
                assert!(close(l0, l1, scale), "{} l2sq len {len}: {l0} vs {l1}", k.name);
                let qs_owned: Vec<Vec<f32>> = (0..QUERY_BLOCK).map(|i| vecs(len, 1000 + i as u64).0).collect();
                let xs_owned: Vec<Vec<f32>> = (0..ROW_BLOCK).map(|i| vecs(len, 2000 + i as u64).1).collect();
                let qs: [&[f32]; QUERY_BLOCK] = std::array::from_fn(|i| qs_owned[i].as_slice());
                let xs: [&[f32]; ROW_BLOCK] = std::array::from_fn(|i| xs_owned[i].as_slice());
                let db = (k.dot_block)(&qs, &xs);
                let lb = (k.l2sq_block)(&qs, &xs);
                for q in 0..QUERY_BLOCK {
                    for r in 0..ROW_BLOCK {
                        let (d, l) = ((reference.dot)(qs[q], xs[r]), (reference.l2sq)(qs[q], xs[r]));
                        assert!(
                            close(db[q][r], d, scale),
                            "{} dot_block len {len} [{q}][{r}]: {} vs {d}",
                            k.name,
                            db[q][r]
                        );
                        assert!(
                            close(lb[q][r], l, scale),
                            "{} l2sq_block len {len} [{q}][{r}]: {} vs {l}",
                            k.name,
                            lb[q][r]
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn kernels_agree_on_random_inputs(pairs in proptest::collection::vec((-100f32..100f32, -100f32..100f32), 0..300)) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let reference = scalar();
            let scale: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs() + (x - y) * (x - y)).sum();
            for k in available() {
                prop_assert!(close((reference.dot)(&a, &b), (k.dot)(&a, &b), scale));
                prop_assert!(close((reference.l2sq)(&a, &b), (k.l2sq)(&a, &b), scale));
            }
        }
    }

    #[test]
    #[should_panic(expected = "differ in length")]
    fn length_mismatch_is_caught_before_simd() {
        (kernels().dot)(&[1.0, 2.0], &[1.0]);
    }
}
