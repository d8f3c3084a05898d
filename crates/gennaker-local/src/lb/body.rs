//! Request and response bodies as the proxy streams them, the decoding of a response
//! body by its HTTP/1.1 framing, and the guard that counts a request in flight until
//! its response body has been sent.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::metrics::{Class, GroupMetrics};
use super::pool::{MAX_HEAD_BYTES, MAX_HEADERS, Upstream};
use super::table::BackendState;

/// A client's request body, waiting for the attempt that sends it.
///
/// A body is streamed, so it cannot be copied for a retry. It stays here until an
/// attempt has written the request head: after a connect failure (nothing was sent) it
/// is still here, and the retry on another instance takes it.
#[derive(Debug)]
pub(crate) struct BodySlot {
    slot: Mutex<Option<Incoming>>,
    hint: SizeHint,
}

impl BodySlot {
    /// `None` for a request without a body (then no attempt sends one).
    pub(crate) fn new(body: Incoming) -> Option<Self> {
        if body.is_end_stream() {
            return None;
        }
        let hint = body.size_hint();
        Some(Self {
            slot: Mutex::new(Some(body)),
            hint,
        })
    }

    /// The body's length, when the client declared it.
    pub(crate) fn exact_length(&self) -> Option<u64> {
        self.hint.exact()
    }

    /// Takes the body to send it (`None` if an earlier attempt already did).
    pub(crate) fn take(&self) -> Option<Incoming> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Counts one request in flight on an instance and its group; dropping it records the
/// request as finished (with the class set, or `error` when no response came).
#[derive(Debug)]
pub(crate) struct InFlight {
    group: Arc<GroupMetrics>,
    backend: Arc<BackendState>,
    started: Instant,
    class: Class,
    counted: bool,
}

impl InFlight {
    pub(crate) fn start(
        group: &Arc<GroupMetrics>,
        backend: &Arc<BackendState>,
        started: Instant,
    ) -> Self {
        group.started();
        backend.started();
        Self {
            group: Arc::clone(group),
            backend: Arc::clone(backend),
            started,
            class: Class::Error,
            counted: true,
        }
    }

    pub(crate) fn answered(&mut self, class: Class) {
        self.class = class;
    }

    /// The attempt did not happen (connect failure, retried elsewhere): it leaves the
    /// in-flight counts without counting as a request.
    pub(crate) fn abandon(mut self) {
        self.counted = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.finished();
        if self.counted {
            self.group.finished(self.class, self.started.elapsed());
        } else {
            self.group.abandoned();
        }
    }
}

/// How a response body is delimited on its connection (RFC 9112 §6.3), and how far
/// reading it has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (`HEAD`, `204`, `304`), or one read to its end.
    Empty,
    /// So many bytes left.
    Length(u64),
    Chunked(Chunk),
    /// The body ends when the instance closes the connection.
    UntilClose,
}

/// Where a chunked body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// So many bytes of the current chunk left.
    Data(u64),
    /// Expecting the line end after a chunk's data.
    DataEnd,
    /// After the last chunk: expecting the trailer section.
    Trailers,
    Done,
}

impl Framing {
    /// A chunked body not read yet.
    pub(crate) fn chunked() -> Self {
        Self::Chunked(Chunk::Size)
    }

    fn is_end(self) -> bool {
        matches!(
            self,
            Self::Empty | Self::Length(0) | Self::Chunked(Chunk::Done)
        )
    }
}

/// The longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 16 * 1024;

