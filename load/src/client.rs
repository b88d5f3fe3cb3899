//! A blocking HTTP/1.1 connection for load: keep-alive, pipelining (several
//! requests written before their answers are read, answered in order),
//! plain TCP or TLS (rustls; the system's web roots or a CA file). Answers
//! are framed by `Content-Length` or chunked coding; heads are parsed with
//! `httparse`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// `host:port` for the Host header.
    pub authority: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Extra header lines (`name: value\r\n`): credentials.
    pub headers: String,
}

impl Target {
    pub fn parse(url: &str, ca_file: Option<&std::path::Path>, headers: String) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("URL '{url}' must start with http:// or https://"));
        };
        let authority = rest.split('/').next().unwrap_or("").to_owned();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(|c| c == '[' || c == ']').to_owned(),
                p.parse().map_err(|_| format!("bad port in '{url}'"))?,
            ),
            _ => (authority.clone(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("URL '{url}' has no host"));
        }
        let tls = tls.then(|| client_config(ca_file)).transpose()?;
        Ok(Target { host, port, authority, tls, headers })
    }
}

fn client_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?
            {
                roots.add(cert.map_err(|e| format!("CA file {}: {e}", ca.display()))?).map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    target: Target,
}

/// One answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<u64>,
}

impl Conn {
    pub fn open(target: &Target, timeout: Duration) -> std::io::Result<Conn> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(target.host.as_str(), target.port))?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", target.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream: Box<dyn Stream> = match &target.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| std::io::Error::other(format!("TLS name {}: {e}", target.host)))?;
                let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Ok(Conn { stream, buf: Vec::with_capacity(64 << 10), target: target.clone() })
    }

    /// The bytes of one request.
    pub fn request(target: &Target, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
        let mut r = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n{}", target.authority, target.headers);
        if let Some(b) = body {
            r.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", b.len()));
        }
        r.push_str("\r\n");
        let mut bytes = r.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        bytes
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Read the next answer (in request order).
    pub fn read_answer(&mut self) -> std::io::Result<Answer> {
        loop {
            if let Some((answer, used)) = parse_answer(&self.buf)? {
                self.buf.drain(..used);
                return Ok(answer);
            }
            let mut chunk = [0u8; 64 << 10];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One request and its answer on this connection.
    pub fn call(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<Answer> {
        let bytes = Conn::request(&self.target, method, path, body);
        self.send(&bytes)?;
        self.read_answer()
    }
}

/// An answer at the start of `buf`, and the bytes it used; `None` if more
/// bytes are needed.
fn parse_answer(buf: &[u8]) -> std::io::Result<Option<(Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).map_err(|e| std::io::Error::other(format!("bad answer: {e}")))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let (mut length, mut chunked, mut retry_after) = (None, false, None);
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = v.parse().ok();
        }
    }
    if chunked {
        let mut body = Vec::new();
        let mut at = head;
        loop {
            let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            let size_text = std::str::from_utf8(&buf[at..at + eol]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            at += eol + 2;
            if buf.len() < at + size + 2 {
                return Ok(None);
            }
            if size == 0 {
                return Ok(Some((Answer { status, body, retry_after }, at + 2)));
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    }
    let n = length.unwrap_or(0);
    if buf.len() < head + n {
        return Ok(None);
    }
    Ok(Some((Answer { status, body: buf[head..head + n].to_vec(), retry_after }, head + n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_framed_by_length_or_chunks_and_may_arrive_in_pieces() {
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 429 Too Many\r\nretry-after: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (a, used) = parse_answer(two).unwrap().unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hi"[..]));
        let (b, used2) = parse_answer(&two[used..]).unwrap().unwrap();
        assert_eq!((b.status, b.body.as_slice(), b.retry_after), (429, &b"abc"[..], Some(3)));
        assert_eq!(used + used2, two.len());
        for cut in 0..two.len() - used {
            let part = &two[used..used + cut];
            assert!(parse_answer(part).unwrap().is_none(), "complete at {cut} of {}", two.len() - used);
        }
    }

    #[test]
    fn urls_name_host_port_and_scheme() {
        let t = Target::parse("http://127.0.0.1:8080", None, String::new()).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls.is_none()), ("127.0.0.1", 8080, true));
        let t = Target::parse("https://db.example", None, String::new()).unwrap();
        assert_eq!((t.port, t.tls.is_some()), (443, true));
        assert!(Target::parse("ftp://x", None, String::new()).is_err());
    }
}
