//! Vectors for a run: from fvecs / npy / NDJSON files (a user's data), or
//! generated (clustered Gaussian points from a seed, so a run needs nothing
//! downloaded); ground truth from ivecs.

use crate::sched::Rng;
use aionbd_io::vecfile;
use std::path::Path;

/// Row-major vectors.
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn load(path: &Path) -> Result<Vectors, String> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "fvecs" | "npy") {
            let m = vecfile::read::<f32>(path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Vectors { dim: m.dim, data: m.data });
        }
        // NDJSON: lines with "values" (or "vector"); an export's first line is skipped.
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (mut dim, mut data) = (0, Vec::new());
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            let Some(values) = v.get("values").or_else(|| v.get("vector")).and_then(|x| x.as_array()) else {
                continue;
            };
            if dim == 0 {
                dim = values.len();
            }
            if values.len() != dim {
                return Err(format!(
                    "{} line {}: {} values, the first point had {dim}",
                    path.display(),
                    i + 1,
                    values.len()
                ));
            }
            for x in values {
                data.push(x.as_f64().ok_or_else(|| format!("{} line {}: not a number", path.display(), i + 1))? as f32);
            }
        }
        if dim == 0 {
            return Err(format!("{}: no vectors", path.display()));
        }
        Ok(Vectors { dim, data })
    }

    /// `n` points around `clusters` centres (uniform in [-1, 1]), spread
    /// 0.15 per dimension: real-ish structure for indexes, from a seed.
    pub fn generate(n: usize, dim: usize, clusters: usize, seed: u64) -> Vectors {
        let mut rng = Rng::new(seed);
        let centres: Vec<f32> = (0..clusters * dim).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = (rng.next_u64() % clusters as u64) as usize;
            for d in 0..dim {
                data.push(centres[c * dim + d] + (rng.normal() * 0.15) as f32);
            }
        }
        Vectors { dim, data }
    }
}

/// Ground truth: per query, the ids of its true nearest neighbours in order.
pub fn ground_truth(path: &Path, queries: usize) -> Result<Vec<Vec<u64>>, String> {
    let m = vecfile::read::<i32>(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.rows != queries {
        return Err(format!(
            "{} holds ground truth for {} queries, the query file has {queries}",
            path.display(),
            m.rows
        ));
    }
    Ok((0..m.rows).map(|i| m.row(i).iter().map(|&x| x as u64).collect()).collect())
}

/// recall@k of `got` against the first `k` of `truth`.
pub fn recall(got: &[u64], truth: &[u64], k: usize) -> f64 {
    let k = k.min(truth.len());
    if k == 0 {
        return 1.0;
    }
    let want: std::collections::HashSet<u64> = truth[..k].iter().copied().collect();
    got.iter().take(k).filter(|id| want.contains(id)).count() as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_repeats_with_the_seed_and_recall_counts_hits() {
        let a = Vectors::generate(100, 8, 4, 42);
        let b = Vectors::generate(100, 8, 4, 42);
        assert_eq!((a.rows(), a.data == b.data), (100, true));
        assert_ne!(a.data, Vectors::generate(100, 8, 4, 43).data);
        assert_eq!(recall(&[1, 2, 3], &[3, 2, 9], 3), 2.0 / 3.0);
        assert_eq!(recall(&[], &[], 10), 1.0);
    }
}
