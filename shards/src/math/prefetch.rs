//! A hint for the CPU to load memory a scan or graph walk is about to read.

/// Ask the CPU to start loading `data` (every 64-byte line of it).
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    // Every cache line the slice touches: a slice that does not start on a
    // line boundary spans one line more than its length suggests.
    #[cfg(target_arch = "x86_64")]
    if !data.is_empty() {
        let start = data.as_ptr() as usize;
        let end = start + std::mem::size_of_val(data);
        let mut line = start & !63;
        while line < end {
            // SAFETY: prefetching is a hint and never faults; the line
            // holds bytes of the slice.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch(line as *const i8, _MM_HINT_T0);
            }
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
