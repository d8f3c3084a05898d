//! Keep-alive HTTP/1.1 connections to one instance, built directly on hyper's
//! connection API: a request takes an idle connection or opens one, and the connection
//! comes back when its response body has been read to the end.
//!
//! Compared with a general-purpose pooled client this skips, per request, a keyed
//! lookup, a checkout future racing a connect, and a task spawned to return the
//! connection; the pool hangs off the instance it connects to, so it goes away with it.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::RequestBody;

/// The handle requests are sent through on one upstream connection.
pub(crate) type Sender = SendRequest<RequestBody>;

/// Fresh connections tried for one request after pooled ones turned out closed.
const FRESH_CONNECTIONS: usize = 2;

/// How one request to an instance ended.
pub(crate) enum Sent {
    /// The response head, and the connection to give back once its body is read.
    Response(Response<Incoming>, Sender),
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
    sender: Sender,
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
            let mut sender = match self.take_ready().await {
                Some(sender) => sender,
                None => match connect(address, settings.connect_timeout).await {
                    Ok(sender) => {
                        fresh += 1;
                        sender
                    }
                    Err(error) => return Sent::ConnectFailed(error, request),
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Sent::Response(response, sender),
                Err(mut error) => match error.take_message() {
                    // The connection closed before the request was written: nothing
                    // reached the instance, so another connection may carry it.
                    Some(unsent) if fresh < FRESH_CONNECTIONS => request = unsent,
                    _ => return Sent::Failed(error.into_error()),
                },
            }
        }
    }

    /// The most recently used idle connection that still works (waiting, if needed,
    /// for it to finish reading the end of its previous response).
    async fn take_ready(&self) -> Option<Sender> {
        loop {
            let mut sender = self.lock().pop()?.sender;
            if sender.is_ready() {
                return Some(sender);
            }
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Keeps a connection whose last response was read to the end.
    pub(crate) fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        self.lock().push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Closes the connections idle for `idle_timeout` or more, and those already closed.
    pub(crate) fn evict_idle(&self, now: Instant, idle_timeout: Duration) {
        self.lock().retain(|idle| {
            !idle.sender.is_closed() && now.saturating_duration_since(idle.since) < idle_timeout
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens a connection and starts the task that drives it.
async fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<Sender> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    // Small requests and responses: never wait for Nagle.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%address, %error, "instance connection ended with an error");
        }
    });
    Ok(sender)
}
