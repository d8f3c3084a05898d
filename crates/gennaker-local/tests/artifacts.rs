//! Artifact downloads over real HTTP on 127.0.0.1: streamed into the cache, never held
//! whole, never cached when cut off, shared between concurrent fetches, and never in
//! the way of another deploy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use gennaker_deploy::{Capacity, DeployError, Provider};
use gennaker_local::artifacts::ArtifactCache;
use gennaker_local::{ArtifactSource, LocalError};
use gennaker_store::testing::TestBackend;
use http::header::CONTENT_LENGTH;
use http_body_util::channel::{Channel, Sender};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::*;
use tokio::sync::{Notify, mpsc};

/// Fails a test whose awaited step hangs instead of letting it run forever; what is
/// proven is proven by the order of events, never by this bound.
const HANG: Duration = Duration::from_secs(60);

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A response whose body the test feeds through the sender, announcing `length` when
/// given.
fn fed(length: Option<usize>) -> (Sender<Bytes, std::io::Error>, Response) {
    let (sender, body) = Channel::<Bytes, std::io::Error>::new(1);
    let mut response = Response::new(Body::new(body));
    if let Some(length) = length {
        response.headers_mut().insert(CONTENT_LENGTH, length.into());
    }
    (sender, response)
}

/// `/artifact`: sends the first half of `bytes`, reports the request on `started`, then
/// sends the rest once `gate` is notified. Counts requests.
struct Gated {
    address: SocketAddr,
    started: mpsc::UnboundedReceiver<()>,
    gate: Arc<Notify>,
    requests: Arc<AtomicUsize>,
}

async fn gated(bytes: Vec<u8>) -> Gated {
    let (report, started) = mpsc::unbounded_channel();
    let gate = Arc::new(Notify::new());
    let requests = Arc::new(AtomicUsize::new(0));
    let state = (Bytes::from(bytes), report, gate.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/artifact",
        axum::routing::get(move || {
            let (bytes, report, gate, requests) = state.clone();
            async move {
                requests.fetch_add(1, Ordering::SeqCst);
                let (mut sender, response) = fed(Some(bytes.len()));
                tokio::spawn(async move {
                    let half = bytes.len() / 2;
                    sender.send_data(bytes.slice(..half)).await.unwrap();
                    report.send(()).unwrap();
                    gate.notified().await;
                    let _ = sender.send_data(bytes.slice(half..)).await;
                });
                response
            }
        }),
    );
    Gated {
        address: serve(app).await,
        started,
        gate,
        requests,
    }
}

