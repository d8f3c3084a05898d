//! Forwarding one request: pick an instance, rewrite the headers a proxy must, stream
//! the request and the response, retry only where nothing reached an instance.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{BodySlot, InFlight, ResponseBody, Streaming, UpstreamBody, worth_prefetching};
use super::core::ListenerCore;
use super::metrics::Class;
use super::pool::{RequestHead, Sent};
use super::table::{BackendState, Table};

/// Attempts per request: the first, and retries after connect failures.
const MAX_ATTEMPTS: usize = 3;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers about one connection, not the message (RFC 9110 §7.6.1), which a proxy
/// must not forward.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Serves one client request through the listener `core`; `client_ip` is the
/// client's address, ready for `x-forwarded-for`.
pub(crate) async fn forward(
    core: Arc<ListenerCore>,
    client_ip: HeaderValue,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut headers = parts.headers;
    prepare_request_headers(&mut headers, &parts.uri, &client_ip);
    // Without a Host (an HTTP/1.0 client), each attempt names its instance.
    let host_from_instance = !headers.contains_key(header::HOST);
    let target = parts
        .uri
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let body = BodySlot::new(body);
    let mut head = RequestHead {
        method: parts.method,
        target,
        headers,
    };
    let table = core.table.load_full();
    let policy = core.ejection_policy();
    let mut tried: Vec<Arc<BackendState>> = Vec::new();
    // The last failed attempt, counted as an error if no retry succeeds.
    let mut failed_attempt: Option<InFlight> = None;

    for attempt in 0..MAX_ATTEMPTS {
        let now_ms = if attempt == 0 {
            core.ms_at(started)
        } else {
            core.now_ms()
        };
        let Some((group, backend)) = table.pick(now_ms, &tried) else {
            break;
        };
        let mut in_flight = InFlight::start(&group.metrics, backend, started);
        if host_from_instance {
            head.headers.insert(header::HOST, backend.host.clone());
        }
        match backend
            .pool
            .send(backend.address, core.connect, &head, body.as_ref())
            .await
        {
            Sent::Response(response, upstream) => {
                let class = Class::of(response.status);
                Table::report(group, backend, class == Class::ServerError, policy, now_ms);
                in_flight.answered(class);
                if let Some(previous) = failed_attempt.take() {
                    previous.abandon();
                }
                let mut headers = response.headers;
                remove_hop_by_hop(&mut headers);
                let upstream = UpstreamBody::new(upstream, response.framing, response.keep_alive);
                let prefetch = worth_prefetching(response.framing);
                let body = if upstream.is_end() {
                    if let Some(connection) = upstream.into_reusable() {
                        backend.pool.give_back(connection);
                    }
                    drop(in_flight);
                    ResponseBody::Local(None)
                } else {
                    let streaming = Streaming::new(upstream, Arc::clone(backend), in_flight);
                    if prefetch {
                        match streaming.prefetch().await {
                            Ok(body) => body,
                            Err(error) => {
                                // The head came, then the instance broke the response.
                                tracing::debug!(load_balancer = %core.name, instance = %backend.instance_id, %error, "response body failed");
                                return Ok(local_response(
                                    StatusCode::BAD_GATEWAY,
                                    &core.unreachable_body,
                                ));
                            }
                        }
                    } else {
                        ResponseBody::Upstream(Box::new(streaming))
                    }
                };
                let mut client_response = Response::new(body);
                *client_response.status_mut() = response.status;
                *client_response.version_mut() = response.version;
                *client_response.headers_mut() = headers;
                return Ok(client_response);
            }
            Sent::ConnectFailed(error) => {
                tracing::debug!(
                    load_balancer = %core.name,
                    instance = %backend.instance_id,
                    address = %backend.address,
                    %error,
                    "cannot connect to instance; trying another"
                );
                Table::report(group, backend, true, policy, now_ms);
                if let Some(previous) = failed_attempt.replace(in_flight) {
                    previous.abandon();
                }
                tried.push(Arc::clone(backend));
            }
            Sent::Failed(error) => {
                // The request may have reached the instance: never retried.
                tracing::debug!(
                    load_balancer = %core.name,
                    instance = %backend.instance_id,
                    %error,
                    "request to instance failed"
                );
                Table::report(group, backend, true, policy, now_ms);
                if let Some(previous) = failed_attempt.take() {
                    previous.abandon();
                }
                drop(in_flight);
                return Ok(local_response(
                    StatusCode::BAD_GATEWAY,
                    &core.unreachable_body,
                ));
            }
        }
    }
    if tried.is_empty() {
        core.count_unrouted();
        return Ok(local_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &core.no_backend_body,
        ));
    }
    drop(failed_attempt);
    Ok(local_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &core.unreachable_body,
    ))
}

/// Strips hop-by-hop headers, keeps `Host` (adding it from an HTTP/2 `:authority`),
/// appends the client to `x-forwarded-for` and sets `x-forwarded-proto`.
fn prepare_request_headers(headers: &mut HeaderMap, uri: &Uri, client_ip: &HeaderValue) {
    remove_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let forwarded_for = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined: Vec<u8> = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            joined.extend_from_slice(value.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(client_ip.as_bytes());
        HeaderValue::from_maybe_shared(Bytes::from(joined)).unwrap_or_else(|_| client_ip.clone())
    } else {
        client_ip.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

/// Removes the standard hop-by-hop headers and those the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the few headers a message has instead of a lookup per name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn local_response(status: StatusCode, message: &Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Local(Some(message.clone())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_forwarding_headers_come() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("shop.example"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.1.1.1"));
        headers.append(&X_FORWARDED_FOR, HeaderValue::from_static("10.2.2.2"));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let uri: Uri = "/cart?x=1".parse().unwrap();
        prepare_request_headers(&mut headers, &uri, &HeaderValue::from_static("127.0.0.1"));
        assert!(headers.get(header::CONNECTION).is_none());
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(headers[header::HOST], "shop.example");
        assert_eq!(headers[&X_FORWARDED_FOR], "10.1.1.1, 10.2.2.2, 127.0.0.1");
        assert_eq!(headers.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn an_http2_authority_becomes_the_host() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "http://shop.example:8080/".parse().unwrap();
        prepare_request_headers(&mut headers, &uri, &HeaderValue::from_static("::1"));
        assert_eq!(headers[header::HOST], "shop.example:8080");
        assert_eq!(headers[&X_FORWARDED_FOR], "::1");
    }
}
