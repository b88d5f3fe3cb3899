//! A simulated disk for crash tests, and the [`SegmentIo`] the real WAL
//! ([`super::log::Wal`]) runs on in them.
//!
//! [`SimDisk`] keeps what was *written* apart from what is *durable*, for
//! file contents and for directory entries alike: an fdatasync makes a
//! file's written bytes durable, a directory fsync makes the creations,
//! renames and removals in that directory durable. A crash
//! ([`SimDisk::crash`]) puts back the durable names and throws unsynced
//! writes away sector by sector at random (each 512-byte sector of a
//! pending write survives or not), as a disk with a volatile cache may.
//!
//! [`SimIo`] performs the WAL's calls on a shared `SimDisk` with a random
//! latency in virtual time ([`SimClock`]), can lose power at a chosen call
//! (that call takes effect or not, and nothing after it runs), and can
//! inject faults: an fdatasync that fails (the data it should have synced
//! is torn at once: a later successful fdatasync does not bring it back,
//! as with Linux's page cache after a failed writeback), and a full disk
//! when a file is created or preallocated. Deterministic given its seeds.

use super::disk::SegmentIo;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

pub const SECTOR_BYTES: usize = 512;

/// A file's contents, apart from its names.
#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(usize, Vec<u8>)>,
}

impl Inode {
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

    /// Each pending sector reaches the durable bytes with probability 1/2;
    /// the rest is lost.
    fn tear(&mut self, rng: &mut Rng) {
        for (at, data) in std::mem::take(&mut self.pending) {
            for (i, sector) in data.chunks(SECTOR_BYTES).enumerate() {
                if rng.below(2) == 0 {
                    let start = at + i * SECTOR_BYTES;
                    if self.durable.len() < start + sector.len() {
                        self.durable.resize(start + sector.len(), 0);
                    }
                    self.durable[start..start + sector.len()].copy_from_slice(sector);
                }
            }
        }
    }
}

/// Files by path. A file handle is its inode number.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    inodes: Vec<Inode>,
    /// Names as the running system sees them ...
    names: BTreeMap<PathBuf, usize>,
    /// ... and as the last fsync of each directory left them.
    durable_names: BTreeMap<PathBuf, usize>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

impl SimDisk {
    /// Create an empty file at `path` (a new inode, replacing the name).
    pub fn create(&mut self, path: &Path) -> usize {
        self.inodes.push(Inode::default());
        let id = self.inodes.len() - 1;
        self.names.insert(path.to_path_buf(), id);
        id
    }

    /// Zero-filled space up to `bytes` (the allocation counts as durable).
    pub fn preallocate(&mut self, id: usize, bytes: usize) {
        let f = &mut self.inodes[id];
        if f.durable.len() < bytes {
            f.durable.resize(bytes, 0);
        }
    }

    pub fn open(&self, path: &Path) -> io::Result<usize> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    pub fn write_at(&mut self, id: usize, offset: u64, data: &[u8]) {
        self.inodes[id].pending.push((offset as usize, data.to_vec()));
    }

    /// fdatasync: what was written to the file is durable.
    pub fn sync(&mut self, id: usize) {
        let f = &mut self.inodes[id];
        f.durable = f.current();
        f.pending.clear();
    }

    /// A failed fdatasync: the pending writes are torn now, for good.
    pub fn fail_sync(&mut self, id: usize, rng: &mut Rng) {
        self.inodes[id].tear(rng);
    }

    /// A small file created, written and fsynced (its name not yet durable).
    pub fn write_file(&mut self, path: &Path, bytes: &[u8]) {
        let id = self.create(path);
        self.inodes[id].durable = bytes.to_vec();
    }

    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let id = self.names.remove(from).ok_or_else(|| not_found(from))?;
        self.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.names.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    /// fsync of `dir`: its entries as they are now become durable.
    pub fn sync_dir(&mut self, dir: &Path) {
        self.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, id) in &self.names {
            if p.parent() == Some(dir) {
                self.durable_names.insert(p.clone(), *id);
            }
        }
    }

    /// Paths in `dir`, sorted.
    pub fn list(&self, dir: &Path) -> Vec<PathBuf> {
        self.names.keys().filter(|p| p.parent() == Some(dir)).cloned().collect()
    }

    /// What a read of `path` returns now.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        self.names.get(path).map(|&id| self.inodes[id].current())
    }

    /// Lose power: the durable names come back, and each unsynced sector
    /// survives with probability 1/2.
    pub fn crash(&mut self, rng: &mut Rng) {
        self.names = self.durable_names.clone();
        for f in &mut self.inodes {
            f.tear(rng);
        }
    }
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

/// Virtual time: sleeps are timers the test's executor fires, in deadline
/// order, whenever no task can run ([`SimClock::advance`]).
#[derive(Default)]
pub struct SimClock {
    now_ns: Cell<u64>,
    next_id: Cell<u64>,
    timers: RefCell<BTreeMap<(u64, u64), Option<Waker>>>,
}

impl SimClock {
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns.get())
    }

    pub fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Sleep { clock: self, deadline: self.now_ns.get() + duration.as_nanos() as u64, id: None }
    }

    /// Move time to the earliest timer and wake every timer then due;
    /// `false` if no timer is set.
    pub fn advance(&self) -> bool {
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let Some((&(deadline, _), _)) = timers.first_key_value() else { return false };
            self.now_ns.set(self.now_ns.get().max(deadline));
            let later = timers.split_off(&(self.now_ns.get() + 1, 0));
            std::mem::replace(&mut *timers, later).into_values().flatten().collect()
        };
        due.into_iter().for_each(Waker::wake);
        true
    }
}