/// A spec running a downloaded artifact with no instance (nothing to start).
fn url_spec(url: String) -> Value {
    json!({"artifact": {"url": url}, "gracePeriodSeconds": 5})
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file in a cache directory (entries and partial downloads alike).
fn cache_files(data: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data.join("artifacts/sha256")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_is_downloaded_once_and_pinned() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let bytes = Arc::new(std::fs::read(demo_app()).unwrap());
    let downloads = Arc::new(AtomicUsize::new(0));
    let served = (bytes.clone(), downloads.clone());
    let app = axum::Router::new().route(
        "/demo-app",
        axum::routing::get(move || {
            let (bytes, downloads) = served.clone();
            async move {
                downloads.fetch_add(1, Ordering::SeqCst);
                bytes.as_ref().clone()
            }
        }),
    );
    let address = serve(app).await;

    let provider = env.provider().await;
    let spec = json!({
        "artifact": {"url": format!("http://{address}/demo-app")},
        "args": ["--version", "downloaded"],
        "gracePeriodSeconds": 5
    });
    provider
        .create_server_group(request("dl", "s1", Capacity::fixed(1), spec.clone()))
        .await
        .unwrap();
    let group = wait_for(&provider, "dl-prod-v000", "up", |g| g.up_instances() == 1).await;
    let body = get_json(&format!(
        "http://{}/",
        group.instances[0].address.as_deref().unwrap()
    ))
    .await;
    assert_eq!(body["version"], "downloaded");
    let pinned = provider.artifact("local", "dl-prod-v000").unwrap();
    assert_eq!(pinned.sha256, sha256_of(&demo_app()));
    // Repeating the create (same origin) downloads nothing more.
    provider
        .create_server_group(request("dl", "s1", Capacity::fixed(1), spec))
        .await
        .unwrap();
    assert_eq!(downloads.load(Ordering::SeqCst), 1);
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_download_does_not_hold_up_another_deploy() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let a_bytes = b"#!/bin/sh\necho artifact A\n".repeat(1000);
    let mut a = gated(a_bytes.clone()).await;
    let b_bytes = b"#!/bin/sh\necho artifact B\n".to_vec();
    let b_served = Bytes::from(b_bytes.clone());
    let b_address = serve(axum::Router::new().route(
        "/artifact",
        axum::routing::get(move || {
            let bytes = b_served.clone();
            async move { bytes }
        }),
    ))
    .await;
    let provider = env.provider().await;

    let creating_a = tokio::spawn({
        let provider = provider.clone();
        let spec = url_spec(format!("http://{}/artifact", a.address));
        async move {
            provider
                .create_server_group(request("slow", "s1", Capacity::fixed(0), spec))
                .await
        }
    });
    // A's download has begun and is held mid-body by the gate.
    a.started.recv().await.unwrap();

    let spec = url_spec(format!("http://{b_address}/artifact"));
    let b = tokio::time::timeout(
        HANG,
        provider.create_server_group(request("fast", "s1", Capacity::fixed(0), spec)),
    )
    .await
    .expect("creating B waited for A's download")
    .unwrap();
    assert_eq!(
        provider.artifact("local", &b.name).unwrap().sha256,
        sha256_hex(&b_bytes)
    );
    // B is done while A still downloads: A's body cannot have ended, the gate is shut.
    assert!(!creating_a.is_finished());
    assert!(provider.server_groups("slow").await.unwrap().is_empty());

    a.gate.notify_one();
    let a_group = creating_a.await.unwrap().unwrap();
    assert_eq!(
        provider.artifact("local", &a_group.name).unwrap().sha256,
        sha256_hex(&a_bytes)
    );
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_off_leaves_no_entry_and_the_next_attempt_succeeds() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let bytes = Bytes::from(b"#!/bin/sh\necho complete\n".repeat(4000));
    let requests = Arc::new(AtomicUsize::new(0));
    let state = (bytes.clone(), requests.clone());
    let address = serve(axum::Router::new().route(
        "/artifact",
        axum::routing::get(move || {
            let (bytes, requests) = state.clone();
            async move {
                let first = requests.fetch_add(1, Ordering::SeqCst) == 0;
                let (mut sender, response) = fed(Some(bytes.len()));
                tokio::spawn(async move {
                    let half = bytes.len() / 2;
                    if first {
                        // Half the announced body, then the connection breaks.
                        let _ = sender.send_data(bytes.slice(..half)).await;
                        sender.abort(std::io::Error::other("cut off"));
                    } else {
                        let _ = sender.send_data(bytes.slice(..half)).await;
                        let _ = sender.send_data(bytes.slice(half..)).await;
                    }
                });
                response
            }
        }),
    ))
    .await;
    let provider = env.provider().await;
    let create = || {
        let spec = url_spec(format!("http://{address}/artifact"));
        provider.create_server_group(request("cut", "s1", Capacity::fixed(0), spec))
    };

    let error = create().await.unwrap_err();
    assert!(
        matches!(&error, DeployError::Unavailable(m) if m.contains("artifact")),
        "{error:?}"
    );
    assert_eq!(cache_files(&env.data), Vec::<String>::new());
    assert!(provider.server_groups("cut").await.unwrap().is_empty());

    let group = create().await.unwrap();
    let pinned = provider.artifact("local", &group.name).unwrap();
    assert_eq!(pinned.sha256, sha256_hex(&bytes));
    assert_eq!(cache_files(&env.data), std::slice::from_ref(&pinned.sha256));
    assert_eq!(std::fs::read(&pinned.path).unwrap(), bytes.as_ref());
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    provider.destroy_all().await.unwrap();
}

/// How a streamed body ended on the server's side.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The client went away after this many bytes had been handed to the connection.
    ClientGone(usize),
    /// Every byte was sent.
    Complete,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_over_the_size_limit_is_refused_while_it_streams() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 64 * 1024 * 1024;
    const LIMIT: u64 = 1024 * 1024;
    // `/announced` declares its length up front; `/unannounced` streams without one.
    let (report, mut ended) = mpsc::unbounded_channel::<Ended>();
    let route = |announced: bool| {
        let report = report.clone();
        axum::routing::get(move || {
            let report = report.clone();
            async move {
                let (mut sender, response) = fed(announced.then_some(TOTAL));
                tokio::spawn(async move {
                    let chunk = Bytes::from(vec![b'x'; CHUNK]);
                    let mut sent = 0;
                    while sent < TOTAL {
                        if sender.send_data(chunk.clone()).await.is_err() {
                            report.send(Ended::ClientGone(sent)).unwrap();
                            return;
                        }
                        sent += CHUNK;
                    }
                    report.send(Ended::Complete).unwrap();
                });
                response
            }
        })
    };
    let address = serve(
        axum::Router::new()
            .route("/announced", route(true))
            .route("/unannounced", route(false)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path()).with_max_bytes(LIMIT);

    for path in ["announced", "unannounced"] {
        let source = ArtifactSource::Url(format!("http://{address}/{path}"));
        let error = tokio::time::timeout(HANG, cache.fetch(&source, &http()))
            .await
            .expect("the fetch read on past the limit")
            .unwrap_err();
        assert!(
            matches!(error, LocalError::ArtifactTooLarge { limit: LIMIT, .. }),
            "{path}: {error:?}"
        );
        assert!(
            error.to_string().contains("larger than the limit"),
            "{error}"
        );
        // The server was still sending when the fetch gave up: most of the body was
        // never read, let alone held.
        match ended.recv().await.unwrap() {
            Ended::ClientGone(sent) => assert!(sent < TOTAL / 2, "{path}: {sent} bytes sent"),
            Ended::Complete => panic!("{path}: the whole body was read"),
        }
        assert_eq!(cache_files(dir.path()), Vec::<String>::new(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_takes_too_long_is_refused_for_good() {
    // Half the body, then nothing: the gate is never opened.
    let served = gated(b"#!/bin/sh\n".repeat(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path()).with_fetch_timeout(Duration::from_secs(1));
    let url = format!("http://{}/artifact", served.address);
    let error = tokio::time::timeout(
        HANG,
        cache.fetch(&ArtifactSource::Url(url.clone()), &http()),
    )
    .await
    .expect("the download was not cut off")
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "artifact url '{url}' did not download within 1s: it is refused ([local] artifact_fetch_timeout_seconds in gennaker.toml)"
        )
    );
    // Not worth a retry: the deploy stage fails for good.
    assert!(matches!(DeployError::from(error), DeployError::Invalid(_)));
    assert_eq!(cache_files(dir.path()), Vec::<String>::new());
    assert_eq!(served.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_of_one_url_share_one_download() {
    let bytes = b"#!/bin/sh\necho shared\n".repeat(1000);
    let mut server = gated(bytes.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::new(dir.path());
    let source = ArtifactSource::Url(format!("http://{}/artifact", server.address));

    let first = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move { cache.fetch(&source, &http()).await }
    });
    server.started.recv().await.unwrap();
    let client = http();
    let mut second = Box::pin(cache.fetch(&source, &client));
    // Polled once, the second fetch joins the download in progress; it cannot finish
    // before that one does (the gate holds the body).
    tokio::select! {
        biased;
        _ = &mut second => panic!("the second fetch finished before the download"),
        () = std::future::ready(()) => {}
    }
    server.gate.notify_one();
    let first = first.await.unwrap().unwrap();
    let second = second.await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.sha256, sha256_hex(&bytes));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(cache_files(dir.path()), std::slice::from_ref(&first.sha256));

    // None in progress any more: a later fetch reads the source anew.
    let later = tokio::spawn({
        let (cache, source) = (cache.clone(), source.clone());
        async move { cache.fetch(&source, &http()).await }
    });
    server.started.recv().await.unwrap();
    server.gate.notify_one();
    assert_eq!(later.await.unwrap().unwrap(), first);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}
