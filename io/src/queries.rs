//! The saved calibration queries of a shard (`shard-NN/queries.bin`): each
//! partition's reservoir of real queries, kept across restarts so that the
//! indexes built at start-up calibrate on the queries users send, not on
//! held-out stored points only. Advisory: a missing or damaged file means
//! calibration starts on held-out points, as on a new server.
//!
//! Layout (little-endian): the magic `AIONQRS1`, `u32` entries, then per
//! entry: `u16` name length, the name (UTF-8), `u64` collection uid, `u8`
//! metrics queried (bit 0 l2, 1 dot, 2 cosine), `u32` dimension, `u32`
//! queries, then per query a `u8` metric (0 l2, 1 dot, 2 cosine) and its
//! values (`f32`); last, a CRC32C of everything before it.

/// The file's name in a shard directory.
pub const FILE_NAME: &str = "queries.bin";
const MAGIC: &[u8; 8] = b"AIONQRS1";
/// Bounds a damaged count cannot get past (a reservoir holds 256).
const MAX_QUERIES: usize = 4096;
const MAX_DIM: usize = 65_536;

/// One partition's reservoir, as saved.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedQueries {
    pub name: String,
    pub uid: u64,
    /// Metrics the partition was queried with (l2, dot, cosine).
    pub metrics: [bool; 3],
    /// Each query's metric (0 l2, 1 dot, 2 cosine) and values.
    pub queries: Vec<(u8, Vec<f32>)>,
}

/// The file's bytes. Queries whose length differs from the entry's first
/// are left out (a partition's queries all have its dimension), and so are
/// entries of more than 65,536 dimensions (a decoder refuses those counts).
pub fn encode(entries: &[SavedQueries]) -> Vec<u8> {
    let entries: Vec<&SavedQueries> =
        entries.iter().filter(|e| e.queries.first().is_none_or(|q| q.1.len() <= MAX_DIM)).collect();
    let mut out = Vec::with_capacity(64 + entries.iter().map(|e| e.queries.len() * 1540).sum::<usize>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let name = &e.name.as_bytes()[..e.name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&e.uid.to_le_bytes());
        let bits = e.metrics.iter().enumerate().fold(0u8, |b, (i, &on)| b | ((on as u8) << i));
        out.push(bits);
        let dim = e.queries.first().map_or(0, |q| q.1.len());
        let kept: Vec<_> = e.queries.iter().filter(|q| q.1.len() == dim).take(MAX_QUERIES).collect();
        out.extend_from_slice(&(dim as u32).to_le_bytes());
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        for (metric, values) in kept {
            out.push(*metric);
            values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a saved file was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueriesFileError(pub String);

impl std::fmt::Display for QueriesFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueriesFileError {}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QueriesFileError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| QueriesFileError(format!("truncated at byte {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, QueriesFileError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, QueriesFileError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, QueriesFileError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, QueriesFileError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// The entries of a saved file; an error for any damage (a wrong magic or
/// checksum, a count out of bounds, trailing bytes).
pub fn decode(bytes: &[u8]) -> Result<Vec<SavedQueries>, QueriesFileError> {
    let bad = |m: &str| QueriesFileError(m.to_string());
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a saved-queries file (magic)"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(bad("checksum mismatch"));
    }
    let mut r = Reader { bytes: body, at: MAGIC.len() };
    let n = r.u32()? as usize;
    let mut out = Vec::new();
    for _ in 0..n {
        let len = r.u16()? as usize;
        let name = std::str::from_utf8(r.take(len)?).map_err(|_| bad("a name is not UTF-8"))?.to_string();
        let uid = r.u64()?;
        let bits = r.u8()?;
        let metrics = std::array::from_fn(|i| bits & (1 << i) != 0);
        let dim = r.u32()? as usize;
        let count = r.u32()? as usize;
        if dim > MAX_DIM || count > MAX_QUERIES {
            return Err(bad("a count is out of bounds"));
        }
        let mut queries = Vec::with_capacity(count);
        for _ in 0..count {
            let metric = r.u8()?;
            if metric > 2 {
                return Err(bad("unknown metric"));
            }
            let values =
                r.take(dim * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
            queries.push((metric, values));
        }
        out.push(SavedQueries { name, uid, metrics, queries });
    }
    if r.at != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<SavedQueries> {
        vec![
            SavedQueries {
                name: "docs".into(),
                uid: 7,
                metrics: [false, false, true],
                queries: vec![(2, vec![0.5, -1.0, 3.25]), (2, vec![1.0, 2.0, 3.0])],
            },
            SavedQueries { name: "t/ü".into(), uid: u64::MAX, metrics: [true, true, false], queries: vec![] },
        ]
    }

    #[test]
    fn entries_round_trip() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn queries_of_another_length_and_too_wide_entries_are_left_out() {
        let mut e = sample();
        e[0].queries.push((0, vec![1.0]));
        e.push(SavedQueries {
            name: "wide".into(),
            uid: 1,
            metrics: [true, false, false],
            queries: vec![(0, vec![0.0; MAX_DIM + 1])],
        });
        assert_eq!(decode(&encode(&e)).unwrap(), sample());
    }

    proptest! {
        /// Any flipped bit, and any truncation, is refused: never a panic,
        /// never other queries.
        #[test]
        fn damage_is_refused(at in 0usize..10_000, bit in 0u8..8, cut in 0usize..10_000) {
            let good = encode(&sample());
            let mut flipped = good.clone();
            let at = at % flipped.len();
            flipped[at] ^= 1 << bit;
            prop_assert!(decode(&flipped).is_err());
            let cut = cut % good.len();
            prop_assert!(decode(&good[..cut]).is_err());
        }
    }
}
