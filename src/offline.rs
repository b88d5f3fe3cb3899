//! Offline tools on files, with no server running: `aionbd restore` (a
//! backup file -> a data directory) and `aionbd check` (verify a data
//! directory's snapshots and logs, or a backup file). docs/backup.md.

use crate::backup::Manifest;
use crate::datadir::{self, DataDirError, GenerationWriter, Layout};
use crate::fs::FsError;
use aionbd_io::backup::{BackupError, BackupReader, Item};
use aionbd_io::queries::SavedQueries;
use aionbd_io::snapshot::SnapshotReader;
use aionbd_shards::record::{DecodeError, LogRecord};
use std::path::{Path, PathBuf};

/// Why a restore or a check could not be done.
#[derive(Debug)]
pub enum OfflineError {
    File(FsError),
    /// The backup's header cannot be read.
    NotABackup {
        path: PathBuf,
        source: BackupError,
    },
    /// A frame of the backup is damaged.
    Damaged {
        path: PathBuf,
        source: BackupError,
    },
    /// The backup's frames are intact but do not hold what a backup holds.
    Invalid {
        path: PathBuf,
        offset: u64,
        problem: BackupProblem,
    },
    DataDir(DataDirError),
    NotADirectory(PathBuf),
    /// Restore writes only into a new or empty directory (or `--force`).
    NotEmpty {
        dir: PathBuf,
        holds: Vec<String>,
    },
    /// `check` on a directory without `LAYOUT`.
    NoLayout(PathBuf),
}

/// What is wrong with the content of a backup whose checksums match.
#[derive(Debug)]
pub enum BackupProblem {
    Undecodable(DecodeError),
    DuplicateCollection(String),
    /// A record where it cannot be (its kind).
    UnexpectedRecord(u8),
    /// A collection's end frame disagrees with what came before it.
    EndMismatch {
        name: String,
        points: u64,
        end_name: String,
        end_points: u64,
    },
    EndWithoutCollection,
    /// Saved queries outside the collection they name.
    QueriesElsewhere(String),
    NotClosed(String),
    UnreadableManifest(serde_json::Error),
    /// The manifest does not list the collections the file holds.
    ManifestMismatch,
}

impl From<FsError> for OfflineError {
    fn from(e: FsError) -> Self {
        OfflineError::File(e)
    }
}

impl From<DataDirError> for OfflineError {
    fn from(e: DataDirError) -> Self {
        OfflineError::DataDir(e)
    }
}

impl std::fmt::Display for OfflineError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            OfflineError::File(e) => write!(f, "{e}"),
            OfflineError::NotABackup { path, source } => {
                write!(f, "{} is not a usable backup: {source}", path.display())
            }
            OfflineError::Damaged { path, source } => write!(f, "{} is damaged {source}", path.display()),
            OfflineError::Invalid { path, offset, problem } => {
                write!(f, "{} is damaged at offset {offset}: {problem}", path.display())
            }
            OfflineError::DataDir(e) => write!(f, "{e}"),
            OfflineError::NotADirectory(dir) => write!(f, "{} is not a directory", dir.display()),
            OfflineError::NotEmpty { dir, holds } => write!(
                f,
                "{} is not empty (it holds {}); restore writes only into a new or empty directory: pass --force to \
                 replace what it holds",
                dir.display(),
                holds.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
            OfflineError::NoLayout(dir) => {
                write!(f, "{} has no LAYOUT: no server has written data there yet", dir.display())
            }
        }
    }
}

impl std::error::Error for OfflineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OfflineError::File(e) => Some(e),
            OfflineError::NotABackup { source, .. } | OfflineError::Damaged { source, .. } => Some(source),
            OfflineError::DataDir(e) => Some(e),
            OfflineError::Invalid { .. }
            | OfflineError::NotADirectory(_)
            | OfflineError::NotEmpty { .. }
            | OfflineError::NoLayout(_) => None,
        }
    }
}

impl std::fmt::Display for BackupProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            BackupProblem::Undecodable(e) => write!(f, "record does not decode: {e}"),
            BackupProblem::DuplicateCollection(name) => write!(f, "collection '{name}' appears twice"),
            BackupProblem::UnexpectedRecord(kind) => write!(f, "unexpected record here: kind {kind}"),
            BackupProblem::EndMismatch { name, points, end_name, end_points } => write!(
                f,
                "collection '{name}' holds {points} points but its end frame says '{end_name}' with {end_points}"
            ),
            BackupProblem::EndWithoutCollection => f.write_str("a collection end without its collection"),
            BackupProblem::QueriesElsewhere(name) => {
                write!(f, "saved queries of collection '{name}' outside its records")
            }
            BackupProblem::NotClosed(name) => write!(f, "collection '{name}' is not closed"),
            BackupProblem::UnreadableManifest(e) => write!(f, "unreadable manifest: {e}"),
            BackupProblem::ManifestMismatch => f.write_str("the manifest does not list the collections the file holds"),
        }
    }
}

