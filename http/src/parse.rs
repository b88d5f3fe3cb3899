//! Request parsing: bytes in, a complete [`Request`] (or what is missing)
//! out. Framing follows RFC 9112 §6: chunked if `Transfer-Encoding: chunked`,
//! else `Content-Length`, else no body; both at once is rejected.

use std::fmt;
use HttpErrorKind::{BadRequest, BodyTooLarge, ExpectationFailed, HeadTooLarge, NotImplemented};

/// Hard limits applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line plus headers, bytes.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// Decoded body, bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 16 * 1024, max_headers: 64, max_body_bytes: 1024 * 1024 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    /// Lower-cased names, raw values, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Whether the connection may stay open after the response.
    pub keep_alive: bool,
    /// HTTP/1.1 (or later): a streamed answer may be sent chunked.
    pub http11: bool,
    /// The peer's address, when the caller of the connection loop knows it
    /// (the parser does not).
    pub peer: Option<std::net::IpAddr>,
}

impl Request {
    /// First header with this (lower-case) name, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// A request that cannot be served; the connection closes after the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub kind: HttpErrorKind,
    /// What exactly is wrong, for the answer's message.
    pub message: String,
}

/// Why a request cannot be served; each kind has one status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// Malformed framing or head (400).
    BadRequest,
    /// The request did not arrive in time (408).
    Timeout,
    /// The body exceeds `Limits::max_body_bytes` (413).
    BodyTooLarge,
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
    /// The head exceeds `Limits::max_head_bytes` or `max_headers` (431).
    HeadTooLarge,
    /// A transfer coding other than chunked (501).
    NotImplemented,
}

impl HttpErrorKind {
    pub fn status(self) -> u16 {
        match self {
            HttpErrorKind::BadRequest => 400,
            HttpErrorKind::Timeout => 408,
            HttpErrorKind::BodyTooLarge => 413,
            HttpErrorKind::ExpectationFailed => 417,
            HttpErrorKind::HeadTooLarge => 431,
            HttpErrorKind::NotImplemented => 501,
        }
    }
}

impl HttpError {
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> HttpError {
        HttpError { kind, message: message.into() }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message)
    }
}

impl std::error::Error for HttpError {}

fn err(kind: HttpErrorKind, message: impl Into<String>) -> HttpError {
    HttpError::new(kind, message)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request and the bytes it used.
    Complete(Request, usize),
    /// More bytes are needed. `head_done` is set once the head has arrived;
    /// `expects_continue` when the client waits for `100 Continue`.
    Partial { head_done: bool, expects_continue: bool },
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Parse one request from the front of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(err(HeadTooLarge, format!("request head exceeds {} bytes", limits.max_head_bytes)));
            }
            return Ok(Parsed::Partial { head_done: false, expects_continue: false });
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(err(HeadTooLarge, format!("more than {} request headers", limits.max_headers)))
        }
        Err(e) => return Err(err(BadRequest, format!("malformed request head: {e}"))),
    };
    if head_len > limits.max_head_bytes {
        return Err(err(HeadTooLarge, format!("request head exceeds {} bytes", limits.max_head_bytes)));
    }
    let version = req.version.unwrap_or(1);
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    if !path.starts_with('/') {
        return Err(err(BadRequest, "request target must be an absolute path"));
    }
    let headers: Vec<(String, Vec<u8>)> =
        req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();

    let mut framing = Framing::None;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut saw_te = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expects_continue = false;
    for (name, value) in &headers {
        let text =
            std::str::from_utf8(value).map_err(|_| err(BadRequest, format!("header '{name}' is not valid text")))?;
        match name.as_str() {
            "content-length" => {
                for part in text.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(err(BadRequest, format!("invalid Content-Length '{text}'")));
                    }
                    let n: usize =
                        part.parse().map_err(|_| err(BadRequest, format!("invalid Content-Length '{text}'")))?;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(err(BadRequest, "conflicting Content-Length values"));
                    }
                    content_length = Some(n);
                }
            }
            "transfer-encoding" => {
                saw_te = true;
                let codings: Vec<String> = text.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
                if codings.last().map(String::as_str) == Some("chunked")
                    && codings.iter().filter(|c| *c == "chunked").count() == 1
                    && codings.iter().all(|c| c == "chunked" || c == "identity")
                {
                    chunked = true;
                } else {
                    return Err(err(NotImplemented, format!("unsupported Transfer-Encoding '{text}'")));
                }
            }
            "connection" => {
                for token in text.split(',') {
                    let t = token.trim();
                    conn_close |= t.eq_ignore_ascii_case("close");
                    conn_keep_alive |= t.eq_ignore_ascii_case("keep-alive");
                }
            }
            "expect" => {
                if text.trim().eq_ignore_ascii_case("100-continue") {
                    expects_continue = true;
                } else {
                    return Err(err(ExpectationFailed, format!("unsupported Expect '{text}'")));
                }
            }
            _ => {}
        }
    }
    if saw_te && content_length.is_some() {
        return Err(err(BadRequest, "request has both Transfer-Encoding and Content-Length"));
    }
    if saw_te && version == 0 {
        return Err(err(BadRequest, "Transfer-Encoding is not allowed in HTTP/1.0"));
    }
    if chunked {
        framing = Framing::Chunked;
    } else if let Some(n) = content_length {
        if n > limits.max_body_bytes {
            return Err(err(
                BodyTooLarge,
                format!("request body of {n} bytes exceeds the limit of {}", limits.max_body_bytes),
            ));
        }
        framing = Framing::Length(n);
    }
    let keep_alive = if version == 0 { conn_keep_alive && !conn_close } else { !conn_close };

    let rest = &buf[head_len..];
    let (body, used) = match framing {
        Framing::None => (Vec::new(), 0),
        Framing::Length(n) => {
            if rest.len() < n {
                return Ok(Parsed::Partial { head_done: true, expects_continue });
            }
            (rest[..n].to_vec(), n)
        }
        Framing::Chunked => match decode_chunked(rest, limits.max_body_bytes)? {
            Some(done) => done,
            None => return Ok(Parsed::Partial { head_done: true, expects_continue }),
        },
    };
    let http11 = version >= 1;
    Ok(Parsed::Complete(
        Request { method, path, query, headers, body, keep_alive, http11, peer: None },
        head_len + used,
    ))
}

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILER: usize = 8 * 1024;

