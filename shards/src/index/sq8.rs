//! Scalar quantization shared by the IVF and HNSW indexes: each dimension
//! maps its [min, max] (from a sample) onto 0..=255 (8-bit codes, IVF) or
//! 0..=15 (4-bit codes, two dimensions per byte, the HNSW graph), and a
//! query stays full precision (asymmetric scoring), prepared once per query
//! so a code scores with one pass of a SIMD integer kernel.
//!
//! 4-bit layout: blocks of 32 dimensions in 16 bytes; byte `j` of block `b`
//! holds dimension `32b + j` in its low nibble and `32b + 16 + j` in its
//! high one (a dimension count that is not a multiple of 32 is padded with
//! zero codes, which score nothing).

use crate::math::distance::Metric;
use crate::math::key::norm;

/// Each dimension's [min, max] over rows added one at a time: a fit over
/// many rows can be spread over bounded steps (a graph build's first step
/// over every seventh row of 600,000 took 85 ms in one go).
#[derive(Clone, Debug)]
pub struct Ranges {
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Ranges {
    pub fn new(dim: usize) -> Ranges {
        Ranges { lo: vec![f32::INFINITY; dim], hi: vec![f32::NEG_INFINITY; dim] }
    }

    pub fn add(&mut self, row: &[f32]) {
        for ((lo, hi), &v) in self.lo.iter_mut().zip(&mut self.hi).zip(row) {
            *lo = lo.min(v);
            *hi = hi.max(v);
        }
    }

    /// Codes of `bits` (8, or 4: packed) over these ranges (an empty range
    /// is [0, 0]).
    pub fn codes(self, bits: u32) -> Sq8 {
        Sq8::from_ranges(self.lo, self.hi, bits)
    }
}

/// Per-dimension ranges: x_i ~ min_i + code_i * scale_i.
#[derive(Clone, Debug, Default)]
pub struct Sq8 {
    /// Codes of 4 bits (packed) instead of 8.
    packed: bool,
    min: Vec<f32>,
    scale: Vec<f32>,
    /// scale_i^2, the weights of l2 between codes.
    scale2: Vec<f32>,
    /// [`Sq8::l2_code`]'s integer terms are `code_i * code_mult_i`, one
    /// step `code_step` for every code (no per-code scan for the largest).
    code_mult: Vec<f32>,
    code_step: f32,
}

impl Sq8 {
    /// 8-bit codes over the ranges of `rows` (a sample of vectors of `dim`
    /// values).
    pub fn fit<'a>(dim: usize, rows: impl Iterator<Item = &'a [f32]>) -> Sq8 {
        Sq8::fit_bits(dim, rows, 8)
    }