/// What the buffered bytes gave.
enum Step {
    Frame(Frame<Bytes>),
    End,
    NeedMore,
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Decodes the next frame of a body framed as `framing` from `buffer`.
fn decode(framing: &mut Framing, buffer: &mut BytesMut) -> io::Result<Step> {
    loop {
        match framing {
            Framing::Empty | Framing::Length(0) | Framing::Chunked(Chunk::Done) => {
                return Ok(Step::End);
            }
            Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                if buffer.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take =
                    usize::try_from(*left).map_or(buffer.len(), |left| left.min(buffer.len()));
                *left -= take as u64;
                if let Framing::Chunked(chunk @ Chunk::Data(0)) = framing {
                    *chunk = Chunk::DataEnd;
                }
                return Ok(Step::Frame(Frame::data(buffer.split_to(take).freeze())));
            }
            Framing::UntilClose => {
                if buffer.is_empty() {
                    return Ok(Step::NeedMore);
                }
                return Ok(Step::Frame(Frame::data(buffer.split().freeze())));
            }
            Framing::Chunked(chunk @ Chunk::Size) => {
                let Some(end) = buffer.iter().position(|&b| b == b'\n') else {
                    if buffer.len() > MAX_CHUNK_LINE {
                        return Err(invalid("chunk size line too long"));
                    }
                    return Ok(Step::NeedMore);
                };
                if end > MAX_CHUNK_LINE {
                    return Err(invalid("chunk size line too long"));
                }
                let line = buffer.split_to(end + 1);
                let size = line[..end]
                    .split(|&b| b == b';')
                    .next()
                    .map(|size| size.trim_ascii())
                    .filter(|size| !size.is_empty() && size.len() <= 16)
                    .and_then(|size| std::str::from_utf8(size).ok())
                    .and_then(|size| u64::from_str_radix(size, 16).ok())
                    .ok_or_else(|| invalid("bad chunk size"))?;
                *chunk = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Framing::Chunked(chunk @ Chunk::DataEnd) => {
                match buffer.first() {
                    None => return Ok(Step::NeedMore),
                    Some(b'\n') => buffer.advance(1),
                    Some(b'\r') => match buffer.get(1) {
                        None => return Ok(Step::NeedMore),
                        Some(b'\n') => buffer.advance(2),
                        Some(_) => return Err(invalid("chunk data not followed by a line end")),
                    },
                    Some(_) => return Err(invalid("chunk data longer than its size")),
                }
                *chunk = Chunk::Size;
            }
            Framing::Chunked(chunk @ Chunk::Trailers) => {
                return match parse_trailers(buffer)? {
                    None => Ok(Step::NeedMore),
                    Some(trailers) => {
                        *chunk = Chunk::Done;
                        if trailers.is_empty() {
                            Ok(Step::End)
                        } else {
                            Ok(Step::Frame(Frame::trailers(trailers)))
                        }
                    }
                };
            }
        }
    }
}

/// Parses (and consumes) the trailer section after a chunked body's last chunk;
/// `None` while incomplete. Bounded like a head.
fn parse_trailers(buffer: &mut BytesMut) -> io::Result<Option<HeaderMap>> {
    match buffer.first() {
        None => return Ok(None),
        Some(b'\n') => {
            buffer.advance(1);
            return Ok(Some(HeaderMap::new()));
        }
        Some(b'\r') if buffer.get(1) == Some(&b'\n') => {
            buffer.advance(2);
            return Ok(Some(HeaderMap::new()));
        }
        _ => {}
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let length = match httparse::parse_headers(buffer, &mut fields) {
        Ok(httparse::Status::Complete((length, _))) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD_BYTES => {
            return Err(invalid("trailer section too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(invalid("malformed trailer section")),
    };
    let section = buffer.split_to(length).freeze();
    let mut trailers = HeaderMap::new();
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(httparse::Status::Complete((_, parsed))) =
        httparse::parse_headers(&section, &mut fields)
    {
        for field in parsed {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| invalid("bad trailer name"))?;
            let value = HeaderValue::from_maybe_shared(section.slice_ref(field.value))
                .map_err(|_| invalid("bad trailer value"))?;
            trailers.append(name, value);
        }
    }
    Ok(Some(trailers))
}

/// A response body read from its upstream connection by its framing.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    upstream: Upstream,
    framing: Framing,
    keep_alive: bool,
}

impl UpstreamBody {
    pub(crate) fn new(upstream: Upstream, framing: Framing, keep_alive: bool) -> Self {
        Self {
            upstream,
            framing,
            keep_alive,
        }
    }

    /// Whether the whole body has been read.
    pub(crate) fn is_end(&self) -> bool {
        self.framing.is_end()
    }

    /// The connection, if it can carry another request: the body read to its end,
    /// nothing unasked-for behind it, and neither side asked to close.
    pub(crate) fn into_reusable(mut self) -> Option<Upstream> {
        (self.keep_alive && self.framing.is_end() && self.upstream.buffered().is_empty())
            .then_some(self.upstream)
    }

    /// Bytes of body still expected, when known.
    fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty | Framing::Chunked(Chunk::Done) => Some(0),
            Framing::Length(left) => Some(left),
            Framing::Chunked(_) | Framing::UntilClose => None,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            match decode(&mut self.framing, self.upstream.buffered()) {
                Ok(Step::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Step::End) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(error) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            match std::task::ready!(self.upstream.poll_fill(cx)) {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Empty;
                    self.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the response body ended",
                    ))));
                }
                Ok(_) => {}
                Err(error) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }
}

/// The body of a response to a client: streamed from an instance, or a short local
/// message (or a whole small upstream body, read before the head was sent).
#[derive(Debug)]
pub(crate) enum ResponseBody {
    /// Boxed: only bodies still streaming after the head (large or of unknown length)
    /// take this variant; small ones come whole as `Local`.
    Upstream(Box<Streaming>),
    Local(Option<Bytes>),
}

/// A response body being streamed from its instance.
#[derive(Debug)]
pub(crate) struct Streaming {
    /// The first frame, read before the head was sent so both leave in one write.
    first: Option<Frame<Bytes>>,
    /// `None` once the body has ended (its connection given back) or failed.
    body: Option<UpstreamBody>,
    backend: Arc<BackendState>,
    in_flight: Option<InFlight>,
}

