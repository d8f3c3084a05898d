//! In-test backends that count what they see and do what the test tells them, and the
//! clients and load loops in front of the balancer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gennaker_local::lb::{Backend, BackendGroup, LbConfig, ListenerSpec};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long any wait for a condition may take before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A backend that counts what it sees and does what the test tells it to.
pub(crate) struct TestBackend {
    pub(crate) id: String,
    pub(crate) address: SocketAddr,
    pub(crate) requests: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) status: AtomicU16,
    pub(crate) delay_ms: AtomicU64,
    /// Requests to `/hold` wait until this turns true.
    pub(crate) release: watch::Sender<bool>,
    pub(crate) last_headers: Mutex<Option<HeaderMap>>,
    pub(crate) hosts: Mutex<HashMap<String, u64>>,
}

impl TestBackend {
    pub(crate) fn backend(&self) -> Backend {
        Backend {
            instance_id: self.id.clone(),
            address: self.address,
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

pub(crate) async fn spawn_backend(id: &str) -> Arc<TestBackend> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = Arc::new(TestBackend {
        id: id.to_owned(),
        address: listener.local_addr().unwrap(),
        requests: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        status: AtomicU16::new(200),
        delay_ms: AtomicU64::new(0),
        release: watch::channel(false).0,
        last_headers: Mutex::new(None),
        hosts: Mutex::new(HashMap::new()),
    });
    let serving = Arc::clone(&backend);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            serving.connections.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&serving);
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(Arc::clone(&state), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    backend
}

pub(crate) async fn answer(
    backend: Arc<TestBackend>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    if request.uri().path() == "/stream" {
        // A response of unknown length: "first" now, "second" once released.
        let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
        let mut released = backend.release.subscribe();
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from_static(b"first")).await;
            let _ = released.wait_for(|r| *r).await;
            let _ = sender.send_data(Bytes::from_static(b"second")).await;
        });
        return Ok(Response::new(body.boxed()));
    }
    backend.requests.fetch_add(1, Ordering::SeqCst);
    backend.in_flight.fetch_add(1, Ordering::SeqCst);
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    *backend.hosts.lock().unwrap().entry(host).or_default() += 1;
    *backend.last_headers.lock().unwrap() = Some(request.headers().clone());
    let path = request.uri().path().to_owned();
    if path == "/hold" {
        let mut released = backend.release.subscribe();
        let _ = released.wait_for(|r| *r).await;
    }
    let delay = backend.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let length = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => usize::MAX,
    };
    let status = if path == "/missing" {
        404
    } else {
        backend.status.load(Ordering::SeqCst)
    };
    let mut response =
        Response::new(Full::new(Bytes::from(format!("{} {length}", backend.id))).boxed());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    backend.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(response)
}

pub(crate) fn test_config() -> LbConfig {
    LbConfig {
        ejection_base: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(20),
        address_handover: Duration::from_secs(2),
        ..LbConfig::default()
    }
}

pub(crate) fn spec(name: &str) -> ListenerSpec {
    ListenerSpec {
        name: name.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_cidrs: Vec::new(),
        ejection_failures: 3,
    }
}

pub(crate) fn group(name: &str, weight: u32, backends: &[&Arc<TestBackend>]) -> BackendGroup {
    BackendGroup {
        server_group: name.to_owned(),
        weight,
        backends: backends.iter().map(|b| b.backend()).collect(),
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// A body-less GET; the status and the answering backend's body.
pub(crate) async fn get(
    client: &reqwest::Client,
    lb: SocketAddr,
    path: &str,
) -> Result<(StatusCode, String), reqwest::Error> {
    let response = client.get(format!("http://{lb}{path}")).send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// An address nothing listens on.
pub(crate) fn dead_address() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `workers` request loops against the address in `target` until `stop` or
/// `max_each` requests each; returns (successes, failures as text).
pub(crate) fn load(
    target: Arc<RwLock<SocketAddr>>,
    workers: usize,
    max_each: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let target = Arc::clone(&target);
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let client = client();
                let deadline = Instant::now() + PATIENCE;
                let (mut ok, mut failed) = (0u64, Vec::new());
                for _ in 0..max_each {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let lb = *target.read().unwrap();
                    match get(&client, lb, "/").await {
                        Ok((StatusCode::OK, _)) => ok += 1,
                        Ok((status, body)) => failed.push(format!("{status}: {body}")),
                        Err(error) => failed.push(format!("{error:?}")),
                    }
                }
                (ok, failed)
            }));
        }
        let (mut ok, mut failed) = (0, Vec::new());
        for task in tasks {
            let (o, f) = task.await.unwrap();
            ok += o;
            failed.extend(f);
        }
        (ok, failed)
    })
}
