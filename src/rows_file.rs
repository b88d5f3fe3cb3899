//! Memory-light mode (`index.memory_mode = "light"`): the rows files of a
//! shard's partitions, `shard-NN/rows/<collection>.<uid>.rows` under the
//! data directory, opened with `O_DIRECT` so a row read for a re-rank costs
//! no page cache (the point of the mode is memory the box does not have).
//!
//! A file is a cache: rows are written without fsync, the directory is
//! emptied at start-up (recovery rebuilds every partition from its log and
//! snapshot, rows in memory, and the indexer moves them out again once
//! the graph holds them) and a partition's file is removed with it.
//!
//! A batch of reads (the candidates a graph search re-ranks) goes to the
//! device at once through a small io_uring of the shard's own, and the
//! shard waits for all of them (`aionbd_shards::partition::cold` says why it
//! blocks); with no io_uring, or for single rows, `pread`.

use aionbd_shards::partition::{ColdFile, ColdFiles};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Reads in flight at once (entries of the shard's ring).
const RING_ENTRIES: u32 = 64;

/// The rows files of one shard.
pub struct RowsFiles {
    dir: PathBuf,
    /// Offsets and lengths of direct I/O are multiples of this (512, or
    /// 4096 where the device or file system needs it); 0: no `O_DIRECT`.
    align: usize,
    ring: Option<Rc<RefCell<io_uring::IoUring>>>,
    /// The I/O buffer every rows file of the shard uses (one at a time: a
    /// shard runs one synchronous step at once), so a shard holds one
    /// exact scan's run of rows, not one per partition.
    buf: Rc<RefCell<Aligned>>,
}

impl RowsFiles {
    /// Empty (or create) `dir` and find the alignment direct I/O needs there.
    pub fn new(dir: PathBuf) -> std::io::Result<RowsFiles> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let align = probe_alignment(&dir);
        if align == 0 {
            tracing::warn!("{}: no O_DIRECT on this file system; rows files go through the page cache", dir.display());
        }
        let ring = io_uring::IoUring::new(RING_ENTRIES)
            .map_err(|e| tracing::warn!("rows files: no io_uring ({e}); reads go one by one"))
            .ok()
            .map(|r| Rc::new(RefCell::new(r)));
        Ok(RowsFiles { dir, align, ring, buf: Default::default() })
    }
}

/// 512 if a 512-byte direct write at offset 512 works, else 4096 if that
/// does, else 0 (no direct I/O).
fn probe_alignment(dir: &Path) -> usize {
    let path = dir.join(".probe");
    let mut found = 0;
    for align in [512, 4096] {
        let Ok(f) = OpenOptions::new().read(true).write(true).create(true).custom_flags(libc::O_DIRECT).open(&path)
        else {
            break;
        };
        let buf = Aligned::zeroed(align);
        if f.write_all_at(&buf.bytes()[..align], align as u64).is_ok() {
            found = align;
            break;
        }
    }
    let _ = std::fs::remove_file(&path);
    found
}

impl ColdFiles for RowsFiles {
    fn open(&self, collection: &str, uid: u64, dim: usize) -> Option<Rc<dyn ColdFile>> {
        // Names hold only `A-Za-z0-9-_.` and a tenant's `:`.
        let path = self.dir.join(format!("{}.{uid}.rows", collection.replace(':', "@")));
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(true);
        if self.align > 0 {
            opts.custom_flags(libc::O_DIRECT);
        }
        match opts.open(&path) {
            Ok(file) => {
                let stride = (dim * 4).next_multiple_of(self.align.max(4));
                Some(Rc::new(RowsFile { file, path, dim, stride, ring: self.ring.clone(), buf: self.buf.clone() }))
            }
            Err(e) => {
                tracing::error!("{}: cannot create the rows file ({e}); its rows stay in memory", path.display());
                None
            }
        }
    }
}

/// One partition's rows file: row `r` at byte `r * stride`.
struct RowsFile {
    file: File,
    path: PathBuf,
    dim: usize,
    /// Bytes per row on disk: the row, padded to the direct-I/O alignment.
    stride: usize,
    ring: Option<Rc<RefCell<io_uring::IoUring>>>,
    /// The shard's I/O buffer (see [`RowsFiles`]).
    buf: Rc<RefCell<Aligned>>,
}

