//! The data directory: recognised before anything is written to it, owned
//! by one process at a time (a lock file held for the life of the process),
//! and laid out for the shard and partition counts this start asks for.
//!
//! `LAYOUT` records the layout the data was written with. A start with other
//! counts re-places the data (`relayout`): every old shard's snapshot and
//! log records are routed, collection by collection and in their log order,
//! to the new home shard of their collection, and written as one snapshot
//! per new shard in a new *generation* directory `layout-N/`. Switching
//! `LAYOUT` to name generation N is the one atomic step; what a crash leaves
//! on either side of it is removed at the next start. docs/storage.md has
//! the directory and the steps.

use crate::fs::{sync_dir, write_atomically, FsError};
use aionbd_io::snapshot::{
    encode_end, encode_frame, snapshot_name, Manifest, ManifestError, SnapshotError, SnapshotHeader,
};
use aionbd_io::wal::{recover, Corruption, SegmentBytes};
use aionbd_shards::placement::Placement;
use aionbd_shards::record::{DecodeError, LogRecord};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The layout file's name in the data directory.
pub const LAYOUT: &str = "LAYOUT";
/// The lock file's name; it holds the owner's PID.
pub const LOCK: &str = "LOCK";
/// The only `LAYOUT` format this version reads and writes.
const FORMAT: u64 = 1;

/// An open data directory: locked, and laid out for this start.
pub struct DataDir {
    /// Where `shard-NN/` of the current layout live.
    pub shards_root: PathBuf,
    /// Held (locked) until the process ends.
    _lock: File,
}

/// What `LAYOUT` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shards: usize,
    pub partitions: usize,
    /// 0: shard directories at the top; N: under `layout-N/`.
    pub generation: u64,
}

impl Layout {
    fn encode(&self) -> String {
        let mut s = format!("format={FORMAT}\nshards={}\npartitions_per_collection={}\n", self.shards, self.partitions);
        if self.generation > 0 {
            s.push_str(&format!("generation={}\n", self.generation));
        }
        s
    }

    fn decode(text: &str) -> Result<Layout, LayoutError> {
        let (mut format, mut shards, mut partitions, mut generation) = (None, None, None, 0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let unreadable = || LayoutError::UnreadableLine(line.to_owned());
            let (k, v) = line.split_once('=').ok_or_else(unreadable)?;
            let n: u64 = v.trim().parse().map_err(|_| unreadable())?;
            match k.trim() {
                "format" => format = Some(n),
                "shards" => shards = Some(n as usize),
                "partitions_per_collection" => partitions = Some(n as usize),
                "generation" => generation = n,
                other => return Err(LayoutError::UnknownKey(other.to_owned())),
            }
        }
        match format {
            Some(FORMAT) => {}
            Some(f) if f > FORMAT => return Err(LayoutError::NewerFormat(f)),
            _ => return Err(LayoutError::NoFormat),
        }
        match (shards, partitions) {
            (Some(s), Some(p)) if s >= 1 && (1..=s).contains(&p) => Ok(Layout { shards: s, partitions: p, generation }),
            _ => Err(LayoutError::Counts),
        }
    }

    /// Where this layout's shard directories are.
    pub fn shards_root(&self, data_dir: &Path) -> PathBuf {
        if self.generation == 0 {
            data_dir.to_path_buf()
        } else {
            data_dir.join(format!("layout-{}", self.generation))
        }
    }
}

