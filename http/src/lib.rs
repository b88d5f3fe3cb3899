//! A minimal HTTP/1.1 server layer: sans-I/O request parsing ([`parse`]),
//! response encoding ([`Response`]) and a connection loop ([`conn::serve`])
//! over any `AsyncRead + AsyncWrite` stream, with keep-alive, pipelining
//! (responses in request order), `Expect: 100-continue` and hard limits.
//!
//! Invariant: this crate knows nothing of vectors, JSON or routes; errors it
//! finds are handed to the service to render.

pub mod conn;
mod parse;
mod response;

pub use conn::{ConnConfig, Service};
pub use parse::{parse, HttpError, HttpErrorKind, Limits, Parsed, Request};
pub use response::{encode_chunk, BodyStream, Framing, Response, StreamError};
