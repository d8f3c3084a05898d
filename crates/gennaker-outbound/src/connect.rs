//! The policy inside the HTTP client: a resolver that drops refused addresses, and a
//! connector layer that checks the remote address of connections the resolver never
//! saw (URLs with an address for a host, which reqwest connects to directly).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tower::{Layer, Service};

use crate::error::OutboundError;
use crate::policy::OutboundPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// Set while a connection is being made: the resolver marks it when it resolved
    /// the connection's host (and so already checked its addresses).
    static RESOLVED: Arc<AtomicBool>;
}

/// Resolves names with the system resolver and keeps only the addresses the policy
/// allows (all of them for a host name the operator listed).
pub(crate) struct PolicyResolver {
    policy: OutboundPolicy,
}

impl PolicyResolver {
    pub(crate) fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        // Outside a connection's scope (none today) there is nothing to mark.
        let _ = RESOLVED.try_with(|resolved| resolved.store(true, Ordering::SeqCst));
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> BoxError {
                    Box::new(OutboundError::Resolve {
                        host: host.clone(),
                        reason: e.to_string(),
                    })
                })?
                .collect();
            if policy.allows_host(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| match policy.check_address(address.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused.get_or_insert(refusal);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let error = match refused {
                    Some(refusal) => OutboundError::ForbiddenName { host, refusal },
                    None => OutboundError::Resolve {
                        host,
                        reason: "no address found".to_owned(),
                    },
                };
                return Err(Box::new(error) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Wraps reqwest's connector with [`PeerCheck`].
#[derive(Clone)]
pub(crate) struct PeerCheckLayer {
    policy: OutboundPolicy,
}

impl PeerCheckLayer {
    pub(crate) fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for PeerCheckLayer {
    type Service = PeerCheck<S>;

    fn layer(&self, inner: S) -> PeerCheck<S> {
        PeerCheck {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Checks the remote address of each new connection the resolver did not choose; a
/// refused one is dropped before the request is written to it.
#[derive(Clone)]
pub(crate) struct PeerCheck<S> {
    inner: S,
    policy: OutboundPolicy,
}

impl<S, R, C> Service<R> for PeerCheck<S>
where
    S: Service<R, Response = C, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    C: Connection + Send + 'static,
{
    type Response = C;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The service polled ready is the one to call; its clone waits for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let resolved = Arc::new(AtomicBool::new(false));
            let connection = RESOLVED
                .scope(resolved.clone(), async move { inner.call(request).await })
                .await?;
            if resolved.load(Ordering::SeqCst) {
                return Ok(connection);
            }
            let mut extras = http::Extensions::new();
            connection.connected().get_extras(&mut extras);
            let Some(info) = extras.get::<HttpInfo>() else {
                return Err(Box::new(OutboundError::UnknownPeer) as BoxError);
            };
            policy
                .check_address(info.remote_addr().ip())
                .map_err(|refusal| {
                    Box::new(OutboundError::ForbiddenPeer { refusal }) as BoxError
                })?;
            Ok(connection)
        })
    }
}
