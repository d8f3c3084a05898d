//! The policy's client against real HTTP servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use gennaker_outbound::{AddressKind, OutboundError, OutboundPolicy, read_capped, refusal_of};

/// Serves `/ok`, `/big` (10 MB), `/to?u=URL` (a redirect) on 127.0.0.1.
async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/big", get(|| async { vec![b'x'; 10 * 1024 * 1024] }))
        .route(
            "/to",
            get(
                |axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| async move { Redirect::temporary(&q["u"]) },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn refusal(policy: &OutboundPolicy, url: &str) -> OutboundError {
    let error = policy.client().unwrap().get(url).send().await.unwrap_err();
    refusal_of(&error)
        .cloned()
        .unwrap_or_else(|| panic!("not refused by the policy: {error:?}"))
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_by_address_and_by_name() {
    let address = serve().await;
    let policy = OutboundPolicy::default();
    // An address: reqwest connects without resolving; the connection is refused.
    match refusal(&policy, &format!("http://{address}/ok")).await {
        OutboundError::ForbiddenPeer { refusal } => {
            assert_eq!(refusal.kind, Some(AddressKind::Loopback));
        }
        other => panic!("{other:?}"),
    }
    // A name that resolves to 127.0.0.1: refused by the resolver.
    let error = refusal(&policy, &format!("http://localhost:{}/ok", address.port())).await;
    let text = error.to_string();
    assert!(
        text.starts_with("localhost resolves to 127.0.0.1, a loopback address")
            || text.starts_with("localhost resolves to ::1, a loopback address"),
        "{text}"
    );
    assert!(text.contains("allow = [\"localhost\"]"), "{text}");
    // 0.0.0.0 reaches this machine on Linux: refused (the connection lands on 127.0.0.1).
    let error = refusal(&policy, &format!("http://0.0.0.0:{}/ok", address.port())).await;
    assert!(
        error.to_string().contains("127.0.0.1, a loopback address"),
        "{error}"
    );
}

#[tokio::test]
async fn the_allow_list_lets_loopback_through_by_network_or_by_name() {
    let address = serve().await;
    for allow in ["127.0.0.1/32", "localhost"] {
        let policy = OutboundPolicy::allowing(&[allow]).unwrap();
        let host = if allow == "localhost" {
            format!("localhost:{}", address.port())
        } else {
            address.to_string()
        };
        let response = policy
            .client()
            .unwrap()
            .get(format!("http://{host}/ok"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{allow}: {e:?}"));
        assert_eq!(response.text().await.unwrap(), "fine");
    }
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let address = serve().await;
    // localhost is allowed by name; the redirect goes to 127.0.0.1 by address, which is not.
    let policy = OutboundPolicy::allowing(&["localhost"]).unwrap();
    let target = format!("http://127.0.0.1:{}/ok", address.port());
    let url = format!("http://localhost:{}/to?u={target}", address.port());
    match refusal(&policy, &url).await {
        OutboundError::ForbiddenAddress { url, refusal } => {
            assert_eq!(url, target);
            assert_eq!(refusal.kind, Some(AddressKind::Loopback));
        }
        other => panic!("{other:?}"),
    }
    // From an allowed address to the metadata service.
    let policy = OutboundPolicy::allowing(&["127.0.0.1/32"]).unwrap();
    let to_metadata = format!("http://{address}/to?u=http://169.254.169.254/latest/meta-data/");
    match refusal(&policy, &to_metadata).await {
        OutboundError::ForbiddenAddress { refusal, .. } => {
            assert_eq!(refusal.kind, Some(AddressKind::CloudMetadata));
        }
        other => panic!("{other:?}"),
    }
    // An allowed redirect is followed.
    let fine = format!("http://{address}/to?u=http://{address}/ok");
    let response = policy.client().unwrap().get(fine).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn bodies_are_read_up_to_the_cap() {
    let address = serve().await;
    let policy = OutboundPolicy::allowing(&["127.0.0.1"]).unwrap();
    let client = policy.client().unwrap();
    let big = client
        .get(format!("http://{address}/big"))
        .send()
        .await
        .unwrap();
    let body = read_capped(big, policy.max_response_bytes()).await.unwrap();
    assert!(body.truncated);
    assert_eq!(body.bytes.len(), 1 << 20);
    let small = client
        .get(format!("http://{address}/ok"))
        .send()
        .await
        .unwrap();
    let body = read_capped(small, 4).await.unwrap();
    assert_eq!(
        (body.bytes.as_slice(), body.truncated),
        (&b"fine"[..], false)
    );
}
