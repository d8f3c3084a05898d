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
use tokio_util::sync::CancellationToken;

use super::core::ListenerCore;
use super::proxy;

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until `stop`, then lets open connections finish their
/// requests (at most the configured drain timeout) and closes them.
pub(crate) async fn serve(core: Arc<ListenerCore>, listener: TcpListener, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let close_now = CancellationToken::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let connections = Connections {
        core: &core,
        builder: &builder,
        graceful: &graceful,
        close_now: &close_now,
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
        close_now.cancel();
    }
}

/// What serving one accepted connection needs.
struct Connections<'a> {
    core: &'a Arc<ListenerCore>,
    builder: &'a auto::Builder<TokioExecutor>,
    graceful: &'a GracefulShutdown,
    close_now: &'a CancellationToken,
}

impl Connections<'_> {
    fn serve(&self, stream: TcpStream, peer: SocketAddr) {
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
        let close_now = self.close_now.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "client connection ended with an error");
                    }
                }
                () = close_now.cancelled() => {}
            }
        });
    }
}