/// Why a `LAYOUT` file is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    UnreadableLine(String),
    /// A key this version does not know (written by a newer one?).
    UnknownKey(String),
    /// A format newer than [`FORMAT`].
    NewerFormat(u64),
    NoFormat,
    /// Shard or partition counts missing or out of range.
    Counts,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            LayoutError::UnreadableLine(line) => write!(f, "unreadable line {line:?}"),
            LayoutError::UnknownKey(key) => write!(f, "unknown key {key:?} (written by a newer version?)"),
            LayoutError::NewerFormat(n) => {
                write!(f, "format {n} was written by a newer version of aionbd (this one reads {FORMAT})")
            }
            LayoutError::NoFormat => f.write_str("no known format line"),
            LayoutError::Counts => f.write_str("shard or partition counts missing or out of range"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Why the data directory cannot be opened, locked or re-laid out.
#[derive(Debug)]
pub enum DataDirError {
    File(FsError),
    NotADirectory(PathBuf),
    /// `LAYOUT` is unreadable or newer than this version.
    Layout {
        path: PathBuf,
        source: LayoutError,
    },
    /// No `LAYOUT`, but files of something else (`names`: the first few, sorted).
    Foreign {
        dir: PathBuf,
        names: Vec<String>,
        more: usize,
    },
    ReadOnly(PathBuf),
    NotWritable {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Another live process holds the lock.
    InUse {
        dir: PathBuf,
        pid: Option<String>,
        lock: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    /// A log record whose collection cannot be read (`what`: where it came from).
    Record {
        what: String,
        source: DecodeError,
    },
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    SnapshotDamaged {
        path: PathBuf,
        source: SnapshotError,
    },
    /// The snapshot's header names another LSN or shard than its manifest.
    SnapshotMismatch(PathBuf),
    WalDamaged(Corruption),
    /// A step of a re-layout failed.
    Relayout(Box<DataDirError>),
}

impl From<FsError> for DataDirError {
    fn from(e: FsError) -> Self {
        DataDirError::File(e)
    }
}

impl std::fmt::Display for DataDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DataDirError::File(e) => write!(f, "{e}"),
            DataDirError::NotADirectory(dir) => write!(f, "data directory {} is not a directory", dir.display()),
            DataDirError::Layout { path, source } => write!(f, "{}: {source}; refusing to start", path.display()),
            DataDirError::Foreign { dir, names, more } => write!(
                f,
                "{} is not an aionbd data directory: it has no {LAYOUT} file but holds {}{}; point server.data_dir at \
                 an empty or new directory",
                dir.display(),
                names.join(", "),
                if *more > 0 { format!(" and {more} more") } else { String::new() }
            ),
            DataDirError::ReadOnly(dir) => write!(f, "data directory {} is on a read-only file system", dir.display()),
            DataDirError::NotWritable { dir, source } => {
                write!(f, "data directory {} is not writable by this user ({source})", dir.display())
            }
            DataDirError::InUse { dir, pid, lock } => write!(
                f,
                "data directory {} is in use by another aionbd process (PID {}; lock file {})",
                dir.display(),
                pid.as_deref().unwrap_or("unknown"),
                lock.display()
            ),
            DataDirError::Rename { from, to, source } => {
                write!(f, "rename {} to {}: {source}", from.display(), to.display())
            }
            DataDirError::Record { what, source } => write!(f, "{what}: {source}"),
            DataDirError::Manifest { path, source } => write!(f, "{}: {source}", path.display()),
            DataDirError::SnapshotDamaged { path, source } => {
                write!(f, "snapshot {} is damaged {source}", path.display())
            }
            DataDirError::SnapshotMismatch(path) => {
                write!(f, "snapshot {} does not match its manifest", path.display())
            }
            DataDirError::WalDamaged(c) => {
                write!(f, "{c}; start once with the old layout to repair the log (see --wal-truncate-corrupt)")
            }
            DataDirError::Relayout(e) => write!(f, "re-layout: {e}"),
        }
    }
}

impl std::error::Error for DataDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataDirError::File(e) => Some(e),
            DataDirError::Layout { source, .. } => Some(source),
            DataDirError::NotWritable { source, .. } | DataDirError::Rename { source, .. } => Some(source),
            DataDirError::Record { source, .. } => Some(source),
            DataDirError::Manifest { source, .. } => Some(source),
            DataDirError::SnapshotDamaged { source, .. } => Some(source),
            DataDirError::Relayout(e) => Some(e),
            DataDirError::NotADirectory(_)
            | DataDirError::Foreign { .. }
            | DataDirError::ReadOnly(_)
            | DataDirError::InUse { .. }
            | DataDirError::SnapshotMismatch(_)
            | DataDirError::WalDamaged(_) => None,
        }
    }
}

/// Directory entries allowed in a data directory that has no `LAYOUT` yet:
/// the lock file of an earlier start that stopped before writing it, a
/// file system's `lost+found`, and hidden files.
fn harmless(name: &str) -> bool {
    name == LOCK || name == "lost+found" || name.starts_with('.')
}

