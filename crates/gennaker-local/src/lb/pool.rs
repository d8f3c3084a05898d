//! Keep-alive HTTP/1.1 connections to one instance, and the exchange of one request and
//! response head on them: a request takes an idle connection or opens one, and the
//! connection comes back when its response body has been read to the end.
//!
//! This is a deliberately small HTTP/1.1 client. The request head is written from the
//! client's already-parsed head into a buffer the connection reuses, the response head
//! is parsed with `httparse` straight from the bytes read, and the body is decoded by
//! its framing (`body.rs`) by whoever holds the connection. A connection has no task of
//! its own and no channel: the request being forwarded, then its response body, read
//! and write the socket directly, so a request and its response cross no task boundary
//! and allocate no dispatch state. The pool hangs off the instance it connects to, so
//! it goes away with it.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{BodySlot, Framing};

/// The most header fields a response head (or a chunked body's trailer section) may
/// have: hyper's client default, which this replaces.
pub(crate) const MAX_HEADERS: usize = 100;

/// The largest response head (or trailer section) accepted: hyper's client default
/// read buffer limit (8 KiB + 100 × 4 KiB), which bounded heads before.
pub(crate) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Informational (1xx) responses skipped before the final one; more is a broken
/// instance, not a slow one.
const MAX_INFORMATIONAL: usize = 16;

/// How much room a read is given: more than a typical response, so one read takes it
/// whole (and a short read lets tokio skip the next readiness check's syscall).
const READ_RESERVE: usize = 16 * 1024;

/// Fresh connections tried for one request after pooled ones turned out closed.
const FRESH_CONNECTIONS: usize = 2;

/// One keep-alive connection to an instance.
#[derive(Debug)]
pub(crate) struct Upstream {
    stream: TcpStream,
    /// Bytes read and not consumed yet (the rest of a head, body bytes).
    read: BytesMut,
    /// The request head being written; reused from request to request.
    write: Vec<u8>,
}

impl Upstream {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(READ_RESERVE),
            write: Vec::with_capacity(1024),
        }
    }

    /// The bytes read so far and not consumed.
    pub(crate) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// Reads what the socket has into the buffer: `Ok(0)` at the end of the stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_RESERVE / 2 {
            self.read.reserve(READ_RESERVE);
        }
        pin!(self.stream.read_buf(&mut self.read)).poll(cx)
    }

    /// Whether an idle connection is still open with nothing unasked-for to read: the
    /// check costs no syscall unless the socket became readable while it sat idle.
    fn is_idle_and_open(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        // Ready means the end of the stream, a stray byte or an error: not reusable.
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }
}

/// A request's head as the proxy forwards it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    /// The path and query (origin form).
    pub(crate) target: http::uri::PathAndQuery,
    /// The headers to send, hop-by-hop ones already removed.
    pub(crate) headers: HeaderMap,
}

/// A response head from an instance, and how its body is framed.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body has ended.
    pub(crate) keep_alive: bool,
}

/// How one request to an instance ended.
// Returned once per request and unpacked at once: boxing the head would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Sent {
    /// The response head, and the connection its body comes on (given back to the pool
    /// once the body has been read to the end).
    Response(ResponseHead, Upstream),
    /// No connection could be opened: the request reached nobody.
    ConnectFailed(io::Error),
    /// The request may have reached the instance.
    Failed(io::Error),
}

/// How one exchange on one connection ended.
enum Exchange {
    Answered(ResponseHead),
    /// Nothing of the request was processed (the connection was found closed as it was
    /// written, or closed without a byte of answer to a request that is safe to send
    /// again): another connection may carry it.
    NotSent(io::Error),
    Failed(io::Error),
}

/// Idle connections to one instance.
#[derive(Debug, Default)]
pub(crate) struct ConnectionPool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    upstream: Upstream,
    since: Instant,
}

/// How connections to instances are opened and how long idle ones are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

impl ConnectionPool {
    /// Sends the request to the instance at `address` on an idle connection, or a new
    /// one when none is left (or the idle ones turn out closed before the request was
    /// processed). `body` is the client's request body, taken only once the head has
    /// been written, so after a connect failure a retry elsewhere still has it.
    pub(crate) async fn send(
        &self,
        address: SocketAddr,
        settings: ConnectSettings,
        head: &RequestHead,
        body: Option<&BodySlot>,
    ) -> Sent {
        let mut fresh = 0;
        loop {
            let (mut upstream, reused) = match self.take_reusable() {
                Some(upstream) => (upstream, true),
                None => match connect(address, settings.connect_timeout).await {
                    Ok(upstream) => {
                        fresh += 1;
                        (upstream, false)
                    }
                    Err(error) => return Sent::ConnectFailed(error),
                },
            };
            match exchange(&mut upstream, head, body, reused).await {
                Exchange::Answered(response) => return Sent::Response(response, upstream),
                Exchange::NotSent(_) if fresh < FRESH_CONNECTIONS => {}
                Exchange::NotSent(error) | Exchange::Failed(error) => return Sent::Failed(error),
            }
        }
    }

