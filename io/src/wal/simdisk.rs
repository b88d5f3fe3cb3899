//! A simulated disk for crash tests. It keeps what was *written* apart from
//! what is *durable*: a sync makes a file's written bytes durable; a crash
//! throws away unsynced writes sector by sector at random (each 512-byte
//! sector of a pending write survives or not), as a real disk with a
//! volatile cache may.

use std::collections::BTreeMap;

pub const SECTOR_BYTES: usize = 512;

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(usize, Vec<u8>)>,
    /// Created but the directory entry not yet synced.
    durable_entry: bool,
}

impl SimFile {
    fn current(&self) -> Vec<u8> {
        let mut b = self.durable.clone();
        for (at, data) in &self.pending {
            if b.len() < at + data.len() {
                b.resize(at + data.len(), 0);
            }
            b[*at..at + data.len()].copy_from_slice(data);
        }
        b
    }
}

/// Files by name. Deterministic given the seed passed to [`SimDisk::crash`].
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    files: BTreeMap<String, SimFile>,
}

/// A small deterministic generator for crash decisions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

impl SimDisk {
    /// Create a zero-filled file of `len` bytes (preallocation: durable).
    pub fn create(&mut self, name: &str, len: usize) {
        self.files
            .insert(name.to_owned(), SimFile { durable: vec![0; len], pending: Vec::new(), durable_entry: false });
    }

    pub fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) {
        let f = self.files.get_mut(name).expect("file exists");
        f.pending.push((offset as usize, data.to_vec()));
    }

    /// fdatasync of the file plus fsync of its directory.
    pub fn sync(&mut self, name: &str) {
        let f = self.files.get_mut(name).expect("file exists");
        f.durable = f.current();
        f.pending.clear();
        f.durable_entry = true;
    }

    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        self.files[name].current()
    }

    /// Lose power: each unsynced sector survives with probability 1/2, and
    /// files whose creation was never synced vanish.
    pub fn crash(&mut self, rng: &mut Rng) {
        self.files.retain(|_, f| f.durable_entry);
        for f in self.files.values_mut() {
            for (at, data) in std::mem::take(&mut f.pending) {
                for (i, sector) in data.chunks(SECTOR_BYTES).enumerate() {
                    if rng.below(2) == 0 {
                        let start = at + i * SECTOR_BYTES;
                        if f.durable.len() < start + sector.len() {
                            f.durable.resize(start + sector.len(), 0);
                        }
                        f.durable[start..start + sector.len()].copy_from_slice(sector);
                    }
                }
            }
        }
    }
}