/// Open the data directory for a start with `shards` x `partitions`:
/// refuse one that is not ours, is read-only, is newer, or is in use by
/// another process (touching nothing); take the lock; clear leftovers of an
/// interrupted re-layout; and re-lay the data out if its counts differ.
pub fn open(dir: &Path, shards: usize, partitions: usize) -> Result<DataDir, DataDirError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(DataDirError::NotADirectory(dir.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(FsError::at("cannot create data directory", dir))?
        }
        Err(e) => return Err(FsError::new("data directory", dir, e).into()),
    }
    // Recognise the directory before writing anything into it.
    read_layout(dir)?;
    let lock = lock(dir)?;
    // Under the lock: what another process may have changed meanwhile.
    let have = read_layout(dir)?;
    let want = Layout { shards, partitions, generation: have.map_or(0, |h| h.generation) };
    remove_leftovers(dir, have.map_or(0, |h| h.generation))?;
    let layout = match have {
        None => {
            write_atomically(&dir.join(LAYOUT), want.encode().as_bytes())?;
            want
        }
        Some(h) if h.shards == shards && h.partitions == partitions => h,
        Some(h) => relayout(dir, h, shards, partitions)?,
    };
    Ok(DataDir { shards_root: layout.shards_root(dir), _lock: lock })
}

/// `LAYOUT`'s content, `None` for a new (empty) directory; an error for a
/// directory that is not a data directory or one this version cannot read.
pub fn read_layout(dir: &Path) -> Result<Option<Layout>, DataDirError> {
    let path = dir.join(LAYOUT);
    match std::fs::read_to_string(&path) {
        Ok(text) => Layout::decode(&text).map(Some).map_err(|source| DataDirError::Layout { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries = std::fs::read_dir(dir).map_err(FsError::at("cannot read data directory", dir))?;
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !harmless(n))
                .collect();
            if names.is_empty() {
                return Ok(None);
            }
            names.sort();
            let more = names.len().saturating_sub(3);
            names.truncate(3);
            Err(DataDirError::Foreign { dir: dir.to_owned(), names, more })
        }
        Err(e) => Err(FsError::new("cannot read", path, e).into()),
    }
}

/// Take the data directory's lock for the life of the process, or say who
/// holds it. A lock left by a process that died is no obstacle: the kernel
/// drops an flock with its holder.
pub fn lock(dir: &Path) -> Result<File, DataDirError> {
    let path = dir.join(LOCK);
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::EROFS) => DataDirError::ReadOnly(dir.to_owned()),
                Some(libc::EACCES) | Some(libc::EPERM) => DataDirError::NotWritable { dir: dir.to_owned(), source: e },
                _ => FsError::new("cannot create lock file", &path, e).into(),
            },
        )?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = Some(holder.trim()).filter(|p| !p.is_empty()).map(str::to_owned);
            return Err(DataDirError::InUse { dir: dir.to_owned(), pid, lock: path });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(FsError::new("cannot lock", path, e).into()),
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(FsError::at("cannot write lock file", &path))?;
    Ok(file)
}

/// What a directory holds besides the lock file, `lost+found` and hidden
/// files (sorted): empty for a new or empty directory.
pub fn occupants(dir: &Path) -> Result<Vec<String>, FsError> {
    let entries = std::fs::read_dir(dir).map_err(FsError::at("cannot read", dir))?;
    let mut names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !harmless(n)).collect();
    names.sort();
    Ok(names)
}

/// The PID in `LOCK` if a live process holds the lock (checked with a
/// shared lock attempt; nothing is written).
pub fn holder(dir: &Path) -> Option<String> {
    let path = dir.join(LOCK);
    let file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(std::fs::read_to_string(&path).unwrap_or_default().trim().to_owned()),
    }
}

/// Make a written generation the directory's data: rename `tmp` to its
/// final name, sync, then switch `LAYOUT` (the commit point).
pub fn commit_generation(dir: &Path, tmp: &Path, layout: Layout) -> Result<(), DataDirError> {
    let dest = layout.shards_root(dir);
    std::fs::rename(tmp, &dest).map_err(|source| DataDirError::Rename { from: tmp.to_owned(), to: dest, source })?;
    sync_dir(dir)?;
    Ok(write_atomically(&dir.join(LAYOUT), layout.encode().as_bytes())?)
}