    /// The most recently used idle connection that still works; those found closed
    /// (by the instance, while idle) are dropped.
    fn take_reusable(&self) -> Option<Upstream> {
        loop {
            let mut upstream = self.lock().pop()?.upstream;
            if upstream.is_idle_and_open() {
                return Some(upstream);
            }
        }
    }

    /// Keeps a connection whose last response was read to the end.
    pub(crate) fn give_back(&self, upstream: Upstream) {
        self.lock().push(Idle {
            upstream,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for `idle_timeout` or more, and those already closed.
    pub(crate) fn evict_idle(&self, now: Instant, idle_timeout: Duration) {
        self.lock().retain_mut(|idle| {
            now.saturating_duration_since(idle.since) < idle_timeout
                && idle.upstream.is_idle_and_open()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens a connection.
async fn connect(address: SocketAddr, timeout: Duration) -> io::Result<Upstream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    // Small requests and responses: never wait for Nagle.
    stream.set_nodelay(true)?;
    Ok(Upstream::new(stream))
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    None,
    Length,
    Chunked,
}

/// Writes the request and reads the final response head.
async fn exchange(
    upstream: &mut Upstream,
    head: &RequestHead,
    body: Option<&BodySlot>,
    reused: bool,
) -> Exchange {
    let framing = encode_head(&mut upstream.write, head, body);
    if let Err(error) = upstream.stream.write_all(&upstream.write).await {
        // A head cut short is never processed: the instance had closed the connection.
        return Exchange::NotSent(error);
    }
    let body = match (framing, body) {
        (RequestFraming::None, _) | (_, None) => None,
        (_, Some(slot)) => slot.take(),
    };
    let is_head = head.method == Method::HEAD;
    let result = match body {
        None => std::future::poll_fn(|cx| poll_response_head(upstream, cx, is_head)).await,
        Some(body) => send_body_and_read_head(upstream, body, framing, is_head).await,
    };
    match result {
        Ok(response) => Exchange::Answered(response),
        // A pooled connection the instance closed just as the request went out: with
        // no body and a method that is safe to repeat, nothing is lost by sending it on
        // another connection.
        Err(HeadError::ClosedEmpty(error))
            if reused && framing == RequestFraming::None && head.method.is_idempotent() =>
        {
            Exchange::NotSent(error)
        }
        Err(HeadError::ClosedEmpty(error) | HeadError::Other(error)) => Exchange::Failed(error),
    }
}

/// Writes `head` (and the framing header its body needs) into `out`.
fn encode_head(out: &mut Vec<u8>, head: &RequestHead, body: Option<&BodySlot>) -> RequestFraming {
    out.clear();
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framing = match body {
        None => RequestFraming::None,
        Some(_) if head.headers.contains_key(header::CONTENT_LENGTH) => RequestFraming::Length,
        Some(slot) => match slot.exact_length() {
            Some(length) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(length.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                RequestFraming::Length
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                RequestFraming::Chunked
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// Why no response head came.
enum HeadError {
    /// The connection ended before a single byte of the response.
    ClosedEmpty(io::Error),
    Other(io::Error),
}

/// Streams the client's request body to the instance while watching for the response
/// head: an instance may answer (e.g. `413`) before it has read the whole body, and
/// then the rest is not sent and the connection is not reused.
async fn send_body_and_read_head<B>(
    upstream: &mut Upstream,
    body: B,
    framing: RequestFraming,
    is_head: bool,
) -> Result<ResponseHead, HeadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut sender = BodySender {
        body,
        chunked: framing == RequestFraming::Chunked,
        pending: Bytes::new(),
        ended: false,
    };
    // Set once the last byte is written, not when the last frame is read: a last frame
    // whose write is pending must still be polled to go out.
    let mut sent = false;
    let mut response = std::future::poll_fn(|cx| {
        if !sent {
            match sender.poll_send(&mut upstream.stream, cx) {
                Poll::Ready(Ok(())) => sent = true,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(HeadError::Other(error))),
                Poll::Pending => {}
            }
        }
        poll_response_head(upstream, cx, is_head)
    })
    .await?;
    if !sent {
        response.keep_alive = false;
    }
    Ok(response)
}

/// The request body on its way out, one frame at a time.
struct BodySender<B> {
    body: B,
    chunked: bool,
    /// Encoded bytes not written yet.
    pending: Bytes,
    /// The body has no more frames (what is left to write is in `pending`).
    ended: bool,
}

impl<B> BodySender<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Writes what it can; `Ready(Ok)` once the whole body is out.
    fn poll_send(&mut self, stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use tokio::io::AsyncWrite as _;
        loop {
            while !self.pending.is_empty() {
                let written =
                    std::task::ready!(Pin::new(&mut *stream).poll_write(cx, &self.pending))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pending.advance(written);
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
            match frame {
                Some(Ok(frame)) => self.pending = self.encode(frame),
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
            }
            if !self.ended && self.body.is_end_stream() {
                // The last frame: its end goes out in the same write.
                self.ended = true;
                if self.chunked {
                    let mut last = BytesMut::from(&self.pending[..]);
                    last.extend_from_slice(b"0\r\n\r\n");
                    self.pending = last.freeze();
                }
            }
        }
    }

    fn encode(&mut self, frame: Frame<Bytes>) -> Bytes {
        match frame.into_data() {
            Ok(data) if !self.chunked => data,
            Ok(data) if data.is_empty() => Bytes::new(),
            Ok(data) => {
                let mut out = BytesMut::with_capacity(data.len() + 20);
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                out.freeze()
            }
            Err(frame) => match frame.into_trailers() {
                // Trailers end a chunked body; a length-framed one has no place for them.
                Ok(trailers) if self.chunked => {
                    self.ended = true;
                    let mut out = BytesMut::from(&b"0\r\n"[..]);
                    for (name, value) in &trailers {
                        out.extend_from_slice(name.as_str().as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(value.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                    out.freeze()
                }
                _ => Bytes::new(),
            },
        }
    }
}

/// Reads until the final response head is complete and parses it (informational
/// responses are skipped, as hyper's client did).
fn poll_response_head(
    upstream: &mut Upstream,
    cx: &mut Context<'_>,
    is_head: bool,
) -> Poll<Result<ResponseHead, HeadError>> {
    let mut informational = 0;
    let mut read_any = false;
    loop {
        if !upstream.read.is_empty() {
            match parse_response_head(&mut upstream.read, is_head) {
                Ok(Some(Parsed::Final(head))) => return Poll::Ready(Ok(head)),
                Ok(Some(Parsed::Informational)) => {
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Poll::Ready(Err(HeadError::Other(invalid(
                            "too many informational responses",
                        ))));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => return Poll::Ready(Err(HeadError::Other(error))),
            }
        }
        match std::task::ready!(upstream.poll_fill(cx)) {
            Ok(0) => {
                let error = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head",
                );
                return Poll::Ready(Err(if read_any || !upstream.read.is_empty() {
                    HeadError::Other(error)
                } else {
                    HeadError::ClosedEmpty(error)
                }));
            }
            Ok(_) => read_any = true,
            Err(error) => {
                return Poll::Ready(Err(if read_any || !upstream.read.is_empty() {
                    HeadError::Other(error)
                } else {
                    HeadError::ClosedEmpty(error)
                }));
            }
        }
    }
}

/// What one head in the buffer was.
enum Parsed {
    Final(ResponseHead),
    /// A 1xx before the final response, consumed.
    Informational,
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Parses a response head at the start of `buffer` and consumes it; `None` while it is
/// incomplete.
fn parse_response_head(buffer: &mut BytesMut, is_head: bool) -> io::Result<Option<Parsed>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD_BYTES => {
            return Err(invalid("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(invalid("too many response headers")),
        Err(_) => return Err(invalid("malformed response head")),
    };
    if length > MAX_HEAD_BYTES {
        return Err(invalid("response head too large"));
    }
    let code = response.code.unwrap_or(0);
    let http_10 = response.version == Some(0);
    // Where each field lies in the head, so the head can leave the buffer as one
    // shared `Bytes` that every header value points into (no copy per value).
    let base = buffer.as_ptr() as usize;
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = response.headers.len();
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        *span = (
            name,
            name + field.name.len(),
            value,
            value + field.value.len(),
        );
    }
    let status = StatusCode::from_u16(code).map_err(|_| invalid("bad response status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Upgrade is a hop-by-hop header the proxy never forwards, so nothing asked for
        // a protocol switch.
        return Err(invalid("unrequested protocol switch"));
    }
    if status.is_informational() {
        buffer.advance(length);
        return Ok(Some(Parsed::Informational));
    }
    let version = if http_10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let head_bytes = buffer.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoded = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for &(name_start, name_end, value_start, value_end) in &spans[..count] {
        let raw_value = &head_bytes[value_start..value_end];
        let name = HeaderName::from_bytes(&head_bytes[name_start..name_end])
            .map_err(|_| invalid("bad response header name"))?;
        let value = HeaderValue::from_maybe_shared(head_bytes.slice(value_start..value_end))
            .map_err(|_| invalid("bad response header value"))?;
        if name == header::CONTENT_LENGTH {
            let parsed = std::str::from_utf8(raw_value)
                .ok()
                .map(str::trim)
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
            if content_length.is_some_and(|previous| previous != parsed) {
                return Err(invalid("conflicting content-length"));
            }
            content_length = Some(parsed);
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoded = true;
            // Only the last coding decides the framing.
            chunked = value
                .to_str()
                .ok()
                .and_then(|text| text.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name == header::CONNECTION {
            for token in value.to_str().unwrap_or("").split(',') {
                let token = token.trim();
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        headers.append(name, value);
    }
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    let bodiless =
        is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if transfer_encoded {
        // A length beside a transfer coding is ignored and not forwarded (RFC 9112
        // §6.3), and such a message ends its connection.
        if content_length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        if chunked {
            Framing::chunked()
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Some(Parsed::Final(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one body frame too large for the socket buffers to a peer that reads only
    /// when the sender waits (a single-threaded runtime), so the last frame's write is
    /// left pending at least once; the whole body must still arrive.
    async fn send_one_large_frame(framing: RequestFraming, expected: Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let wire_length = expected.len();
        let peer = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::with_capacity(wire_length);
            while received.len() < wire_length {
                let mut chunk = vec![0u8; 256 * 1024];
                let read = stream.read(&mut chunk).await.unwrap();
                assert!(read > 0, "closed after {} bytes", received.len());
                received.extend_from_slice(&chunk[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            (received, stream)
        });
        let mut upstream = connect(address, Duration::from_secs(5)).await.unwrap();
        // Far more than a loopback socket's send buffer (4 MiB at most) and the
        // receive window of a peer that has not read yet.
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 16 * 1024 * 1024]));
        // A bound on the wait only, so a regression fails instead of hanging.
        let sent = tokio::time::timeout(
            Duration::from_secs(30),
            send_body_and_read_head(&mut upstream, body, framing, false),
        )
        .await
        .expect("the body's tail was never written");
        let Ok(head) = sent else {
            panic!("no response head");
        };
        assert_eq!(head.status, StatusCode::OK);
        assert!(
            head.keep_alive,
            "a body sent whole leaves the connection reusable"
        );
        let (received, _stream) = peer.await.unwrap();
        assert!(
            received == expected,
            "the instance got other bytes than the body"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_last_frame_whose_write_waits_is_sent_whole() {
        let data = vec![b'x'; 16 * 1024 * 1024];
        send_one_large_frame(RequestFraming::Length, data.clone()).await;
        let mut chunked = format!("{:x}\r\n", data.len()).into_bytes();
        chunked.extend_from_slice(&data);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        send_one_large_frame(RequestFraming::Chunked, chunked).await;
    }

    fn parse(text: &str, is_head: bool) -> io::Result<Option<Parsed>> {
        parse_response_head(&mut BytesMut::from(text.as_bytes()), is_head)
    }

    fn final_head(text: &str, is_head: bool) -> ResponseHead {
        match parse(text, is_head) {
            Ok(Some(Parsed::Final(head))) => head,
            _ => panic!("not a final head: {text:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let head = final_head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        let head = final_head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true);
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(head.headers[header::CONTENT_LENGTH], "5");
        let head = final_head(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::Empty);
        let head = final_head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 9\r\n\r\n",
            false,
        );
        assert_eq!(head.framing, Framing::chunked());
        assert!(head.headers.get(header::CONTENT_LENGTH).is_none());
        assert!(!head.keep_alive);
        let head = final_head(
            "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n",
            false,
        );
        assert!(!head.keep_alive);
        let head = final_head("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(head.framing, Framing::UntilClose);
        assert!(!head.keep_alive);
        let head = final_head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false);
        assert!(!head.keep_alive);
        let head = final_head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
            false,
        );
        assert!(head.keep_alive);
    }

    #[test]
    fn bad_or_oversized_heads_are_errors() {
        assert!(
            parse(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                false
            )
            .is_err()
        );
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 2000 OK\r\n\r\n", false).is_err());
        assert!(parse("NOT HTTP\r\n\r\n", false).is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert!(parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), false).is_err());
        let long = "a".repeat(MAX_HEAD_BYTES);
        assert!(parse(&format!("HTTP/1.1 200 OK\r\nx: {long}"), false).is_err());
        assert!(matches!(
            parse("HTTP/1.1 200 OK\r\nx: 1\r\n", false),
            Ok(None)
        ));
        assert!(matches!(
            parse(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
                false
            ),
            Ok(Some(Parsed::Informational))
        ));
    }

    #[test]
    fn a_request_head_carries_its_body_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("shop"));
        let head = RequestHead {
            method: Method::GET,
            target: http::uri::PathAndQuery::from_static("/a?b=c"),
            headers,
        };
        let mut out = Vec::new();
        assert_eq!(encode_head(&mut out, &head, None), RequestFraming::None);
        assert_eq!(out, b"GET /a?b=c HTTP/1.1\r\nhost: shop\r\n\r\n");
    }
}
