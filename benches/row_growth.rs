//! How long one append can stall a partition while its rows grow: the rows
//! buffer (`math::aligned::Aligned`, mapped pages grown by `mremap`)
//! against the `Vec` of 64-byte lines it replaced (which grows by copying
//! into fresh memory), appending 384-dim rows one at a time, in one run,
//! twice each in turn. Prints the total time, the worst single append, and
//! every append over 5 ms with the row count it happened at.
//!
//! Run: `cargo bench --bench row_growth -- [ROWS]` (default 500,000: 768 MB
//! of rows, as one partition holds after ~40 minutes at 200 points/s).

use aionbd_shards::math::aligned::Aligned;
use std::time::{Duration, Instant};

/// The buffer before: 64-byte lines in a `Vec`.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

const DIM: usize = 384;

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map_or(500_000, |a| a.parse().expect("usage: row_growth [ROWS]"));
    let row: Vec<f32> = (0..DIM).map(|i| i as f32).collect();
    for kind in ["vec of lines", "aligned", "vec of lines", "aligned"] {
        let mut slow = Vec::new();
        let mut worst = Duration::ZERO;
        let mut timed = |i: usize, append: &mut dyn FnMut()| {
            let t = Instant::now();
            append();
            let e = t.elapsed();
            if e > Duration::from_millis(5) {
                slow.push((i, e.as_millis()));
            }
            worst = worst.max(e);
        };
        let t0 = Instant::now();
        if kind == "aligned" {
            let mut a: Aligned<f32> = Aligned::new();
            for i in 0..rows {
                timed(i, &mut || a.extend_from_slice(&row));
            }
            std::hint::black_box(&a[..]);
        } else {
            let mut v: Vec<Line> = Vec::new();
            let mut len = 0usize;
            for i in 0..rows {
                timed(i, &mut || {
                    let end = len + DIM;
                    v.resize(end.div_ceil(16), Line::default());
                    // SAFETY: `v` holds at least `end` floats (Line is
                    // 16 f32s with no padding).
                    let all = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), end) };
                    all[len..].copy_from_slice(&row);
                    len = end;
                });
            }
            std::hint::black_box(&v);
        }
        println!(
            "{kind}: {rows} rows of {DIM} f32 in {:.0} ms; worst append {:.2} ms; appends over 5 ms (rows, ms): {slow:?}",
            t0.elapsed().as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
}
