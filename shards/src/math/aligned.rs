//! A growable `f32` buffer whose first element sits on a 64-byte boundary.
//!
//! The allocator gives a `Vec<f32>` 16-byte alignment (large blocks come
//! from `mmap` with a 16-byte header), so every 64-byte AVX-512 load of a
//! row would straddle two cache lines. With the start aligned, every row of
//! a dimension divisible by 16 is aligned too (384: all of them).

use std::ops::{Deref, DerefMut};

/// One cache line of floats; the unit of allocation.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

const LINE: usize = 16;

#[derive(Clone, Default)]
pub struct AlignedF32 {
    lines: Vec<Line>,
    /// Floats in use (the rest of the last line is unused).
    len: usize,
}

impl AlignedF32 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Floats the allocation holds.
    pub fn capacity(&self) -> usize {
        self.lines.capacity() * LINE
    }

    pub fn extend_from_slice(&mut self, values: &[f32]) {
        let end = self.len + values.len();
        self.lines.resize(end.div_ceil(LINE), Line::default());
        let start = self.len;
        self.len = end;
        self[start..end].copy_from_slice(values);
    }

    /// Give back the allocation beyond the floats in use.
    pub fn shrink_to_fit(&mut self) {
        self.lines.shrink_to_fit();
    }

    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        self.len = len;
        self.lines.truncate(len.div_ceil(LINE));
    }
}

impl Deref for AlignedF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `lines` holds `lines.len() * LINE >= len` initialised
        // f32s, contiguous (`Line` is `repr(C)` over `[f32; LINE]`, whose
        // size is exactly 64 bytes, so there is no padding between lines).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }
}

impl DerefMut for AlignedF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }
}

impl std::fmt::Debug for AlignedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedF32").field("len", &self.len).field("capacity", &self.capacity()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_and_behaves_like_a_vec() {
        let mut a = AlignedF32::new();
        let mut v = Vec::new();
        for i in 0..100 {
            let row: Vec<f32> = (0..(i % 37)).map(|j| (i * 100 + j) as f32).collect();
            a.extend_from_slice(&row);
            v.extend_from_slice(&row);
            assert_eq!(&a[..], &v[..]);
            if !a.is_empty() {
                assert_eq!(a.as_ptr() as usize % 64, 0);
            }
            if i % 7 == 0 {
                let keep = v.len() / 2;
                a.truncate(keep);
                v.truncate(keep);
                assert_eq!(&a[..], &v[..]);
            }
        }
        a.copy_within(0..5, 10);
        v.copy_within(0..5, 10);
        assert_eq!(&a[..], &v[..]);
        a.truncate(3);
        a.extend_from_slice(&[]);
        assert_eq!(a.len(), 3);
        assert!(a.capacity() >= 16);
    }
}