/// What a verified backup holds.
pub struct BackupSummary {
    pub manifest: Manifest,
    pub bytes: u64,
    pub records: u64,
}

fn open_backup(path: &Path) -> Result<BackupReader<std::io::BufReader<std::fs::File>>, OfflineError> {
    let file = std::fs::File::open(path).map_err(FsError::at("cannot open", path))?;
    BackupReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|source| OfflineError::NotABackup { path: path.to_owned(), source })
}

/// What [`read_backup`] hands on from a good file, in file order.
pub enum BackupFrame<'a> {
    /// A log record: kind and body.
    Record(u8, &'a [u8]),
    /// The real queries of the collection whose records came last.
    Queries(SavedQueries),
}

/// What [`read_backup`] calls per frame. Its error ends the read as it is.
pub type FrameFn<'a> = dyn FnMut(BackupFrame) -> Result<(), OfflineError> + 'a;

/// Read a whole backup and check it: every frame's checksum, the whole-file
/// checksum, that every record decodes, belongs to the collection being
/// read and that each collection's point count matches its end frame and
/// the manifest. `each` sees every record and saved-queries entry of a good
/// file; the first problem ends the read with the file and the offset of
/// its frame.
pub fn read_backup(path: &Path, each: &mut FrameFn) -> Result<BackupSummary, OfflineError> {
    let mut r = open_backup(path)?;
    let mut current: Option<(String, u64)> = None;
    let mut done: Vec<(String, u64)> = Vec::new();
    let mut records = 0u64;
    loop {
        let at = r.offset();
        let bad = |problem| OfflineError::Invalid { path: path.to_owned(), offset: at, problem };
        let item = r.next_item().map_err(|source| OfflineError::Damaged { path: path.to_owned(), source })?;
        match item {
            Some(Item::Record(k, body)) => {
                let rec = LogRecord::decode(k, body).map_err(|e| bad(BackupProblem::Undecodable(e)))?;
                match (rec, &mut current) {
                    (LogRecord::CreateCollection { spec, .. }, None) => {
                        if done.iter().any(|(n, _)| n == &spec.name) {
                            return Err(bad(BackupProblem::DuplicateCollection(spec.name)));
                        }
                        current = Some((spec.name, 0));
                    }
                    (LogRecord::Upsert { name, points }, Some((open, n))) if &name == open => *n += points.len() as u64,
                    (other, _) => return Err(bad(BackupProblem::UnexpectedRecord(other.kind()))),
                }
                each(BackupFrame::Record(k, body))?;
                records += 1;
            }
            Some(Item::Queries(q)) => match &current {
                Some((open, _)) if *open == q.name => each(BackupFrame::Queries(q))?,
                _ => return Err(bad(BackupProblem::QueriesElsewhere(q.name))),
            },
            Some(Item::CollectionEnd(end)) => match current.take() {
                Some((name, n)) if name == end.name && n == end.points => done.push((name, n)),
                Some((name, points)) => {
                    return Err(bad(BackupProblem::EndMismatch {
                        name,
                        points,
                        end_name: end.name,
                        end_points: end.points,
                    }))
                }
                None => return Err(bad(BackupProblem::EndWithoutCollection)),
            },
            Some(Item::End(text)) => {
                if let Some((name, _)) = current {
                    return Err(bad(BackupProblem::NotClosed(name)));
                }
                let manifest: Manifest =
                    serde_json::from_str(&text).map_err(|e| bad(BackupProblem::UnreadableManifest(e)))?;
                let listed: Vec<(String, u64)> =
                    manifest.collections.iter().map(|c| (c.name.clone(), c.points)).collect();
                if listed != done {
                    return Err(bad(BackupProblem::ManifestMismatch));
                }
                return Ok(BackupSummary { manifest, bytes: r.offset(), records });
            }
            None => unreachable!("the end item comes before None"),
        }
    }
}

pub struct RestoreOptions<'a> {
    pub from: &'a Path,
    pub data_dir: &'a Path,
    pub shards: usize,
    pub partitions: usize,
    pub force: bool,
}

