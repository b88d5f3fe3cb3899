//! Leveled logs on stderr (`tracing`): one line per event, text or JSON.
//!
//! The filter is `RUST_LOG` when set, else `server.log` (`AIONBD_LOG`,
//! default `info`), in `tracing`'s target syntax: `info`, `warn`,
//! `info,aionbd::snapshot=debug`. Under systemd (`JOURNAL_STREAM` set) text
//! lines carry no time stamp: the journal adds its own. Output before the
//! configuration is read (its errors) and the tools' output stay plain.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("'{other}': expected text or json")),
        }
    }
}

/// Check a filter (`server.log`); the error says what is wrong.
pub fn parse_filter(directives: &str) -> Result<Targets, String> {
    directives.parse::<Targets>().map_err(|e| format!("'{directives}': {e} (e.g. 'info' or 'warn,aionbd::wal=debug')"))
}

/// Install the process's logger. `configured` is `server.log`; `RUST_LOG`
/// overrides it.
pub fn init(configured: &str, format: Format) -> Result<(), String> {
    let directives = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = match &directives {
        Some(d) => parse_filter(d).map_err(|e| format!("RUST_LOG = {e}"))?,
        None => parse_filter(configured).map_err(|e| format!("server.log = {e}"))?,
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let registry = tracing_subscriber::registry();
    match (format, journal) {
        (Format::Json, _) => registry.with(layer.json().with_current_span(false).with_filter(filter)).try_init(),
        (Format::Text, true) => registry.with(layer.without_time().with_filter(filter)).try_init(),
        (Format::Text, false) => registry.with(layer.with_filter(filter)).try_init(),
    }
    .map_err(|e| format!("cannot install the logger: {e}"))
}
