//! Replaying a shard's log at start-up. Consecutive upserts to one
//! collection (a log of single-point PUTs is mostly that) are joined into
//! one upsert of up to [`RUN_POINTS`] points before they are applied: the
//! same points in the same order, so the same state (a later point with the
//! same id still wins), for one split by partition and one message per
//! partition instead of one per record. Any other record ends the run first.

use crate::node::Node;
use aionbd_io::wal::{Lsn, Record};
use aionbd_shards::record::{kind, DecodeError, LogRecord};

/// Most points one joined upsert carries.
const RUN_POINTS: u32 = 512;
/// Most bytes of points one joined upsert carries.
const RUN_BYTES: usize = 1 << 20;

/// Why a logged record could not be replayed.
#[derive(Debug)]
pub enum ReplayError {
    /// An upsert whose body does not decode.
    Undecodable { lsn: Lsn, source: DecodeError },
    /// A record the node could not apply (its message).
    Apply(crate::node::ApplyError),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ReplayError::Undecodable { lsn, source } => write!(f, "WAL record LSN {lsn}: {source}"),
            ReplayError::Apply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayError::Undecodable { source, .. } => Some(source),
            ReplayError::Apply(_) => None,
        }
    }
}

pub struct Replayer<'a> {
    node: &'a Node,
    run: Option<Run>,
    /// Records applied (joined ones counted one by one) and their bytes.
    pub records: u64,
    pub bytes: u64,
}

struct Run {
    name: String,
    count: u32,
    points: Vec<u8>,
    lsns: (Lsn, Lsn),
}

impl<'a> Replayer<'a> {
    pub fn new(node: &'a Node) -> Self {
        Replayer { node, run: None, records: 0, bytes: 0 }
    }

    /// Apply one record in log order (upserts may wait in the current run).
    pub fn apply(&mut self, r: &Record) -> Result<(), ReplayError> {
        self.records += 1;
        self.bytes += (r.body.len() + aionbd_io::wal::format::RECORD_HEADER_BYTES) as u64;
        if r.kind == kind::UPSERT {
            let (name, count, points) =
                LogRecord::upsert_parts(&r.body).map_err(|source| ReplayError::Undecodable { lsn: r.lsn, source })?;
            let joins = self.run.as_ref().is_some_and(|run| {
                run.name == name && run.count + count <= RUN_POINTS && run.points.len() + points.len() <= RUN_BYTES
            });
            if !joins {
                self.flush()?;
                self.run = Some(Run { name: name.to_owned(), count: 0, points: Vec::new(), lsns: (r.lsn, r.lsn) });
            }
            let run = self.run.as_mut().expect("a run was just started");
            run.count += count;
            run.points.extend_from_slice(points);
            run.lsns.1 = r.lsn;
            return Ok(());
        }
        self.flush()?;
        self.node.restore_logged(r.kind, &r.body, &|| format!("WAL record LSN {}", r.lsn)).map_err(ReplayError::Apply)
    }

    /// Apply the run waiting, if any. Call once after the last record.
    pub fn flush(&mut self) -> Result<(), ReplayError> {
        let Some(run) = self.run.take() else { return Ok(()) };
        let body = LogRecord::encode_upsert_parts(&run.name, run.count, &run.points);
        self.node
            .restore_logged(kind::UPSERT, &body, &|| format!("WAL records LSN {} to {}", run.lsns.0, run.lsns.1))
            .map_err(ReplayError::Apply)
    }
}