/// Rebuild a data directory from a backup. The backup is verified whole
/// before anything is written; the directory must be new or empty (or
/// `force`), and is locked as a server would lock it. The data is written
/// as generation 1 (`layout-1/`) and `LAYOUT` is written last, so an
/// interrupted restore leaves a directory a server refuses (restore again
/// with `--force`). A server started with other counts re-lays it out.
pub fn restore(o: &RestoreOptions) -> Result<String, OfflineError> {
    let t0 = std::time::Instant::now();
    let summary = read_backup(o.from, &mut |_| Ok(()))?;
    let dir = o.data_dir;
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(OfflineError::NotADirectory(dir.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(FsError::at("cannot create", dir))?
        }
        Err(e) => return Err(FsError::new("", dir, e).into()),
    }
    let occupied = datadir::occupants(dir)?;
    if !occupied.is_empty() && !o.force {
        return Err(OfflineError::NotEmpty { dir: dir.to_owned(), holds: occupied });
    }
    let _lock = datadir::lock(dir)?;
    for name in &occupied {
        let p = dir.join(name);
        let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        removed.map_err(FsError::at("cannot remove", &p))?;
    }
    let layout = Layout { shards: o.shards, partitions: o.partitions, generation: 1 };
    let tmp = dir.join("layout-1.tmp");
    let mut out = GenerationWriter::create(&tmp, o.shards, o.partitions)?;
    // A record that cannot be written is the data directory's problem,
    // not the (verified) backup's: its error goes out as it is.
    let mut queries = Vec::new();
    read_backup(o.from, &mut |frame| match frame {
        BackupFrame::Record(k, body) => Ok(out.append(k, body, &|| "backup record".to_string())?),
        BackupFrame::Queries(q) => {
            queries.push(q);
            Ok(())
        }
    })?;
    out.finish()?;
    // Calibration data, advisory: the indexes the server builds at start-up
    // then rest on the queries users sent before the backup.
    datadir::write_saved_queries(&tmp, o.shards, &queries);
    datadir::commit_generation(dir, &tmp, layout)?;
    Ok(format!(
        "restored {} collection(s), {} point(s) from {} ({:.1} MB, taken {}) into {} ({} shard(s) x {} partition(s)) \
         in {:.2} s",
        summary.manifest.collections.len(),
        summary.manifest.points,
        o.from.display(),
        summary.bytes as f64 / 1e6,
        httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(summary.manifest.created_unix_ms)
        ),
        dir.display(),
        o.shards,
        o.partitions,
        t0.elapsed().as_secs_f64()
    ))
}

/// A check's findings: lines to print, and whether a restart would refuse.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub damaged: bool,
}

impl Report {
    fn ok(&mut self, line: String) {
        self.lines.push(format!("ok       {line}"));
    }
    fn repair(&mut self, line: String) {
        self.lines.push(format!("repair   {line}"));
    }
    fn damage(&mut self, line: String) {
        self.damaged = true;
        self.lines.push(format!("DAMAGED  {line}"));
    }
}

/// The saved calibration queries (advisory: never damage, see
/// `queries_file`).
fn check_saved_queries(sdir: &Path, r: &mut Report) {
    match crate::queries_file::read(sdir) {
        Ok(None) => {}
        Ok(Some(saved)) => r.ok(format!(
            "{}: real queries of {} partition(s), for calibration; checksum matches",
            crate::queries_file::path(sdir).display(),
            saved.len()
        )),
        Err(e) => r
            .lines
            .push(format!("note     {e}; advisory: a restart ignores it (calibration starts on held-out points)")),
    }
}

/// Check a backup file.
pub fn check_backup(path: &Path) -> Report {
    let mut r = Report::default();
    let mut with_queries = 0;
    let counted = read_backup(path, &mut |frame| {
        with_queries += matches!(frame, BackupFrame::Queries(_)) as usize;
        Ok(())
    });
    match counted {
        Ok(s) => r.ok(format!(
            "{}: {} collection(s), {} point(s), {} records, {} bytes, real queries of {with_queries} collection(s) \
             for calibration; every checksum matches",
            path.display(),
            s.manifest.collections.len(),
            s.manifest.points,
            s.records,
            s.bytes
        )),
        Err(e) => r.damage(format!("{e}; restore refuses this file")),
    }
    r
}

/// Check every snapshot and WAL checksum of a data directory, and say what
/// a restart would do with what is found.
pub fn check_data_dir(dir: &Path) -> Result<Report, OfflineError> {
    let mut r = Report::default();
    let Some(layout) = datadir::read_layout(dir)? else {
        return Err(OfflineError::NoLayout(dir.to_owned()));
    };
    if let Some(pid) = datadir::holder(dir) {
        r.lines.push(format!(
            "note     a server (PID {pid}) holds {}: the newest segment may be mid-write while it is read",
            dir.display()
        ));
    }
    let root = layout.shards_root(dir);
    for k in 0..layout.shards {
        check_shard(&root.join(format!("shard-{k:02}")), k, &mut r);
    }
    let verdict = if r.damaged {
        "a restart refuses to start until the damage is dealt with (see above)"
    } else {
        "a restart recovers every record"
    };
    r.lines.push(format!("{}: {} shard(s) checked; {verdict}", dir.display(), layout.shards));
    Ok(r)
}