/// Decode a chunked body. `Ok(None)` means more bytes are needed.
fn decode_chunked(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => {
                if buf.len() - pos > MAX_CHUNK_LINE {
                    return Err(err(BadRequest, "chunk size line too long"));
                }
                return Ok(None);
            }
            Err(_) => return Err(err(BadRequest, "invalid chunk size")),
        };
        pos += size_len;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            let mut t = pos;
            loop {
                let Some(eol) = buf[t..].windows(2).position(|w| w == b"\r\n") else {
                    if buf.len() - pos > MAX_TRAILER {
                        return Err(err(BadRequest, "chunked trailer too long"));
                    }
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some((body, t + 2)));
                }
                t += eol + 2;
                if t - pos > MAX_TRAILER {
                    return Err(err(BadRequest, "chunked trailer too long"));
                }
            }
        }
        if body.len() as u64 + size > max_body as u64 {
            return Err(err(BodyTooLarge, format!("request body exceeds the limit of {max_body} bytes")));
        }
        let size = size as usize;
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(err(BadRequest, "chunk data not followed by CRLF"));
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(raw: &[u8]) -> (Request, usize) {
        match parse(raw, &Limits::default()).unwrap() {
            Parsed::Complete(r, n) => (r, n),
            p => panic!("expected complete, got {p:?}"),
        }
    }

    #[test]
    fn content_length_and_keep_alive() {
        let raw = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        let (r, n) = complete(raw);
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_deref()), ("POST", "/a", Some("x=1")));
        assert_eq!(r.body, b"abc");
        assert_eq!(n, raw.len() - 3);
        assert!(r.keep_alive);
        let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let (r, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!r.keep_alive);
    }

    #[test]
    fn chunked_bodies() {
        let raw =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        let (r, n) = complete(raw);
        assert_eq!(r.body, b"abcde");
        assert_eq!(n, raw.len());
        for cut in 0..raw.len() {
            assert!(matches!(parse(&raw[..cut], &Limits::default()), Ok(Parsed::Partial { .. })), "cut {cut}");
        }
    }

    #[test]
    fn smuggling_and_limits_are_rejected() {
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(both, &Limits::default()).unwrap_err().status(), 400);
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(parse(dup, &Limits::default()).unwrap_err().status(), 400);
        let limits = Limits { max_body_bytes: 4, ..Limits::default() };
        let big = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse(big, &limits).unwrap_err().status(), 413);
        let big_chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n";
        assert_eq!(parse(big_chunked, &limits).unwrap_err().status(), 413);
        let long_head = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; 20_000]].concat();
        assert_eq!(parse(&long_head, &Limits::default()).unwrap_err().status(), 431);
        assert_eq!(parse(b"GARBAGE\r\n\r\n", &Limits::default()).unwrap_err().status(), 400);
        let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse(gzip, &Limits::default()).unwrap_err().status(), 501);
    }

    #[test]
    fn expect_continue_is_reported_while_body_is_missing() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        assert_eq!(
            parse(raw, &Limits::default()).unwrap(),
            Parsed::Partial { head_done: true, expects_continue: true }
        );
    }

    proptest! {
        /// Arbitrary bytes never panic, and a complete parse never claims
        /// more bytes than it was given.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Parsed::Complete(_, n)) = parse(&bytes, &Limits::default()) {
                prop_assert!(n <= bytes.len());
            }
        }

        #[test]
        fn any_split_of_a_pipeline_parses_the_same(split in 0usize..200) {
            let raw = b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /y HTTP/1.1\r\n\r\n";
            let cut = split.min(raw.len());
            let first = parse(&raw[..cut], &Limits::default()).unwrap();
            if let Parsed::Complete(r, n) = first {
                prop_assert_eq!(r.path, "/x");
                prop_assert_eq!(n, raw.len() - b"GET /y HTTP/1.1\r\n\r\n".len());
            }
        }
    }
}
