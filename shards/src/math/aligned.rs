//! Growable buffers of plain values whose first element sits on a 64-byte
//! boundary: a partition's rows, its graph's codes, and query blocks.
//!
//! The allocator gives a `Vec<f32>` 16-byte alignment (large blocks come
//! from `mmap` with a 16-byte header), so every 64-byte AVX-512 load of a
//! row would straddle two cache lines. With the start aligned, every row of
//! a dimension divisible by 16 is aligned too (384: all of them).
//!
//! From [`MAP_FROM`] bytes a buffer is anonymous memory mapped from the
//! kernel, and grows by remapping its pages (`mremap`), never by copying
//! them. A `Vec` of 64-byte-aligned elements grows by allocating anew and
//! copying (Rust's allocator cannot ask glibc's `realloc` for more than
//! 16-byte alignment): under steady ingest a partition's rows doubled from
//! hundreds of megabytes by copying them into as many fresh pages while the
//! shard's requests waited, and held both copies at once.

use std::alloc::{handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Values for which every byte pattern of zeros and any copy is valid and
/// which need no drop.
pub trait Plain: Copy + 'static {}
impl Plain for f32 {}
impl Plain for u8 {}

const ALIGN: usize = 64;
/// Buffers of at least this many bytes are mapped pages.
pub const MAP_FROM: usize = 1 << 20;

pub struct Aligned<T: Plain> {
    ptr: NonNull<T>,
    /// Values in use; nothing past them is read.
    len: usize,
    /// Bytes allocated (0: none).
    cap: usize,
    /// Whether the allocation is mapped pages (else from the allocator).
    mapped: bool,
}

/// The rows of a partition and blocks of queries.
pub type AlignedF32 = Aligned<f32>;

// SAFETY: an `Aligned` owns its allocation alone, like a `Vec<T>` of
// plain values.
unsafe impl<T: Plain + Send> Send for Aligned<T> {}
unsafe impl<T: Plain + Sync> Sync for Aligned<T> {}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl<T: Plain> Default for Aligned<T> {
    fn default() -> Self {
        Aligned { ptr: NonNull::dangling(), len: 0, cap: 0, mapped: false }
    }
}

impl<T: Plain> Aligned<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values the allocation holds.
    pub fn capacity(&self) -> usize {
        self.cap / size_of::<T>()
    }

    pub fn extend_from_slice(&mut self, values: &[T]) {
        let end = self.len + values.len();
        self.grow_to(end * size_of::<T>(), true);
        // SAFETY: the allocation holds `end` values; `values` cannot alias
        // it (it is borrowed apart from `self`).
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr.as_ptr().add(self.len), values.len()) };
        self.len = end;
    }

    /// Room for `additional` more values, exactly (a build knows its size).
    pub fn reserve_exact(&mut self, additional: usize) {
        self.grow_to((self.len + additional) * size_of::<T>(), false);
    }

    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Give back the allocation beyond the values in use (to the page).
    pub fn shrink_to_fit(&mut self) {
        let want = self.len * size_of::<T>();
        if self.len == 0 {
            self.release();
        } else if self.mapped {
            let want = want.next_multiple_of(page());
            if want < self.cap {
                // SAFETY: shrinking a mapping we own; it stays in place.
                let p = unsafe { libc::mremap(self.ptr.as_ptr().cast(), self.cap, want, 0) };
                if p != libc::MAP_FAILED {
                    self.cap = want;
                }
            }
        } else {
            let want = want.next_multiple_of(ALIGN);
            if want < self.cap {
                self.realloc_heap(want);
            }
        }
    }

    /// Make the allocation at least `bytes` (`double`: at least twice
    /// what it was, so appends cost amortised constant time).
    fn grow_to(&mut self, bytes: usize, double: bool) {
        if bytes <= self.cap {
            return;
        }
        let want = if double { bytes.max(2 * self.cap) } else { bytes };
        if want < MAP_FROM && !self.mapped {
            self.realloc_heap(want.next_multiple_of(ALIGN));
            return;
        }
        let want = want.next_multiple_of(page());
        // SAFETY: a fresh private anonymous mapping, or one we own grown
        // (moved if need be: the kernel moves its pages, not the bytes).
        let raw = unsafe {
            if self.mapped {
                libc::mremap(self.ptr.as_ptr().cast(), self.cap, want, libc::MREMAP_MAYMOVE)
            } else {
                libc::mmap(
                    std::ptr::null_mut(),
                    want,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            }
        };
        let Some(p) = NonNull::new(raw.cast::<T>()).filter(|_| raw != libc::MAP_FAILED) else {
            handle_alloc_error(Layout::from_size_align(want, ALIGN).expect("a valid layout"));
        };
        if !self.mapped {
            // SAFETY: both hold `len` values; a fresh mapping overlaps
            // nothing.
            unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), p.as_ptr(), self.len) };
            self.release_heap();
        }
        (self.ptr, self.cap, self.mapped) = (p, want, true);
    }

    /// Resize a heap allocation (or make the first) to `bytes` (> 0).
    fn realloc_heap(&mut self, bytes: usize) {
        let layout = Layout::from_size_align(bytes, ALIGN).expect("a valid layout");
        // SAFETY: a layout of non-zero size; the old allocation, if any,
        // was made with `ALIGN` and `self.cap` bytes.
        let p = unsafe {
            if self.cap == 0 {
                std::alloc::alloc(layout)
            } else {
                let old = Layout::from_size_align_unchecked(self.cap, ALIGN);
                std::alloc::realloc(self.ptr.as_ptr().cast(), old, bytes)
            }
        };
        let Some(p) = NonNull::new(p.cast::<T>()) else { handle_alloc_error(layout) };
        (self.ptr, self.cap) = (p, bytes);
    }

    fn release_heap(&mut self) {
        if self.cap > 0 && !self.mapped {
            // SAFETY: allocated by `realloc_heap` with this layout.
            unsafe {
                std::alloc::dealloc(self.ptr.as_ptr().cast(), Layout::from_size_align_unchecked(self.cap, ALIGN))
            };
        }
    }

    /// Free the allocation.
    fn release(&mut self) {
        if self.mapped {
            // SAFETY: our own mapping of `cap` bytes, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.cap) };
        } else {
            self.release_heap();
        }
        // Fields one by one: assigning a new value would drop this one.
        (self.ptr, self.len, self.cap, self.mapped) = (NonNull::dangling(), 0, 0, false);
    }
}