pub struct Sleep<'a> {
    clock: &'a SimClock,
    deadline: u64,
    id: Option<u64>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.now_ns.get() >= self.deadline {
            return Poll::Ready(());
        }
        let clock = self.clock;
        let id = *self.id.get_or_insert_with(|| {
            let id = clock.next_id.get();
            clock.next_id.set(id + 1);
            id
        });
        clock.timers.borrow_mut().insert((self.deadline, id), Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.clock.timers.borrow_mut().remove(&(self.deadline, id));
        }
    }
}

/// Faults a [`SimIo`] injects.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimFaults {
    /// The call at which power is lost (1: the first), if any.
    pub crash_at: Option<u64>,
    /// Chance in 1000 that an fdatasync fails (EIO).
    pub sync_error_per_mille: u64,
    /// Chance in 1000 that creating or preallocating a file finds the disk full.
    pub disk_full_per_mille: u64,
    /// Longest latency of one call, in virtual microseconds (half of the
    /// calls complete at once)...
    pub latency_us_max: u64,
    /// ...and the least, for every call (0: none).
    pub latency_us_min: u64,
}

struct SimState {
    faults: SimFaults,
    rng: RefCell<Rng>,
    calls: Cell<u64>,
    crashed_in: Cell<Option<&'static str>>,
}

/// The WAL's disk in tests: a shared [`SimDisk`], virtual time, faults.
#[derive(Clone)]
pub struct SimIo {
    pub disk: Rc<RefCell<SimDisk>>,
    pub clock: Rc<SimClock>,
    state: Rc<SimState>,
}

impl SimIo {
    pub fn new(disk: Rc<RefCell<SimDisk>>, clock: Rc<SimClock>, faults: SimFaults, seed: u64) -> SimIo {
        let state =
            SimState { faults, rng: RefCell::new(Rng::new(seed)), calls: Cell::new(0), crashed_in: Cell::new(None) };
        SimIo { disk, clock, state: Rc::new(state) }
    }

    /// The call during which power was lost, if it was.
    pub fn crashed_in(&self) -> Option<&'static str> {
        self.state.crashed_in.get()
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.get()
    }

    fn chance(&self, per_mille: u64) -> bool {
        per_mille > 0 && self.state.rng.borrow_mut().below(1000) < per_mille
    }

    /// One call: a random latency, then `apply` on the disk, unless power
    /// is lost at this call (it then takes effect or not, at random, and
    /// never returns) or was lost before.
    async fn call<T>(
        &self,
        name: &'static str,
        apply: impl FnOnce(&mut SimDisk, &mut Rng) -> io::Result<T>,
    ) -> io::Result<T> {
        let latency = {
            let mut rng = self.state.rng.borrow_mut();
            let f = &self.state.faults;
            if rng.below(2) == 0 {
                f.latency_us_min
            } else {
                rng.below(f.latency_us_max + 1).max(f.latency_us_min)
            }
        };
        self.clock.sleep(Duration::from_micros(latency)).await;
        if self.state.crashed_in.get().is_some() {
            return std::future::pending().await;
        }
        let n = self.state.calls.get() + 1;
        self.state.calls.set(n);
        if self.state.faults.crash_at == Some(n) {
            self.state.crashed_in.set(Some(name));
            {
                let mut rng = self.state.rng.borrow_mut();
                if rng.below(2) == 0 {
                    let _ = apply(&mut self.disk.borrow_mut(), &mut rng);
                }
            }
            return std::future::pending().await;
        }
        apply(&mut self.disk.borrow_mut(), &mut self.state.rng.borrow_mut())
    }
}

fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(28) // ENOSPC
}

impl SegmentIo for SimIo {
    type File = usize;

    fn create(&self, path: &Path) -> impl Future<Output = io::Result<usize>> {
        let full = self.chance(self.state.faults.disk_full_per_mille);
        self.call("create", move |d, _| if full { Err(disk_full()) } else { Ok(d.create(path)) })
    }

    fn preallocate(&self, file: &usize, bytes: u64) -> impl Future<Output = io::Result<()>> {
        let (full, id) = (self.chance(self.state.faults.disk_full_per_mille), *file);
        self.call("preallocate", move |d, _| {
            if full {
                return Err(disk_full());
            }
            d.preallocate(id, bytes as usize);
            Ok(())
        })
    }

    fn open(&self, path: &Path) -> impl Future<Output = io::Result<usize>> {
        self.call("open", move |d, _| d.open(path))
    }

    fn write_at(&self, file: &usize, offset: u64, bytes: &[u8]) -> impl Future<Output = io::Result<usize>> {
        let id = *file;
        self.call("write", move |d, _| {
            d.write_at(id, offset, bytes);
            Ok(bytes.len())
        })
    }

    fn fdatasync(&self, file: &usize) -> impl Future<Output = io::Result<()>> {
        let (fail, id) = (self.chance(self.state.faults.sync_error_per_mille), *file);
        self.call("fdatasync", move |d, rng| {
            if fail {
                d.fail_sync(id, rng);
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
            d.sync(id);
            Ok(())
        })
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> impl Future<Output = io::Result<()>> {
        self.call("write_file", move |d, _| {
            d.write_file(path, bytes);
            Ok(())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = io::Result<()>> {
        self.call("rename", move |d, _| d.rename(from, to))
    }

    fn remove(&self, path: &Path) -> impl Future<Output = io::Result<()>> {
        self.call("remove", move |d, _| d.remove(path))
    }

    fn sync_dir(&self, dir: &Path) -> impl Future<Output = io::Result<()>> {
        self.call("sync_dir", move |d, _| {
            d.sync_dir(dir);
            Ok(())
        })
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        self.clock.sleep(duration)
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }
}