/// Remove what an interrupted re-layout left: unfinished generations, and
/// every generation other than the current one (including the top-level
/// shard directories of generation 0 once the data moved on).
fn remove_leftovers(dir: &Path, generation: u64) -> Result<(), FsError> {
    let current = format!("layout-{generation}");
    let mut removed = false;
    for e in std::fs::read_dir(dir).map_err(FsError::at("cannot read", dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old_generation = name.starts_with("layout-") && name != current;
        let old_top_shard = generation > 0 && is_shard_dir_name(&name);
        if old_generation || old_top_shard {
            std::fs::remove_dir_all(e.path()).map_err(FsError::at("cannot remove", &e.path()))?;
            removed = true;
        }
    }
    // The fsync makes the removals durable; with none (every start but the
    // one after an interrupted re-layout) it had nothing to persist and cost
    // 0.4-0.7 ms of each start.
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

fn is_shard_dir_name(name: &str) -> bool {
    name.strip_prefix("shard-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A test's crash point in a re-layout (`debug_hooks`).
fn crash_point(step: &str) {
    crate::debug_hooks::relayout_crash_point(step);
}

/// What `for_each_record` calls per record: kind, body, and where it came
/// from (for messages).
type RecordSink<'a> = dyn FnMut(u8, &[u8], &dyn Fn() -> String) -> Result<(), DataDirError> + 'a;

/// One new shard's snapshot file being written.
struct NewShard {
    dir: PathBuf,
    out: BufWriter<File>,
    records: u64,
}

/// Writes the shard directories of a new generation (a re-layout, a
/// restore): log records routed by collection to their home shard under
/// `shards` x `partitions`, each shard's as one snapshot at LSN 0 with its
/// `MANIFEST` and an empty `wal/`. Records of one collection keep their
/// order. `finish` makes it all durable.
pub struct GenerationWriter {
    root: PathBuf,
    placement: Placement,
    outs: Vec<NewShard>,
    frame: Vec<u8>,
    pub records: u64,
    pub bytes: u64,
}

impl GenerationWriter {
    pub fn create(root: &Path, shards: usize, partitions: usize) -> Result<Self, FsError> {
        std::fs::create_dir_all(root).map_err(FsError::at("", root))?;
        let created_unix_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut outs = Vec::with_capacity(shards);
        for j in 0..shards {
            let sdir = root.join(format!("shard-{j:02}"));
            std::fs::create_dir_all(sdir.join("wal")).map_err(FsError::at("", &sdir))?;
            let path = sdir.join(snapshot_name(0));
            let file = File::create(&path).map_err(FsError::at("", &path))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            out.write_all(&SnapshotHeader { shard_id: j as u16, lsn: 0, created_unix_ms }.encode())
                .map_err(FsError::at("", &path))?;
            outs.push(NewShard { dir: sdir, out, records: 0 });
        }
        Ok(GenerationWriter {
            root: root.to_owned(),
            placement: Placement::new(shards, partitions),
            outs,
            frame: Vec::new(),
            records: 0,
            bytes: 0,
        })
    }

    /// Route one log record to its collection's home shard.
    pub fn append(&mut self, kind: u8, body: &[u8], what: &dyn Fn() -> String) -> Result<(), DataDirError> {
        let name =
            LogRecord::collection_name(kind, body).map_err(|source| DataDirError::Record { what: what(), source })?;
        let to = &mut self.outs[self.placement.home(name)];
        self.frame.clear();
        encode_frame(kind, body, &mut self.frame);
        to.out.write_all(&self.frame).map_err(FsError::at("", &to.dir))?;
        to.records += 1;
        self.records += 1;
        self.bytes += self.frame.len() as u64;
        Ok(())
    }

    /// End frames, fsyncs, manifests, directory syncs.
    pub fn finish(mut self) -> Result<(), FsError> {
        for (j, s) in self.outs.into_iter().enumerate() {
            let mut out = s.out;
            self.frame.clear();
            encode_end(s.records, 0, &mut self.frame);
            out.write_all(&self.frame).map_err(FsError::at("", &s.dir))?;
            let file = out.into_inner().map_err(|e| FsError::new("", &s.dir, e.into_error()))?;
            file.sync_all().map_err(FsError::at("", &s.dir))?;
            let manifest = Manifest { shard_id: j as u16, snapshot: snapshot_name(0), lsn: 0, wal_segment_seq: 0 };
            write_atomically(&s.dir.join(crate::snapshot::MANIFEST), manifest.encode().as_bytes())?;
            sync_dir(&s.dir.join("wal"))?;
            sync_dir(&s.dir)?;
        }
        sync_dir(&self.root)
    }
}

/// Re-place the data of layout `old` into `shards` x `partitions`, as the
/// next generation, and switch `LAYOUT` to it. Returns the new layout.
fn relayout(dir: &Path, old: Layout, shards: usize, partitions: usize) -> Result<Layout, DataDirError> {
    let t0 = std::time::Instant::now();
    let new = Layout { shards, partitions, generation: old.generation + 1 };
    tracing::info!(
        "{} was written with {} shard(s) x {} partition(s); re-placing its data for {shards} x {partitions} \
         (generation {})",
        dir.display(),
        old.shards,
        old.partitions,
        new.generation
    );
    let tmp = dir.join(format!("layout-{}.tmp", new.generation));
    let relayout_err = |e: DataDirError| DataDirError::Relayout(Box::new(e));
    let mut out = GenerationWriter::create(&tmp, shards, partitions).map_err(|e| relayout_err(e.into()))?;
    let old_root = old.shards_root(dir);
    for k in 0..old.shards {
        let mut route =
            |kind: u8, body: &[u8], what: &dyn Fn() -> String| out.append(kind, body, what).map_err(relayout_err);
        for_each_record(&old_root.join(format!("shard-{k:02}")), k, &mut route)?;
        if k == 0 {
            crash_point("copying");
        }
    }
    let moved = (out.records, out.bytes);
    out.finish().map_err(|e| relayout_err(e.into()))?;
    carry_saved_queries(&old_root, old.shards, &tmp, shards);
    sync_dir(&tmp)?;
    crash_point("written");
    let dest = new.shards_root(dir);
    std::fs::rename(&tmp, &dest).map_err(|e| relayout_err(FsError::new("rename", &tmp, e).into()))?;
    sync_dir(dir)?;
    crash_point("renamed");
    // The switch: from here on the data directory is the new layout.
    write_atomically(&dir.join(LAYOUT), new.encode().as_bytes())?;
    crash_point("switched");
    remove_leftovers(dir, new.generation)?;
    tracing::info!(
        "re-placed {} records ({:.1} MB) into {} in {:.2} s",
        moved.0,
        moved.1 as f64 / 1e6,
        dest.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(new)
}

/// The real queries `auto` calibrates on (`queries.bin`, advisory) follow
/// the data into the new layout. Every search reaches each partition of
/// its collection, so any old partition's reservoir samples the same
/// stream: the first entry found per collection incarnation (name and
/// uid) goes to every new shard, whose partitions take theirs at start-up
/// (and whose saver drops the rest). Never fails: a file that cannot be
/// read or written is logged, and calibration then starts on held-out
/// points, as it would without one.
fn carry_saved_queries(old_root: &Path, old_shards: usize, new_root: &Path, new_shards: usize) {
    use crate::queries_file;
    let mut seen = std::collections::HashSet::new();
    let mut carried = Vec::new();
    for k in 0..old_shards {
        match queries_file::read(&old_root.join(format!("shard-{k:02}"))) {
            Ok(entries) => {
                carried.extend(entries.into_iter().flatten().filter(|e| seen.insert((e.name.clone(), e.uid))))
            }
            Err(e) => tracing::warn!("{e}; not carried into the new layout"),
        }
    }
    if write_saved_queries(new_root, new_shards, &carried) {
        tracing::info!("real queries of {} collection(s) carried into the new layout for calibration", carried.len());
    }
}

/// Write `entries` as the `queries.bin` of each of the `shards` shard
/// directories of the generation at `root` (each shard's partitions take
/// their collections' entries at start-up, and its saver drops the rest).
/// Returns whether anything was written; a file that cannot be written is
/// logged (calibration then starts on held-out points).
pub fn write_saved_queries(root: &Path, shards: usize, entries: &[aionbd_io::queries::SavedQueries]) -> bool {
    if entries.is_empty() {
        return false;
    }
    let bytes = aionbd_io::queries::encode(entries);
    let mut written = false;
    for j in 0..shards {
        let file = crate::queries_file::path(&root.join(format!("shard-{j:02}")));
        match write_atomically(&file, &bytes) {
            Ok(()) => written = true,
            Err(e) => tracing::warn!("cannot write the calibration queries: {e}"),
        }
    }
    written
}

/// Every record of an old shard in log order: its snapshot's, then its
/// WAL's after the snapshot. Damage refuses, naming the file, as start-up
/// would (start with the old layout to repair it first).
fn for_each_record(shard_dir: &Path, shard: usize, f: &mut RecordSink) -> Result<(), DataDirError> {
    let mpath = shard_dir.join(crate::snapshot::MANIFEST);
    let mut first_lsn = 1;
    match std::fs::read_to_string(&mpath) {
        Ok(text) => {
            let m = Manifest::decode(&text).map_err(|source| DataDirError::Manifest { path: mpath.clone(), source })?;
            let spath = shard_dir.join(&m.snapshot);
            let file = File::open(&spath).map_err(FsError::at("snapshot", &spath))?;
            let bad = |source| DataDirError::SnapshotDamaged { path: spath.clone(), source };
            let mut reader = crate::snapshot::open_reader(file).map_err(bad)?;
            if reader.header.lsn != m.lsn || reader.header.shard_id as usize != shard {
                return Err(DataDirError::SnapshotMismatch(spath));
            }
            let mut n = 0u64;
            while let Some((kind, body)) = reader.next_record().map_err(bad)? {
                f(kind, body, &|| format!("snapshot {} record {n}", spath.display()))?;
                n += 1;
            }
            first_lsn = m.lsn + 1;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(FsError::new("cannot read", mpath, e).into()),
    }
    let wal_dir = shard_dir.join("wal");
    if !wal_dir.exists() {
        return Ok(());
    }
    let segments: Vec<SegmentBytes> =
        crate::wal::read_segments(&wal_dir).map_err(FsError::at("cannot read", &wal_dir))?;
    let rec = recover(segments, first_lsn).map_err(DataDirError::WalDamaged)?;
    for r in &rec.records {
        f(r.kind, &r.body, &|| format!("WAL record LSN {} of {}", r.lsn, wal_dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_files_round_trip_and_newer_or_foreign_ones_are_refused() {
        for l in
            [Layout { shards: 2, partitions: 2, generation: 0 }, Layout { shards: 3, partitions: 1, generation: 7 }]
        {
            assert_eq!(Layout::decode(&l.encode()), Ok(l));
        }
        // Generation 0 writes exactly what earlier versions wrote.
        assert_eq!(
            Layout { shards: 2, partitions: 2, generation: 0 }.encode(),
            "format=1\nshards=2\npartitions_per_collection=2\n"
        );
        let newer = Layout::decode("format=2\nshards=2\npartitions_per_collection=2\n").unwrap_err();
        assert_eq!(newer, LayoutError::NewerFormat(2));
        assert!(newer.to_string().contains("newer version"), "{newer}");
        assert_eq!(
            Layout::decode("format=1\nshards=2\npartitions_per_collection=2\ncolour=3\n"),
            Err(LayoutError::UnknownKey("colour".into()))
        );
        assert_eq!(
            Layout::decode("format=1\nshards=2\npartitions_per_collection=2\ncolour=blue\n"),
            Err(LayoutError::UnreadableLine("colour=blue".into()))
        );
        assert_eq!(Layout::decode("format=1\nshards=2\npartitions_per_collection=3\n"), Err(LayoutError::Counts));
        assert_eq!(Layout::decode("hello world"), Err(LayoutError::UnreadableLine("hello world".into())));
    }

    #[test]
    fn a_directory_with_other_files_is_refused_untouched() {
        let d = std::env::temp_dir().join(format!("aionbd-datadir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let err = open(&d, 1, 1).err().expect("refused");
        assert!(matches!(&err, DataDirError::Foreign { names, more: 0, .. } if names == &["notes.txt"]), "{err}");
        let shown = err.to_string();
        assert!(shown.contains("not an aionbd data directory") && shown.contains("notes.txt"), "{shown}");
        let names: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")], "nothing was written");
        // Empty (but for hidden files): taken, locked, and a second open refused.
        std::fs::remove_file(d.join("notes.txt")).unwrap();
        std::fs::write(d.join(".keep"), "").unwrap();
        let first = open(&d, 1, 1).expect("an empty directory is opened");
        let err = open(&d, 1, 1).err().expect("locked");
        let me = std::process::id().to_string();
        assert!(matches!(&err, DataDirError::InUse { pid: Some(pid), .. } if *pid == me), "{err}");
        assert!(err.to_string().contains("in use by another aionbd process") && err.to_string().contains(&me));
        drop(first);
        assert!(open(&d, 1, 1).is_ok(), "the lock goes with its holder");
        let _ = std::fs::remove_dir_all(&d);
    }
}
