//! Request and response bodies as the proxy streams them, and the guard that counts a
//! request in flight until its response body has been sent.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::metrics::{Class, GroupMetrics};
use super::pool::Upstream;
use super::table::BackendState;

/// A client's request body on its way to an instance.
///
/// A body is streamed, so it cannot be copied for a retry. It waits in a shared slot
/// and moves into the body sent upstream only when the connection asks for its first
/// frame: after a connect failure (nothing was sent) it is still in the slot, and the
/// retry on another instance takes it from there.
#[derive(Debug)]
pub(crate) enum RequestBody {
    Empty,
    Pending {
        slot: Arc<Mutex<Option<Incoming>>>,
        taken: Option<Incoming>,
        hint: SizeHint,
    },
}

/// The slot a request body waits in between attempts.
#[derive(Debug, Clone)]
pub(crate) struct BodySlot {
    slot: Arc<Mutex<Option<Incoming>>>,
    hint: SizeHint,
}

impl BodySlot {
    /// `None` for a request without a body (then every attempt sends an empty one).
    pub(crate) fn new(body: Incoming) -> Option<Self> {
        if body.is_end_stream() {
            return None;
        }
        let hint = body.size_hint();
        Some(Self {
            slot: Arc::new(Mutex::new(Some(body))),
            hint,
        })
    }
}

impl RequestBody {
    pub(crate) fn for_attempt(slot: Option<&BodySlot>) -> Self {
        match slot {
            None => Self::Empty,
            Some(slot) => Self::Pending {
                slot: Arc::clone(&slot.slot),
                taken: None,
                hint: slot.hint,
            },
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Pending { slot, taken, .. } => {
                if taken.is_none() {
                    *taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                }
                match taken {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Pending {
                taken: Some(body), ..
            } => body.is_end_stream(),
            Self::Pending { taken: None, .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Pending {
                taken: Some(body), ..
            } => body.size_hint(),
            Self::Pending {
                taken: None, hint, ..
            } => *hint,
        }
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

/// The body of a response to a client: streamed from an instance, or a short local
/// message.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    Upstream {
        /// The first frame, read before the head was sent so both leave in one write.
        first: Option<Frame<Bytes>>,
        inner: Incoming,
        in_flight: Option<InFlight>,
        /// The connection it came on, given back to its pool once the body has been
        /// read to the end (dropped, and so closed, if the body fails or is abandoned).
        connection: Option<Reusable>,
    },
    Local(Option<Bytes>),
}

/// An upstream connection waiting for its response body to end.
#[derive(Debug)]
pub(crate) struct Reusable {
    pub(crate) backend: Arc<BackendState>,
    pub(crate) upstream: Upstream,
}

impl Reusable {
    pub(crate) fn give_back(self) {
        self.backend.pool.give_back(self.upstream);
    }
}

impl ResponseBody {
    /// Reads the first frame before the head is sent, so both leave in one write; a
    /// failure counts the request as an error.
    pub(crate) async fn prefetch(&mut self) -> Result<(), hyper::Error> {
        match std::future::poll_fn(|cx| self.poll_next(cx, true)).await {
            Some(Ok(frame)) => {
                if let Self::Upstream { first, .. } = self {
                    *first = Some(frame);
                }
                Ok(())
            }
            None => Ok(()),
            Some(Err(error)) => Err(error),
        }
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        prefetching: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self {
            Self::Upstream {
                first,
                inner,
                in_flight,
                connection,
            } => {
                if let Some(frame) = first.take() {
                    if inner.is_end_stream() {
                        in_flight.take();
                        if let Some(connection) = connection.take() {
                            connection.give_back();
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                let polled = poll_driven(inner, connection.as_mut(), cx);
                // Finish the count as soon as the last frame is known, before the
                // client can see the end of the response.
                let (done, reusable) = match &polled {
                    Poll::Ready(None) => (true, true),
                    Poll::Ready(Some(Err(_))) => (true, false),
                    Poll::Ready(Some(Ok(_))) => (inner.is_end_stream(), inner.is_end_stream()),
                    Poll::Pending => (false, false),
                };
                if done {
                    if prefetching
                        && !reusable
                        && let Some(in_flight) = in_flight.as_mut()
                    {
                        in_flight.answered(Class::Error);
                    }
                    in_flight.take();
                    if let Some(connection) = connection.take()
                        && reusable
                    {
                        connection.give_back();
                    }
                }
                polled
            }
            Self::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }
}

/// Polls `inner` for a frame, letting its connection read first; a second round
/// catches the frame the connection reads as soon as the body asks for more.
fn poll_driven(
    inner: &mut Incoming,
    connection: Option<&mut Reusable>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
    let Some(connection) = connection else {
        return Pin::new(inner).poll_frame(cx);
    };
    for _ in 0..2 {
        connection.upstream.drive(cx);
        if let ready @ Poll::Ready(_) = Pin::new(&mut *inner).poll_frame(cx) {
            return ready;
        }
    }
    Poll::Pending
}

/// Responses with a known length up to this are sent with their first frame in the
/// same write as their head (one packet instead of two for small responses).
pub(crate) const PREFETCH_LIMIT: u64 = 64 * 1024;

/// Whether to read the first frame of `body` before sending the head: only when its
/// length is known and small, so a streaming response is never held back.
pub(crate) fn worth_prefetching(body: &Incoming) -> bool {
    let hint = body.size_hint();
    !body.is_end_stream() && hint.upper().is_some_and(|upper| upper <= PREFETCH_LIMIT)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.get_mut().poll_next(cx, false)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { first, inner, .. } => first.is_none() && inner.is_end_stream(),
            Self::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { first, inner, .. } => {
                let extra = first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |data| data.len() as u64);
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint.set_lower(rest.lower().saturating_add(extra));
                hint
            }
            Self::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