impl Streaming {
    pub(crate) fn new(body: UpstreamBody, backend: Arc<BackendState>, in_flight: InFlight) -> Self {
        Self {
            first: None,
            body: Some(body),
            backend,
            in_flight: Some(in_flight),
        }
    }

    /// Reads the first frame before the head is sent, so both leave in one write; a
    /// failure counts the request as an error. A body that this reads to its end comes
    /// back whole, its connection given back and its request counted as finished.
    pub(crate) async fn prefetch(mut self) -> Result<ResponseBody, io::Error> {
        match std::future::poll_fn(|cx| self.poll_next(cx, true)).await {
            Some(Ok(frame)) if self.body.is_none() => match frame.into_data() {
                Ok(data) => Ok(ResponseBody::Local(Some(data))),
                Err(frame) => {
                    self.first = Some(frame);
                    Ok(ResponseBody::Upstream(Box::new(self)))
                }
            },
            Some(Ok(frame)) => {
                self.first = Some(frame);
                Ok(ResponseBody::Upstream(Box::new(self)))
            }
            None => Ok(ResponseBody::Local(None)),
            Some(Err(error)) => Err(error),
        }
    }

    /// Ends the body: the request leaves the in-flight counts and its connection goes
    /// back to the pool if it can carry another request (closed otherwise).
    fn finish(&mut self) {
        self.in_flight.take();
        if let Some(upstream) = self.body.take().and_then(UpstreamBody::into_reusable) {
            self.backend.pool.give_back(upstream);
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        prefetching: bool,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = body.poll_frame(cx);
        // Finish the count as soon as the last frame is known, before the client can
        // see the end of the response.
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) => {
                if prefetching && let Some(in_flight) = self.in_flight.as_mut() {
                    in_flight.answered(Class::Error);
                }
                self.in_flight.take();
                self.body.take();
            }
            Poll::Ready(Some(Ok(_))) if body.is_end() => self.finish(),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }
}

/// Responses with a known length up to this are sent with their first frame in the
/// same write as their head (one packet instead of two for small responses).
pub(crate) const PREFETCH_LIMIT: u64 = 64 * 1024;

/// Whether to read the first frame of a body framed as `framing` before sending the
/// head: only when its length is known and small, so a streaming response is never
/// held back.
pub(crate) fn worth_prefetching(framing: Framing) -> bool {
    matches!(framing, Framing::Length(length) if length > 0 && length <= PREFETCH_LIMIT)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Upstream(streaming) => streaming.poll_next(cx, false),
            Self::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(streaming) => streaming.first.is_none() && streaming.body.is_none(),
            Self::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream(streaming) => {
                let extra = streaming
                    .first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |data| data.len() as u64);
                let rest = streaming
                    .body
                    .as_ref()
                    .map_or(Some(0), UpstreamBody::remaining);
                match rest {
                    Some(rest) => SizeHint::with_exact(rest.saturating_add(extra)),
                    None => {
                        let mut hint = SizeHint::new();
                        hint.set_lower(extra);
                        hint
                    }
                }
            }
            Self::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes; returns the data, the trailers and
    /// the state it ended in.
    fn decode_all(
        mut framing: Framing,
        wire: &[u8],
        step: usize,
    ) -> io::Result<(Vec<u8>, Option<HeaderMap>, Framing)> {
        let mut buffer = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match decode(&mut framing, &mut buffer)? {
                Step::Frame(frame) => match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Step::End => return Ok((data, trailers, framing)),
                Step::NeedMore if fed == wire.len() => return Ok((data, trailers, framing)),
                Step::NeedMore => {
                    let next = (fed + step).min(wire.len());
                    buffer.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_in_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-sum: 42\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, trailers, end) = decode_all(Framing::chunked(), wire, step).unwrap();
            assert_eq!(data, b"hello 0123456789");
            assert_eq!(trailers.unwrap()["x-sum"], "42");
            assert_eq!(end, Framing::Chunked(Chunk::Done));
        }
        let (data, trailers, end) =
            decode_all(Framing::chunked(), b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!(data, b"abc");
        assert!(trailers.is_none());
        assert!(end.is_end());
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        assert!(decode_all(Framing::chunked(), b"zz\r\nabc\r\n", 4).is_err());
        assert!(decode_all(Framing::chunked(), b"\r\nabc\r\n", 4).is_err());
        assert!(decode_all(Framing::chunked(), b"3\r\nabcd\r\n", 4).is_err());
        assert!(decode_all(Framing::chunked(), b"11111111111111111\r\n", 4).is_err());
        let long = vec![b'1'; MAX_CHUNK_LINE + 2];
        assert!(decode_all(Framing::chunked(), &long, 4096).is_err());
    }

    #[test]
    fn a_length_stops_at_its_end() {
        let (data, _, end) = decode_all(Framing::Length(5), b"hello, and more", 3).unwrap();
        assert_eq!(data, b"hello");
        assert!(end.is_end());
    }
}
