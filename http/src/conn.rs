//! The connection loop: read, parse every complete request in the buffer,
//! hand each to the service in order, write the answers in that order, and
//! repeat until the peer closes, asks to close, errs or idles out.

use crate::parse::{parse, HttpError, Limits, Parsed, Request};
use crate::response::{Framing, Response};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct ConnConfig {
    pub limits: Limits,
    /// A request must arrive whole (head and body) within this time of its
    /// first byte; slow senders get 408 and the connection closes.
    pub request_read_timeout: Duration,
    /// An idle keep-alive connection closes after this long.
    pub idle_timeout: Duration,
    /// Responses buffered from one pipelined burst before they are flushed.
    pub max_pipelined: usize,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            limits: Limits::default(),
            request_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_pipelined: 16,
        }
    }
}

/// What the connection loop serves.
#[allow(async_fn_in_trait)]
pub trait Service {
    async fn call(&self, req: Request) -> Response;
    /// Render a protocol error (the connection closes after it).
    fn error(&self, err: &HttpError) -> Response;
}

const READ_CHUNK: usize = 64 * 1024;
/// After an error answer, how long and how much of what the peer still
/// sends is read and dropped before the socket closes (see `fail`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;

/// Send an error answer and close gracefully: half-close, then read and
/// drop what the peer is still sending (say the rest of a body over the
/// limit) until it closes, for at most `LINGER_TIME` / `LINGER_BYTES`.
/// Closing with unread bytes makes the kernel reset the connection, and a
/// reset can destroy the answer before the client reads it: a client
/// uploading a 2 MB body would see "connection reset" instead of the 413.
async fn fail<S, F, SF>(stream: &mut S, out: &[u8], chunk: &mut [u8], sleep: F) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Duration) -> SF,
    SF: Future<Output = ()>,
{
    stream.write_all(out).await?;
    stream.flush().await?;
    stream.close().await?;
    let (t0, mut drained) = (Instant::now(), 0usize);
    while drained < LINGER_BYTES {
        let left = LINGER_TIME.saturating_sub(t0.elapsed());
        let read = futures_lite::future::or(async { Some(stream.read(chunk).await) }, async {
            sleep(left).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

/// Send a streamed body after the head already in `out`: one chunk per
/// item (raw bytes for HTTP/1.0). A chunk the peer does not take within
/// `stall` ends the connection (a client that stopped reading must not hold
/// the export behind the stream forever). `Ok(false)`: the stream failed
/// and the response was left unfinished, so the connection must close.
async fn send_stream<S, F, SF>(
    stream: &mut S,
    out: &mut Vec<u8>,
    mut body: crate::response::BodyStream,
    chunked: bool,
    stall: Duration,
    sleep: &F,
) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(Duration) -> SF,
    SF: Future<Output = ()>,
{
    use futures_lite::StreamExt;
    loop {
        let item = body.next().await;
        let last = match item {
            Some(Ok(data)) if data.is_empty() => continue,
            Some(Ok(data)) => {
                if chunked {
                    crate::response::encode_chunk(&data, out);
                } else {
                    out.extend_from_slice(&data);
                }
                false
            }
            None => {
                if chunked {
                    crate::response::encode_chunk(&[], out);
                }
                true
            }
            Some(Err(e)) => {
                tracing::warn!("a streamed response stopped: {e}");
                stream.write_all(out).await?;
                out.clear();
                return Ok(false);
            }
        };
        let write = async {
            stream.write_all(out).await?;
            stream.flush().await
        };
        let sent = futures_lite::future::or(async { Some(write.await) }, async {
            sleep(stall).await;
            None
        })
        .await;
        out.clear();
        match sent {
            Some(r) => r?,
            None => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "peer stopped reading a stream")),
        }
        if last {
            return Ok(true);
        }
    }
}

/// Serve one connection to completion. `sleep` supplies the runtime's timer.
pub async fn serve<S, V, F, SF>(mut stream: S, service: &V, cfg: &ConnConfig, sleep: F) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Service,
    F: Fn(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut request_started: Option<Instant> = None;
    let mut sent_continue = false;
    loop {
        // Serve every complete request already buffered (pipelining).
        let mut served = 0;
        loop {
            match parse(&buf, &cfg.limits) {
                Ok(Parsed::Complete(req, used)) => {
                    buf.drain(..used);
                    request_started = if buf.is_empty() { None } else { Some(Instant::now()) };
                    sent_continue = false;
                    let (keep_alive, http11) = (req.keep_alive, req.http11);
                    let head_only = req.method == "HEAD";
                    let mut resp = service.call(req).await;
                    if head_only {
                        // HEAD: the answer's head alone (a stream is
                        // dropped unread, which ends what it started).
                        let framing = if resp.stream.take().is_some() {
                            Framing::Chunked
                        } else {
                            Framing::Length(resp.body.len())
                        };
                        resp.encode_head(keep_alive, framing, &mut out);
                    } else if let Some(body) = resp.stream.take() {
                        // HTTP/1.0 has no chunked coding: the body ends
                        // where the connection closes.
                        let keep_alive = keep_alive && http11;
                        let framing = if http11 { Framing::Chunked } else { Framing::UntilClose };
                        resp.encode_head(keep_alive, framing, &mut out);
                        if !send_stream(&mut stream, &mut out, body, http11, cfg.idle_timeout, &sleep).await?
                            || !keep_alive
                        {
                            return stream.close().await;
                        }
                        served = 0;
                        continue;
                    } else {
                        resp.encode(keep_alive, &mut out);
                    }
                    served += 1;
                    if !keep_alive {
                        stream.write_all(&out).await?;
                        return stream.flush().await;
                    }
                    if served >= cfg.max_pipelined {
                        stream.write_all(&out).await?;
                        out.clear();
                        served = 0;
                    }
                }
                Ok(Parsed::Partial { head_done, expects_continue }) => {
                    if head_done && expects_continue && !sent_continue {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        sent_continue = true;
                    }
                    break;
                }
                Err(e) => {
                    service.error(&e).encode(false, &mut out);
                    return fail(&mut stream, &out, &mut chunk, sleep).await;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
            out.clear();
        }
        // Wait for more bytes, under the idle or the request deadline.
        let (limit, mid_request) = match request_started {
            Some(t0) => (cfg.request_read_timeout.saturating_sub(t0.elapsed()), true),
            None if buf.is_empty() => (cfg.idle_timeout, false),
            None => (cfg.request_read_timeout, true),
        };
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk).await) }, async {
            sleep(limit).await;
            None
        })
        .await;
        match read {
            None if mid_request => {
                let e = HttpError::new(crate::parse::HttpErrorKind::Timeout, "request not received in time");
                service.error(&e).encode(false, &mut out);
                return fail(&mut stream, &out, &mut chunk, sleep).await;
            }
            None => return Ok(()),
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => {
                if request_started.is_none() {
                    request_started = Some(Instant::now());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Some(Err(e)) => return Err(e),
        }
    }
}