    /// Codes of `bits` (8, or 4: packed) over the ranges of `rows`.
    pub fn fit_bits<'a>(dim: usize, rows: impl Iterator<Item = &'a [f32]>, bits: u32) -> Sq8 {
        let mut ranges = Ranges::new(dim);
        rows.for_each(|row| ranges.add(row));
        ranges.codes(bits)
    }

    fn from_ranges(mut lo: Vec<f32>, mut hi: Vec<f32>, bits: u32) -> Sq8 {
        assert!(bits == 8 || bits == 4, "8- or 4-bit codes");
        let top = ((1u32 << bits) - 1) as f32;
        for i in 0..lo.len() {
            if lo[i] > hi[i] {
                (lo[i], hi[i]) = (0.0, 0.0);
            }
        }
        let scale: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| ((h - l) / top).max(0.0)).collect();
        let scale2: Vec<f32> = scale.iter().map(|s| s * s).collect();
        // The largest term any code can have, and their largest sum: the
        // same bounds as `to_i16` applies per vector.
        let terms: Vec<f32> = scale2.iter().map(|w| w * top).collect();
        let (_, code_step) = to_i16(&terms);
        let code_mult = scale2.iter().map(|w| w / code_step).collect();
        Sq8 { packed: bits == 4, min: lo, scale, scale2, code_mult, code_step }
    }

    pub fn dim(&self) -> usize {
        self.min.len()
    }

    /// Bytes of one code.
    pub fn code_len(&self) -> usize {
        if self.packed {
            self.min.len().div_ceil(32) * 16
        } else {
            self.min.len()
        }
    }

    /// Length of the integer query vectors the kernels take (4-bit: the
    /// dimensions padded to whole blocks).
    fn ai_len(&self) -> usize {
        if self.packed {
            self.min.len().div_ceil(32) * 32
        } else {
            self.min.len()
        }
    }

    /// Code values of `code`, one per dimension.
    fn levels<'a>(&self, code: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
        let (dim, packed) = (self.min.len(), self.packed);
        (0..dim).map(move |i| {
            if packed {
                let byte = code[i / 32 * 16 + i % 16];
                if i % 32 < 16 {
                    byte & 15
                } else {
                    byte >> 4
                }
            } else {
                code[i]
            }
        })
    }

    pub fn mem_bytes(&self) -> usize {
        self.min.len() * 16 + 4
    }

    /// Append the code of `x` (values outside the range clamp).
    pub fn encode(&self, x: &[f32], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.code_len(), 0);
        self.encode_into(x, &mut out[start..]);
    }

    /// Write the code of `x` into `out` ([`Sq8::code_len`] bytes).
    pub fn encode_into(&self, x: &[f32], out: &mut [u8]) {
        let top = if self.packed { 15.0 } else { 255.0 };
        let level = |i: usize| -> u8 {
            match (x.get(i), self.scale.get(i)) {
                (Some(&v), Some(&s)) if s > 0.0 => nearest_level((v - self.min[i]) / s, top),
                _ => 0,
            }
        };
        if self.packed {
            for (b, block) in out.chunks_exact_mut(16).enumerate() {
                for (j, byte) in block.iter_mut().enumerate() {
                    *byte = level(32 * b + j) | level(32 * b + 16 + j) << 4;
                }
            }
        } else {
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = level(i);
            }
        }
    }

    /// Prepare `query` for scoring codes by `metric` (cosine: the query is
    /// normalised here; codes then divide by their vector's norm).
    pub fn prepare(&self, query: &[f32], metric: Metric) -> Prepared {
        let dim = self.min.len();
        let normed: Vec<f32>;
        let query = if metric == Metric::Cosine {
            let n = norm(query);
            normed = query.iter().map(|x| x / n).collect();
            &normed[..]
        } else {
            query
        };
        let (a, b): (Vec<f32>, Vec<f32>) = if metric == Metric::L2 {
            // sum_i scale_i^2 (q'_i - c_i)^2 with q'_i = (q_i - min_i) / scale_i;
            // a dimension of one value (scale 0) adds a constant instead.
            (0..dim)
                .map(|i| match self.scale[i] {
                    0.0 => (0.0, 0.0),
                    s => ((query[i] - self.min[i]) / s, s * s),
                })
                .unzip()
        } else {
            // sum_i q_i min_i + sum_i (q_i scale_i) c_i
            (0..dim).map(|i| (query[i] * self.scale[i], query[i] * self.min[i])).unzip()
        };
        let base = if metric == Metric::L2 {
            (0..dim).filter(|&i| self.scale[i] == 0.0).map(|i| (query[i] - self.min[i]).powi(2)).sum()
        } else {
            b.iter().sum()
        };
        // Dot and cosine score with integers.
        let (mut ai, step) = to_i16(&a);
        ai.resize(self.ai_len(), 0);
        Prepared { metric, packed: self.packed, query: query.to_vec(), a, b, base, ai, step }
    }

    /// `sum_i scale_i^2 code_i^2`: the per-code term of [`L2Codes::key`],
    /// stored next to each code by its owner.
    pub fn code_sq(&self, code: &[u8]) -> f32 {
        self.levels(code).zip(&self.scale2).map(|(c, w)| w * (c as f32) * (c as f32)).sum()
    }

    /// Squared l2 from the vector `x` to codes, in integers.
    pub fn l2_query(&self, x: &[f32]) -> L2Codes {
        // With x'_i = x_i - min_i: |x' - scale * c|^2
        //   = |x'|^2 - 2 sum_i (x'_i scale_i) c_i + sum_i scale_i^2 c_i^2.
        let shifted: Vec<f32> = x.iter().zip(&self.min).map(|(v, m)| v - m).collect();
        let a: Vec<f32> = shifted.iter().zip(&self.scale).map(|(v, s)| v * s).collect();
        let (mut ai, step) = to_i16(&a);
        ai.resize(self.ai_len(), 0);
        L2Codes { packed: self.packed, ai, step, base: shifted.iter().map(|v| v * v).sum() }
    }

    /// Squared l2 from the code `code` (whose [`Sq8::code_sq`] is
    /// `code_sq`) to other codes, in integers.
    pub fn l2_code(&self, code: &[u8], code_sq: f32) -> L2Codes {
        let mut ai: Vec<i16> =
            self.levels(code).zip(&self.code_mult).map(|(c, m)| (c as f32 * m + 0.5) as i16).collect();
        ai.resize(self.ai_len(), 0);
        L2Codes { packed: self.packed, ai, step: self.code_step, base: code_sq }
    }
}

