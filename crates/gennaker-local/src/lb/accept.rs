//! One listening socket: accept, apply the allow-list, serve HTTP/1.1 (keep-alive) or
//! HTTP/2 on each connection, and on stop close gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::core::ListenerCore;
use super::proxy;

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until `stop`, then lets open connections finish their
/// requests (at most the configured drain timeout) and closes them.
pub(crate) async fn serve(core: Arc<ListenerCore>, listener: TcpListener, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let mut connections = Connections {
        core: &core,
        builder: &builder,
        graceful: &graceful,
        tasks: JoinSet::new(),
    };
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => connections.serve(stream, peer),
                Err(error) => {
                    tracing::warn!(load_balancer = %core.name, %error, "accept failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
            // Reaps ended connections, so the set holds only open ones.
            Some(_) = connections.tasks.join_next() => {}
        }
    }
    // Connections the kernel has already completed would be reset when the socket
    // closes: serve them too.
    {
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Ok((stream, peer))) = listener.poll_accept(&mut cx) {
            connections.serve(stream, peer);
        }
    }
    drop(listener);
    let Connections { mut tasks, .. } = connections;
    let drain_timeout = core.config.drain_timeout;
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            load_balancer = %core.name,
            seconds = drain_timeout.as_secs_f64(),
            "connections still busy after the drain timeout; closing them"
        );
    }
    // Closes whatever is still open (nothing after a graceful shutdown that finished).
    tasks.shutdown().await;
}

/// What serving one accepted connection needs.
struct Connections<'a> {
    core: &'a Arc<ListenerCore>,
    builder: &'a auto::Builder<TokioExecutor>,
    graceful: &'a GracefulShutdown,
    /// The open connections' tasks, aborted if they outlast the drain timeout. Owning
    /// them (instead of each task also waiting on a "close now" signal) keeps every
    /// wake-up of a busy connection down to polling the connection itself.
    tasks: JoinSet<()>,
}

impl Connections<'_> {
    fn serve(&mut self, stream: TcpStream, peer: SocketAddr) {
        let ip = peer.ip().to_canonical();
        if !self.core.allows(ip) {
            self.core.count_refused();
            tracing::debug!(load_balancer = %self.core.name, %peer, "connection refused by the allow-list");
            return;
        }
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Ok(client_ip) = HeaderValue::try_from(ip.to_string()) else {
            return;
        };
        let core = Arc::clone(self.core);
        let service = service_fn(move |request| {
            proxy::forward(Arc::clone(&core), client_ip.clone(), request)
        });
        let connection = self.graceful.watch(
            self.builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        self.tasks.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "client connection ended with an error");
            }
        });
    }
}