impl<T: Plain> Drop for Aligned<T> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<T: Plain> Clone for Aligned<T> {
    fn clone(&self) -> Self {
        let mut c = Self::new();
        c.extend_from_slice(self);
        c
    }
}

impl<T: Plain> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised values (dangling but
        // aligned for `T` when `len` is 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Plain> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aligned").field("len", &self.len).field("capacity", &self.capacity()).finish()
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
        assert_eq!(&a.clone()[..], &v[..3]);
        a.shrink_to_fit();
        assert_eq!(&a[..], &v[..3]);
        a.truncate(0);
        a.shrink_to_fit();
        assert_eq!((a.len(), a.capacity()), (0, 0));
    }

    /// Past `MAP_FROM` the buffer moves to mapped pages, keeps every value
    /// through growth by remapping, clones, shrinks and frees.
    #[test]
    fn large_buffers_grow_as_mapped_pages_and_keep_their_values() {
        let mut a: Aligned<u8> = Aligned::new();
        let mut v = Vec::new();
        let mut n = 0u32;
        while a.capacity() < 4 * MAP_FROM {
            let chunk: Vec<u8> = (0..4093u32).map(|i| (i.wrapping_mul(31) ^ n) as u8).collect();
            a.extend_from_slice(&chunk);
            v.extend_from_slice(&chunk);
            n += 1;
            assert_eq!(a.as_ptr() as usize % 64, 0);
        }
        assert!(a.mapped);
        assert_eq!(&a[..], &v[..]);
        let b = a.clone();
        assert_eq!(&b[..], &v[..]);
        a.truncate(MAP_FROM / 2 + 5);
        a.shrink_to_fit();
        assert!(a.capacity() < 2 * MAP_FROM && a.capacity() >= MAP_FROM / 2 + 5);
        assert_eq!(&a[..], &v[..MAP_FROM / 2 + 5]);
        a.reserve_exact(3 * MAP_FROM);
        assert!(a.capacity() >= MAP_FROM / 2 + 5 + 3 * MAP_FROM);
        a.extend_from_slice(&v[..10]);
        assert_eq!(&a[MAP_FROM / 2 + 5..], &v[..10]);
        drop(a);
        assert_eq!(&b[..], &v[..]);
    }
}