/// A query ready to score codes; keys are "lower is better".
pub struct Prepared {
    metric: Metric,
    packed: bool,
    /// The query as scored (normalised for cosine).
    pub query: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    base: f32,
    ai: Vec<i16>,
    step: f32,
}

impl Prepared {
    /// The approximate key of a code whose vector has norm `norm` (used by
    /// cosine only).
    /// l2 over 4-bit codes goes through [`Sq8::l2_query`] (it needs each
    /// code's own term).
    #[inline]
    pub fn key(&self, code: &[u8], norm: f32) -> f32 {
        match self.metric {
            Metric::L2 => {
                debug_assert!(!self.packed, "l2 keys of 4-bit codes come from Sq8::l2_query");
                self.base + sq_l2(&self.a, &self.b, code)
            }
            Metric::Dot => -(self.base + self.step * dot_codes(self.packed, &self.ai, code) as f32),
            Metric::Cosine => {
                -(self.base + self.step * dot_codes(self.packed, &self.ai, code) as f32) / norm.max(f32::MIN_POSITIVE)
            }
        }
    }
}

/// `t.round().clamp(0.0, top) as u8`, bit for bit, without `f32::round`
/// (a libm call on the x86-64 baseline: `hnsw_engine --pending` codes a
/// point in ~1.6 us with this, ~1.9 us with `round`). Clamped first, `t`
/// is at most 255, so its whole part and the fraction left are exact, and
/// "half away from zero" is the fraction's test.
#[inline]
fn nearest_level(t: f32, top: f32) -> u8 {
    let t = t.clamp(0.0, top);
    let whole = t as u8;
    whole + u8::from(t - f32::from(whole) >= 0.5)
}

/// `a` as integers `ai` with `a_i ~ step * ai_i`: 13 bits for the largest
/// term, coarser if needed so that `sum_i |ai_i| * 255` (the most an integer
/// kernel can add up, in i32 lanes) stays inside an i32 at any dimension.
fn to_i16(a: &[f32]) -> (Vec<i16>, f32) {
    let top = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let sum: f32 = a.iter().map(|x| x.abs()).sum();
    let step = (top / 8191.0).max(sum * 255.0 / 2.0e9);
    let step = if step > 0.0 && step.is_finite() { step } else { 1.0 };
    let inv = 1.0 / step;
    // Round half away from zero without a libm call per value.
    let ai = a
        .iter()
        .map(|x| {
            let r = x * inv;
            (if r >= 0.0 { r + 0.5 } else { r - 0.5 }) as i16
        })
        .collect();
    (ai, step)
}

/// Squared l2 distances to codes by the integer kernel (the HNSW graph's
/// construction and l2 walks): `key(code, code_sq)` with `code_sq` from
/// [`Sq8::code_sq`].
#[derive(Clone, Debug)]
pub struct L2Codes {
    packed: bool,
    ai: Vec<i16>,
    step: f32,
    base: f32,
}

impl L2Codes {
    #[inline]
    pub fn key(&self, code: &[u8], code_sq: f32) -> f32 {
        self.base + code_sq - 2.0 * self.step * dot_codes(self.packed, &self.ai, code) as f32
    }
}

