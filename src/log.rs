//! Leveled logs on stderr (`tracing`): one line per event, text or JSON.
//!
//! The filter is `RUST_LOG` when set, else `server.log` (`AIONBD_LOG`,
//! default `info`), in `tracing`'s target syntax: `info`, `warn`,
//! `info,aionbd::snapshot=debug`. Under systemd (`JOURNAL_STREAM` set) text
//! lines carry no time stamp: the journal adds its own. Output before the
//! configuration is read (its errors) and the tools' output stay plain.

use tracing_subscriber::filter::{ParseError, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::util::TryInitError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

/// A `server.log_format` other than `text` or `json`.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl std::fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "'{}': expected text or json", self.0)
    }
}

impl std::error::Error for UnknownFormat {}

/// A filter that does not parse, and the directives it was given.
#[derive(Debug)]
pub struct FilterError {
    pub directives: String,
    pub source: ParseError,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "'{}': {} (e.g. 'info' or 'warn,aionbd::wal=debug')", self.directives, self.source)
    }
}

impl std::error::Error for FilterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Why the logger could not be installed.
#[derive(Debug)]
pub enum LogError {
    /// The filter in `RUST_LOG` or, without it, in `server.log`.
    Filter {
        setting: &'static str,
        source: FilterError,
    },
    Install(TryInitError),
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            LogError::Filter { setting, source } => write!(f, "{setting} = {source}"),
            LogError::Install(e) => write!(f, "cannot install the logger: {e}"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Filter { source, .. } => Some(source),
            LogError::Install(e) => Some(e),
        }
    }
}

/// Check a filter (`server.log`); the error says what is wrong.
pub fn parse_filter(directives: &str) -> Result<Targets, FilterError> {
    directives.parse::<Targets>().map_err(|source| FilterError { directives: directives.to_owned(), source })
}

/// Install the process's logger. `configured` is `server.log`; `RUST_LOG`
/// overrides it.
pub fn init(configured: &str, format: Format) -> Result<(), LogError> {
    let directives = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = match &directives {
        Some(d) => parse_filter(d).map_err(|source| LogError::Filter { setting: "RUST_LOG", source })?,
        None => parse_filter(configured).map_err(|source| LogError::Filter { setting: "server.log", source })?,
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry();
    match (format, journal) {
        (Format::Json, _) => registry.with(layer.json().with_current_span(false).with_filter(filter)).try_init(),
        (Format::Text, true) => registry.with(layer.without_time().with_filter(filter)).try_init(),
        (Format::Text, false) => registry.with(layer.with_filter(filter)).try_init(),
    }
    .map_err(LogError::Install)
}
