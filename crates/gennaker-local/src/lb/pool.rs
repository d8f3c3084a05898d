//! Keep-alive HTTP/1.1 connections to one instance, built directly on hyper's
//! connection API: a request takes an idle connection or opens one, and the connection
//! comes back when its response body has been read to the end.
//!
//! A connection has no task of its own: whoever holds it (the request being forwarded,
//! then its response body) drives it, so a request and its response cross no task
//! boundary inside the load balancer. Compared with a general-purpose pooled client
//! this also skips, per request, a keyed lookup, a checkout future and a task spawned
//! to return the connection; the pool hangs off the instance it connects to, so it
//! goes away with it.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::RequestBody;

/// One keep-alive connection to an instance: the handle requests are sent through,
/// and the connection itself, polled by whoever holds it.
#[derive(Debug)]
pub(crate) struct Upstream {
    sender: SendRequest<RequestBody>,
    /// `None` once the connection has ended. Boxed: it is large, and the handle moves
    /// between the pool, the request and its response body.
    connection: Option<Box<http1::Connection<TokioIo<TcpStream>, RequestBody>>>,
}

impl Upstream {
    /// Lets the connection read and write what it can; wakes `cx` when it can do more.
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(connection) = &mut self.connection
            && let Poll::Ready(result) = Pin::new(&mut **connection).poll(cx)
        {
            if let Err(error) = result {
                tracing::debug!(%error, "instance connection ended with an error");
            }
            self.connection = None;
        }
    }

    /// Whether it can carry another request now.
    fn is_reusable(&self) -> bool {
        self.connection.is_some() && self.sender.is_ready()
    }
}

/// Fresh connections tried for one request after pooled ones turned out closed.
const FRESH_CONNECTIONS: usize = 2;

/// How one request to an instance ended.
pub(crate) enum Sent {
    /// The response head, and the connection, which must be driven for the body to
    /// come and given back once the body has been read.
    Response(Response<Incoming>, Upstream),
    /// No connection could be opened: the request (returned) reached nobody.
    ConnectFailed(std::io::Error, Request<RequestBody>),
    /// The request may have reached the instance.
    Failed(hyper::Error),
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
    /// Sends `request` to the instance at `address` on an idle connection, or a new one
    /// when none is left (or the idle ones turn out closed before the request went out).
    pub(crate) async fn send(
        &self,
        address: SocketAddr,
        settings: ConnectSettings,
        mut request: Request<RequestBody>,
    ) -> Sent {
        let mut fresh = 0;
        loop {
            let mut upstream = match self.take_reusable() {
                Some(upstream) => upstream,
                None => match connect(address, settings.connect_timeout).await {
                    Ok(upstream) => {
                        fresh += 1;
                        upstream
                    }
                    Err(error) => return Sent::ConnectFailed(error, request),
                },
            };
            let mut response = pin!(upstream.sender.try_send_request(request));
            // The connection first (it writes the request, reads the head and hands it
            // over), then the answer; a connection that ends drops its queue, which
            // settles the answer.
            let answer = std::future::poll_fn(|cx| {
                upstream.drive(cx);
                response.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(response) => return Sent::Response(response, upstream),
                Err(mut error) => match error.take_message() {
                    // The connection closed before the request was written: nothing
                    // reached the instance, so another connection may carry it.
                    Some(unsent) if fresh < FRESH_CONNECTIONS => request = unsent,
                    _ => return Sent::Failed(error.into_error()),
                },
            }
        }
    }

    /// The most recently used idle connection that still works; those found closed
    /// (by the instance, while idle) are dropped.
    fn take_reusable(&self) -> Option<Upstream> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut upstream = self.lock().pop()?.upstream;
            // Notices an end of stream that arrived while it sat idle.
            upstream.drive(&mut cx);
            if upstream.is_reusable() {
                return Some(upstream);
            }
        }
    }

    /// Keeps a connection whose last response was read to the end.
    pub(crate) fn give_back(&self, upstream: Upstream) {
        if upstream.connection.is_none() || upstream.sender.is_closed() {
            return;
        }
        self.lock().push(Idle {
            upstream,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for `idle_timeout` or more, and those already closed.
    pub(crate) fn evict_idle(&self, now: Instant, idle_timeout: Duration) {
        let mut cx = Context::from_waker(Waker::noop());
        self.lock().retain_mut(|idle| {
            idle.upstream.drive(&mut cx);
            idle.upstream.connection.is_some()
                && now.saturating_duration_since(idle.since) < idle_timeout
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens a connection (driven by its holder, see [`Upstream::drive`]).
async fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<Upstream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    // Small requests and responses: never wait for Nagle.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    Ok(Upstream {
        sender,
        connection: Some(Box::new(connection)),
    })
}