fn check_shard(sdir: &Path, shard: usize, r: &mut Report) {
    check_saved_queries(sdir, r);
    let mpath = sdir.join(crate::snapshot::MANIFEST);
    let mut first_lsn = 1;
    let mut manifest_seq = None;
    match std::fs::read_to_string(&mpath) {
        Ok(text) => match aionbd_io::snapshot::Manifest::decode(&text) {
            Ok(m) => {
                first_lsn = m.lsn + 1;
                manifest_seq = Some((m.wal_segment_seq, m.lsn));
                check_snapshot(&sdir.join(&m.snapshot), shard, m.lsn, r);
            }
            Err(e) => r.damage(format!("{}: {e}; a restart refuses to start", mpath.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.ok(format!("{}: no snapshot yet (the log starts at LSN 1)", sdir.display()))
        }
        Err(e) => r.damage(format!("{}: {e}", mpath.display())),
    }
    let wal_dir = sdir.join("wal");
    let segments = match crate::wal::read_segments(&wal_dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return r.damage(format!("{}: {e}", wal_dir.display())),
    };
    let n_segments = segments.len();
    match aionbd_io::wal::recover(segments, first_lsn) {
        Ok(rec) => {
            for rec_ in &rec.records {
                if let Err(e) = LogRecord::decode(rec_.kind, &rec_.body) {
                    r.damage(format!(
                        "{}: record LSN {} does not decode ({e}); a restart refuses to start",
                        wal_dir.display(),
                        rec_.lsn
                    ));
                    return;
                }
            }
            if let Some((seq, lsn)) = manifest_seq.filter(|(seq, _)| rec.next_segment_seq <= *seq) {
                r.damage(format!(
                    "{}: segment {seq} (recorded by the snapshot at LSN {lsn}) is missing; a restart refuses to start",
                    wal_dir.display()
                ));
            }
            if let Some(aionbd_io::wal::TornTail { segment: seg, offset, .. }) = &rec.torn_tail {
                r.repair(format!(
                    "{seg}: torn tail at offset {offset} (a batch in flight at a crash, never acknowledged); a \
                     restart zeroes it and goes on"
                ));
            }
            r.ok(format!(
                "{}: {n_segments} segment(s), {} record(s) after the snapshot (LSN {}..{}); every checksum matches",
                wal_dir.display(),
                rec.records.len(),
                first_lsn,
                rec.next_lsn.saturating_sub(1)
            ));
        }
        Err(c) => {
            let keep = match c.last_good_lsn {
                Some(l) => format!("keeps LSNs up to {l} and drops the rest of the log"),
                None => "drops the log from this segment on".to_string(),
            };
            r.damage(format!("{c}; a restart refuses to start; --wal-truncate-corrupt {keep}"));
        }
    }
}

fn check_snapshot(path: &Path, shard: usize, lsn: u64, r: &mut Report) {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return r.damage(format!("snapshot {}: {e}; a restart refuses to start", path.display())),
    };
    let refuse = "a restart refuses to start (the log before the snapshot is gone): restore from a backup";
    let mut reader = match SnapshotReader::new(std::io::BufReader::with_capacity(1 << 20, file)) {
        Ok(rd) => rd,
        Err(e) => return r.damage(format!("snapshot {} is damaged {e}; {refuse}", path.display())),
    };
    if reader.header.lsn != lsn || reader.header.shard_id as usize != shard {
        return r.damage(format!("snapshot {} does not match its manifest; {refuse}", path.display()));
    }
    let (mut records, mut points) = (0u64, 0u64);
    loop {
        match reader.next_record() {
            Ok(Some((k, body))) => match LogRecord::decode(k, body) {
                Ok(LogRecord::Upsert { points: p, .. }) => points += p.len() as u64,
                Ok(_) => {}
                Err(e) => {
                    return r.damage(format!(
                        "snapshot {} record {records} does not decode ({e}); {refuse}",
                        path.display()
                    ))
                }
            },
            Ok(None) => break,
            Err(e) => return r.damage(format!("snapshot {} is damaged {e}; {refuse}", path.display())),
        }
        records += 1;
    }
    r.ok(format!(
        "{}: snapshot at LSN {lsn}, {records} records, {points} points; every checksum matches",
        path.display()
    ));
}
