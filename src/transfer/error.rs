//! Why an import or an export stopped: [`TransferError`], with the server's
//! answers ([`Failure`]) and the input's problems ([`InputProblem`] at a
//! [`Place`]) it carries.

use crate::fs::FsError;
use aionbd_io::vecfile;
use serde_json::Value;
use std::path::PathBuf;

/// A server answer that is not 2xx, or no answer.
#[derive(Debug)]
pub enum Failure {
    /// Status, body, `Retry-After` seconds.
    Status(u16, String, Option<u64>),
    Transport(Box<ureq::Transport>),
    /// A 2xx answer whose body cannot be read.
    UnreadableBody(std::io::Error),
    UnreadableJson(serde_json::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Failure::Status(code, body, _) => {
                let msg = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| body.clone());
                write!(f, "server answered {code}: {msg}")
            }
            Failure::Transport(e) => write!(f, "{e}"),
            Failure::UnreadableBody(e) => write!(f, "unreadable answer: {e}"),
            Failure::UnreadableJson(e) => write!(f, "unreadable answer: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Why an import or an export stopped (or did not start).
#[derive(Debug)]
pub enum TransferError {
    File(FsError),
    CaFile {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    Tls(rustls::Error),
    /// An import with no `--collection` of a file without an export's first line.
    NoCollection,
    VecFile {
        path: PathBuf,
        source: vecfile::VecFileError,
    },
    /// `--create` of an NDJSON file whose first points have no values.
    UnknownDimension,
    NoSuchCollection {
        name: String,
        url: String,
    },
    Create {
        name: String,
        source: Failure,
    },
    /// A request about the collection failed.
    Request(Failure),
    Server {
        url: String,
        source: Failure,
    },
    /// A point of the input that cannot be sent (where, and why).
    BadInput {
        at: Place,
        problem: InputProblem,
    },
    /// The server refused points (lines `first` to `last`).
    Refused {
        first: u64,
        last: u64,
        source: Failure,
    },
    /// The import stopped: every line up to `last_line` is written.
    ImportStopped {
        cause: Box<TransferError>,
        written: u64,
        last_line: u64,
    },
    ExportStopped(std::io::Error),
    /// The export's answer ends in the middle of a line.
    ExportTruncated,
    ExportHeader(serde_json::Error),
}

/// Where in the input a point is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Line(u64),
    /// A line of the `--payloads` file.
    PayloadLine(u64),
    /// A row of an fvecs or npy file.
    Row(u64),
}

/// Why a point of the input cannot be sent.
#[derive(Debug)]
pub enum InputProblem {
    Read(std::io::Error),
    NotJson(serde_json::Error),
    NoId,
    NoValues,
    NotANumber { id: u64, value: Value },
    Dimension { id: u64, values: usize, dimension: usize },
    NonFinite { id: u64 },
    PayloadNotObject { id: u64, payload: Value },
}

impl From<FsError> for TransferError {
    fn from(e: FsError) -> Self {
        TransferError::File(e)
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::PayloadLine(n) => write!(f, "payload line {n}"),
            Place::Row(n) => write!(f, "row {n}"),
        }
    }
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            InputProblem::Read(e) => write!(f, "{e}"),
            InputProblem::NotJson(e) => write!(f, "not JSON: {e}"),
            InputProblem::NoId => f.write_str("no \"id\" (an unsigned integer)"),
            InputProblem::NoValues => f.write_str("no \"values\" array"),
            InputProblem::NotANumber { id, value } => write!(f, "point {id}: value {value} is not a number"),
            InputProblem::Dimension { id, values, dimension } => {
                write!(f, "point {id} has {values} values; the collection's dimension is {dimension}")
            }
            InputProblem::NonFinite { id } => {
                write!(f, "point {id} has a non-finite value and the collection is strict_finite")
            }
            InputProblem::PayloadNotObject { id, payload } => {
                write!(f, "point {id}: payload must be a JSON object, got {payload}")
            }
        }
    }
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            TransferError::File(e) => write!(f, "{e}"),
            TransferError::CaFile { path, source } => write!(f, "CA file {}: {source}", path.display()),
            TransferError::Tls(e) => write!(f, "{e}"),
            TransferError::NoCollection => {
                f.write_str("--collection is needed (the file does not start with an export's collection line)")
            }
            TransferError::VecFile { path, source } => write!(f, "{}: {source}", path.display()),
            TransferError::UnknownDimension => f.write_str("cannot tell the dimension from the file's first point"),
            TransferError::NoSuchCollection { name, url } => {
                write!(f, "collection '{name}' does not exist on {url} (pass --create to create it)")
            }
            TransferError::Create { name, source } => write!(f, "creating '{name}': {source}"),
            TransferError::Request(e) => write!(f, "{e}"),
            TransferError::Server { url, source } => write!(f, "{url}: {source}"),
            TransferError::BadInput { at, problem } => write!(f, "{at}: {problem}"),
            TransferError::Refused { first, last, source } if first == last => write!(f, "line {first}: {source}"),
            TransferError::Refused { first, last, source } => write!(f, "lines {first}-{last}: {source}"),
            TransferError::ImportStopped { cause, written, last_line } => write!(
                f,
                "{cause}\nimport stopped: {written} points were written before it (every line up to {last_line}); fix \
                 the line and resume with --from-line {}",
                last_line + 1
            ),
            TransferError::ExportStopped(e) => write!(f, "the export stopped: {e}"),
            TransferError::ExportTruncated => f.write_str("the export ended in the middle of a line"),
            TransferError::ExportHeader(e) => write!(f, "unreadable first line: {e}"),
        }
    }
}

impl std::error::Error for TransferError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransferError::File(e) => Some(e),
            TransferError::CaFile { source, .. } => Some(source),
            TransferError::Tls(e) => Some(e),
            TransferError::VecFile { source, .. } => Some(source),
            TransferError::Create { source, .. }
            | TransferError::Request(source)
            | TransferError::Server { source, .. }
            | TransferError::Refused { source, .. } => Some(source),
            TransferError::ImportStopped { cause, .. } => Some(cause),
            TransferError::ExportStopped(e) => Some(e),
            TransferError::ExportHeader(e) => Some(e),
            TransferError::NoCollection
            | TransferError::UnknownDimension
            | TransferError::NoSuchCollection { .. }
            | TransferError::BadInput { .. }
            | TransferError::ExportTruncated => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_lines_they_stopped_at() {
        let refused = |first, last| TransferError::Refused {
            first,
            last,
            source: Failure::Status(400, r#"{"code":"invalid_argument","message":"bad"}"#.into(), None),
        };
        assert_eq!(refused(7, 7).to_string(), "line 7: server answered 400: bad");
        assert_eq!(refused(3, 9).to_string(), "lines 3-9: server answered 400: bad");
        let bad = TransferError::BadInput {
            at: Place::PayloadLine(4),
            problem: InputProblem::PayloadNotObject { id: 3, payload: serde_json::json!([1]) },
        };
        assert_eq!(bad.to_string(), "payload line 4: point 3: payload must be a JSON object, got [1]");
        let stopped = TransferError::ImportStopped { cause: Box::new(bad), written: 40, last_line: 40 };
        assert!(stopped.to_string().ends_with(
            "\nimport stopped: 40 points were written before it (every line up to 40); fix the line and resume with \
             --from-line 41"
        ));
    }
}