impl Drop for RowsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RowsFile {
    /// Floats of row `i` of `bytes` (rows at `stride`).
    fn row_of<'a>(&self, bytes: &'a [u8], i: usize) -> impl Iterator<Item = f32> + 'a {
        let row = &bytes[i * self.stride..i * self.stride + self.dim * 4];
        row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn read_ring(&self, ring: &mut io_uring::IoUring, rows: &[u32], buf: &mut [u8]) -> std::io::Result<()> {
        let fd = io_uring::types::Fd(self.file.as_raw_fd());
        for (chunk_at, chunk) in rows.chunks(RING_ENTRIES as usize).enumerate() {
            for (j, &r) in chunk.iter().enumerate() {
                let i = chunk_at * RING_ENTRIES as usize + j;
                let dst = buf[i * self.stride..(i + 1) * self.stride].as_mut_ptr();
                let read = io_uring::opcode::Read::new(fd, dst, self.stride as u32)
                    .offset(r as u64 * self.stride as u64)
                    .build()
                    .user_data(i as u64);
                // SAFETY: `dst` is `stride` bytes of `buf`, which outlives
                // the call: every entry pushed here completes before this
                // function returns (the loop below waits for all of them).
                unsafe { ring.submission().push(&read) }.map_err(|_| std::io::Error::other("ring full"))?;
            }
            submit_and_wait(ring, chunk.len())?;
            let mut done = 0;
            let mut failed = None;
            while done < chunk.len() {
                for cqe in ring.completion() {
                    done += 1;
                    let n = cqe.result();
                    if n < 0 {
                        failed = Some(std::io::Error::from_raw_os_error(-n));
                    } else if (n as usize) < self.dim * 4 {
                        failed = Some(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read"));
                    }
                }
                if done < chunk.len() {
                    submit_and_wait(ring, chunk.len() - done)?;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Submit what is queued and wait for `want` completions, again after a
/// signal (the watchdog's SIGURG interrupts a shard's waits: EINTR).
fn submit_and_wait(ring: &mut io_uring::IoUring, want: usize) -> std::io::Result<()> {
    loop {
        match ring.submit_and_wait(want) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

impl ColdFile for RowsFile {
    fn read(&self, rows: &[u32], out: &mut [f32]) -> std::io::Result<()> {
        let mut buf = self.buf.borrow_mut();
        buf.reserve(rows.len() * self.stride);
        let bytes = buf.bytes_mut(rows.len() * self.stride);
        match &self.ring {
            Some(ring) if rows.len() > 1 => self.read_ring(&mut ring.borrow_mut(), rows, bytes)?,
            _ => {
                for (i, &r) in rows.iter().enumerate() {
                    let dst = &mut bytes[i * self.stride..(i + 1) * self.stride];
                    self.file.read_exact_at(dst, r as u64 * self.stride as u64)?;
                }
            }
        }
        for (i, out) in out.chunks_exact_mut(self.dim.max(1)).enumerate() {
            out.iter_mut().zip(self.row_of(bytes, i)).for_each(|(o, v)| *o = v);
        }
        Ok(())
    }

    fn read_run(&self, first: u32, out: &mut [f32]) -> std::io::Result<()> {
        let n = out.len() / self.dim.max(1);
        let mut buf = self.buf.borrow_mut();
        buf.reserve(n * self.stride);
        let bytes = buf.bytes_mut(n * self.stride);
        self.file.read_exact_at(bytes, first as u64 * self.stride as u64)?;
        for (i, out) in out.chunks_exact_mut(self.dim.max(1)).enumerate() {
            out.iter_mut().zip(self.row_of(bytes, i)).for_each(|(o, v)| *o = v);
        }
        Ok(())
    }

    fn write_run(&self, first: u32, rows: &[f32]) -> std::io::Result<()> {
        let dim = self.dim.max(1);
        // In pieces no larger than an exact scan's reads, so the shard's
        // buffer (kept for its next use) does not grow to a long write:
        // a restart's replay writes 2,048 rows at once.
        for (k, piece) in rows.chunks(WRITE_ROWS * dim).enumerate() {
            let n = piece.len() / dim;
            let mut buf = self.buf.borrow_mut();
            buf.reserve(n * self.stride);
            let bytes = buf.bytes_mut(n * self.stride);
            for (i, row) in piece.chunks_exact(dim).enumerate() {
                let dst = &mut bytes[i * self.stride..(i + 1) * self.stride];
                for (d, v) in dst.chunks_exact_mut(4).zip(row) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            let at = (first as u64 + (k * WRITE_ROWS) as u64) * self.stride as u64;
            self.file.write_all_at(bytes, at).inspect_err(|e| {
                tracing::error!(
                    "{}: writing rows failed ({e}); this partition keeps its rows in memory",
                    self.path.display()
                )
            })?;
        }
        Ok(())
    }
}

/// Most rows one write sends to the file (an exact scan reads as many:
/// `SCAN_RUN` in `aionbd_shards::partition::cold`).
const WRITE_ROWS: usize = 512;

/// A zeroed byte buffer on a 4096-byte boundary (direct I/O's alignment).
struct Aligned {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

const BUF_ALIGN: usize = 4096;

impl Default for Aligned {
    fn default() -> Self {
        Aligned { ptr: std::ptr::NonNull::dangling(), len: 0 }
    }
}

impl Aligned {
    fn zeroed(len: usize) -> Aligned {
        let mut a = Aligned::default();
        a.reserve(len);
        a
    }

    /// Make room for at least `len` bytes (contents not kept).
    fn reserve(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        let len = len.next_multiple_of(BUF_ALIGN);
        *self = Aligned::default();
        let layout = std::alloc::Layout::from_size_align(len, BUF_ALIGN).expect("a valid layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(ptr) else { std::alloc::handle_alloc_error(layout) };
        *self = Aligned { ptr, len };
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` holds `len` initialised (zeroed) bytes, or is
        // dangling with `len` 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.len);
        // SAFETY: as in `bytes`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        if self.len > 0 {
            let layout = std::alloc::Layout::from_size_align(self.len, BUF_ALIGN).expect("a valid layout");
            // SAFETY: allocated in `reserve` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}