/// `sum_i ai_i code_i` over 8-bit or packed 4-bit codes.
#[inline]
fn dot_codes(packed: bool, ai: &[i16], code: &[u8]) -> i32 {
    if packed {
        int_dot4(ai, code)
    } else {
        int_dot(ai, code)
    }
}

/// Lanes of the quantized kernels: independent accumulators, so the
/// compiler can keep them in one SIMD register (floating-point sums are not
/// reordered otherwise).
const LANES: usize = 8;

/// Whether the AVX2+FMA builds of the quantized kernels may run here.
fn have_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAVE.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The same loops compiled for AVX2+FMA (the crate's baseline is SSE2).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// 32 dimensions (16 bytes of packed codes) per step: the low and the
    /// high nibbles widened to i16 and multiply-added like `int_dot`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn int_dot4(a: &[i16], c: &[u8]) -> i32 {
        use std::arch::x86_64::*;
        let mask = _mm_set1_epi8(0x0F);
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for b in 0..c.len() / 16 {
            // SAFETY: 16 * b + 16 <= c.len() and 32 * b + 32 <= a.len()
            // (checked by the caller).
            let v = _mm_loadu_si128(c.as_ptr().add(16 * b) as *const __m128i);
            let lo = _mm256_cvtepu8_epi16(_mm_and_si128(v, mask));
            let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), mask));
            let a0 = _mm256_loadu_si256(a.as_ptr().add(32 * b) as *const __m256i);
            let a1 = _mm256_loadu_si256(a.as_ptr().add(32 * b + 16) as *const __m256i);
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, lo));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, hi));
        }
        let acc = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sq_l2(a: &[f32], w: &[f32], c: &[u8]) -> f32 {
        super::sq_l2_body(a, w, c)
    }
    /// 16 dimensions per step: widen the codes to i16 and multiply-add
    /// pairs into i32 lanes (`vpmaddwd`), two accumulators.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn int_dot(a: &[i16], c: &[u8]) -> i32 {
        use std::arch::x86_64::*;
        let n = c.len() / 32 * 32;
        let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        while i < n {
            // SAFETY: i + 32 <= c.len() <= a.len() (checked by the caller).
            let c0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(c.as_ptr().add(i) as *const __m128i));
            let c1 = _mm256_cvtepu8_epi16(_mm_loadu_si128(c.as_ptr().add(i + 16) as *const __m128i));
            let a0 = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
            let a1 = _mm256_loadu_si256(a.as_ptr().add(i + 16) as *const __m256i);
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, c0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, c1));
            i += 32;
        }
        let acc = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(s);
        for j in n..c.len() {
            sum += *a.get_unchecked(j) as i32 * *c.get_unchecked(j) as i32;
        }
        sum
    }
}

macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*), $check:expr) => {
        dispatch!($name, $body, ($($arg: $ty),*), $check, f32);
    };
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*), $check:expr, $out:ty) => {
        #[inline]
        fn $name($($arg: $ty),*) -> $out {
            assert!($check, "kernel slices of unequal length");
            #[cfg(target_arch = "x86_64")]
            if have_avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                return unsafe { avx2::$name($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

// sum_i w_i (a_i - c_i)^2 over 8-bit codes `c`.
dispatch!(sq_l2, sq_l2_body, (a: &[f32], w: &[f32], c: &[u8]), a.len() >= c.len() && w.len() >= c.len());
// sum_i a_i c_i in integers.
dispatch!(int_dot, int_dot_body, (a: &[i16], c: &[u8]), a.len() >= c.len(), i32);
// The same over packed 4-bit codes (whole 16-byte blocks).
dispatch!(int_dot4, int_dot4_body, (a: &[i16], c: &[u8]), c.len().is_multiple_of(16) && a.len() >= 2 * c.len(), i32);

#[inline(always)]
fn sq_l2_body(a: &[f32], w: &[f32], c: &[u8]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let n = c.len() / LANES * LANES;
    for ((ac, wc), cc) in a[..n].chunks_exact(LANES).zip(w[..n].chunks_exact(LANES)).zip(c[..n].chunks_exact(LANES)) {
        for l in 0..LANES {
            let d = ac[l] - cc[l] as f32;
            acc[l] += wc[l] * d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in n..c.len() {
        let d = a[i] - c[i] as f32;
        sum += w[i] * d * d;
    }
    sum
}

#[inline(always)]
fn int_dot4_body(a: &[i16], c: &[u8]) -> i32 {
    let mut acc = [0i32; 16];
    for (ab, cb) in a.chunks_exact(32).zip(c.chunks_exact(16)) {
        for j in 0..16 {
            acc[j] += ab[j] as i32 * (cb[j] & 15) as i32 + ab[16 + j] as i32 * (cb[j] >> 4) as i32;
        }
    }
    acc.iter().sum()
}

#[inline(always)]
fn int_dot_body(a: &[i16], c: &[u8]) -> i32 {
    const W: usize = 16;
    let mut acc = [0i32; W];
    let n = c.len() / W * W;
    for (ac, cc) in a[..n].chunks_exact(W).zip(c[..n].chunks_exact(W)) {
        for l in 0..W {
            acc[l] += ac[l] as i32 * cc[l] as i32;
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for i in n..c.len() {
        sum += a[i] as i32 * c[i] as i32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dequant(sq: &Sq8, code: &[u8]) -> Vec<f32> {
        sq.levels(code).enumerate().map(|(i, c)| sq.min[i] + c as f32 * sq.scale[i]).collect()
    }

    /// The packed layout: dimension 32b + j in the low nibble of byte
    /// 16b + j, 32b + 16 + j in its high nibble; padding codes are 0.
    #[test]
    fn four_bit_codes_pack_two_dimensions_per_byte() {
        let dim = 40;
        let (lo, hi) = (vec![0.0f32; dim], vec![15.0f32; dim]);
        let sq = Sq8::fit_bits(dim, [&lo[..], &hi[..]].into_iter(), 4);
        let x: Vec<f32> = (0..dim).map(|i| (i % 16) as f32).collect();
        let mut code = Vec::new();
        sq.encode(&x, &mut code);
        assert_eq!(code.len(), sq.code_len());
        assert_eq!(code.len(), 32);
        assert_eq!(code[3], 3 | 3 << 4); // dims 3 and 19
        assert_eq!(code[16 + 5], 5); // dim 37 (low); the high nibble is padding
        assert_eq!(sq.levels(&code).map(|c| c as f32).collect::<Vec<_>>(), x);
    }

    /// At the largest dimension allowed (4096) a query whose every term is
    /// the largest against a code of all 255s adds up 8191 * 255 * 4096 >
    /// i32::MAX with 13-bit terms: the integer keys must still equal the
    /// float formula (they wrapped around before the sum bound).
    #[test]
    fn integer_keys_do_not_overflow_at_the_largest_dimension() {
        let dim = 4096;
        let (lo, hi) = (vec![0.0f32; dim], vec![1.0f32; dim]);
        let sq = Sq8::fit(dim, [&lo[..], &hi[..]].into_iter());
        let mut code = Vec::new();
        sq.encode(&hi, &mut code);
        assert!(code.iter().all(|&c| c == 255));
        let q = vec![1.0f32; dim];
        let dot = sq.prepare(&q, Metric::Dot).key(&code, 1.0);
        assert!((dot + dim as f32).abs() <= 1e-3 * dim as f32, "dot key {dot}, want {}", -(dim as f32));
        let far = vec![-1.0f32; dim];
        let l2 = sq.l2_query(&far).key(&code, sq.code_sq(&code));
        let want = 4.0 * dim as f32;
        assert!((l2 - want).abs() <= 1e-3 * want, "l2 key {l2}, want {want}");
        let mut zero = Vec::new();
        sq.encode(&lo, &mut zero);
        let cl2 = sq.l2_code(&code, sq.code_sq(&code)).key(&zero, sq.code_sq(&zero));
        assert!((cl2 - dim as f32).abs() <= 1e-3 * dim as f32, "code l2 {cl2}, want {dim}");
    }

    /// The levels equal `round`, `clamp` and the cast they replace for
    /// every value near each level and its half-way points (the f32 just
    /// below and above), out of range, infinite, NaN, and a spread of bit
    /// patterns.
    #[test]
    fn levels_round_half_away_from_zero_like_f32_round() {
        let want = |t: f32, top: f32| t.round().clamp(0.0, top) as u8;
        let mut ts = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE, 1e9, -1e9];
        for i in -2..=258 {
            for base in [i as f32, i as f32 + 0.5] {
                ts.extend([base, f32::from_bits(base.to_bits() + 1), f32::from_bits(base.to_bits().wrapping_sub(1))]);
            }
        }
        // And a spread of bit patterns over all of f32 (both signs).
        ts.extend((0..u32::MAX / 65_521).map(|i| f32::from_bits(i.wrapping_mul(65_521))));
        for top in [15.0, 255.0] {
            for &t in &ts {
                assert_eq!(nearest_level(t, top), want(t, top), "t {t:e} top {top}");
            }
        }
    }

    proptest! {
        /// Every kernel (SIMD or not) equals the plain formula on the
        /// dequantized vectors, for any dimension (tails included), with
        /// 8-bit and packed 4-bit codes.
        #[test]
        fn quantized_keys_equal_the_keys_of_the_dequantized_vectors(
            dim in 1usize..40,
            seed in prop::collection::vec(-3.0f32..3.0, 200),
        ) {
            let mut seed = seed;
            // A constant dimension (scale 0) must not break the l2 kernel.
            if dim > 1 {
                seed.iter_mut().step_by(dim).for_each(|v| *v = 0.5);
            }
            let rows: Vec<&[f32]> = seed.chunks_exact(dim).collect();
            prop_assume!(rows.len() >= 3);
            for bits in [8, 4] {
            let sq = Sq8::fit_bits(dim, rows.iter().copied(), bits);
            // The query lies outside the fitted range in the constant dimension.
            let mut q = rows[0].to_vec();
            q[0] += 1.0;
            let (q, x, y) = (&q[..], rows[1], rows[2]);
            let (mut cx, mut cy) = (Vec::new(), Vec::new());
            sq.encode(x, &mut cx);
            sq.encode(y, &mut cy);
            let (dx, dy) = (dequant(&sq, &cx), dequant(&sq, &cy));
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + a.abs().max(b.abs()));
            // Dot and cosine quantize the query to 13 bits: within 1e-3 of
            // the sum of absolute terms.
            let scale: f32 = q.iter().zip(&dx).map(|(a, b)| (a * b).abs()).sum::<f32>() + q.iter().zip(&sq.min).map(|(a, b)| (a * b).abs()).sum::<f32>();
            let near = |a: f32, b: f32| (a - b).abs() <= 1e-3 * (1.0 + scale);
            let l2: f32 = q.iter().zip(&dx).map(|(a, b)| (a - b) * (a - b)).sum();
            if bits == 8 {
                prop_assert!(close(sq.prepare(q, Metric::L2).key(&cx, 1.0), l2));
            }
            let dot: f32 = q.iter().zip(&dx).map(|(a, b)| a * b).sum();
            prop_assert!(near(sq.prepare(q, Metric::Dot).key(&cx, 1.0), -dot));
            let cl2: f32 = dx.iter().zip(&dy).map(|(a, b)| (a - b) * (a - b)).sum();
            // The integer l2 keys: 13 bits of the query (or code) terms,
            // within 1e-3 of the sum of squares they cancel from.
            let sq_scale = |v: &[f32]| 1.0 + v.iter().zip(&sq.min).map(|(a, m)| (a - m) * (a - m)).sum::<f32>()
                + dx.iter().zip(&sq.min).map(|(a, m)| (a - m) * (a - m)).sum::<f32>();
            let l2i = sq.l2_query(q).key(&cx, sq.code_sq(&cx));
            prop_assert!((l2i - l2).abs() <= 1e-3 * sq_scale(q), "{l2i} vs {l2}");
            let cl2i = sq.l2_code(&cy, sq.code_sq(&cy)).key(&cx, sq.code_sq(&cx));
            prop_assert!((cl2i - cl2).abs() <= 1e-3 * sq_scale(&dy), "{cl2i} vs {cl2}");
            }
        }
    }
}
