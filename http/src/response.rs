//! Response encoding. A response carries `Content-Length` and its whole
//! body, or a [`BodyStream`] sent with `Transfer-Encoding: chunked` (one
//! chunk per item, so a large export never sits in memory whole).

use futures_lite::Stream;
use std::pin::Pin;

/// A streamed body: each item is one chunk. An `Err` ends the response
/// without its final chunk, so the client sees an incomplete transfer
/// rather than a short body that looks whole; the error is logged.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, StreamError>>>>;

/// Why a streamed body stopped: the producer's own error, which this
/// crate only logs.
pub type StreamError = Box<dyn std::error::Error>;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// When set, `body` is ignored and this is sent chunked.
    pub stream: Option<BodyStream>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("headers", &self.headers)
            .field("body_bytes", &self.body.len())
            .field("streamed", &self.stream.is_some())
            .finish()
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response { status, content_type, headers: Vec::new(), body, stream: None }
    }

    /// A 200-style response whose body is produced by `stream`, chunk by chunk.
    pub fn streamed(status: u16, content_type: &'static str, stream: BodyStream) -> Self {
        Response { status, content_type, headers: Vec::new(), body: Vec::new(), stream: Some(stream) }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Append the encoded response to `out` (for a streamed one: its head,
    /// chunked; the chunks follow from the connection loop).
    pub fn encode(&self, keep_alive: bool, out: &mut Vec<u8>) {
        let framing = if self.stream.is_some() { Framing::Chunked } else { Framing::Length(self.body.len()) };
        self.encode_head(keep_alive, framing, out);
        if self.stream.is_none() {
            out.extend_from_slice(&self.body);
        }
    }

    /// Append the status line and headers, the body framed as `framing`.
    pub fn encode_head(&self, keep_alive: bool, framing: Framing, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ =
            write!(out, "HTTP/1.1 {} {}\r\ncontent-type: {}\r\n", self.status, reason(self.status), self.content_type);
        match framing {
            Framing::Length(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Framing::UntilClose => {}
        }
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        out.extend_from_slice(if keep_alive {
            b"connection: keep-alive\r\n\r\n"
        } else {
            b"connection: close\r\n\r\n"
        });
    }
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// HTTP/1.0 and a streamed body: it ends where the connection closes.
    UntilClose,
}

/// Append one chunk of a chunked body. An empty `data` makes `0\r\n\r\n`:
/// the last chunk and the empty trailer.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}
