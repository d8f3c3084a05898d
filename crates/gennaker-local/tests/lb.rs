//! The built-in load balancer over real HTTP on 127.0.0.1: tiny hyper backends spawned
//! in-test, reqwest clients in front.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gennaker_local::lb::{Backend, BackendGroup, LbConfig, LbError, ListenerSpec, LoadBalancers};
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
use tokio_util::sync::CancellationToken;

/// How long any wait for a condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// A backend that counts what it sees and does what the test tells it to.
struct TestBackend {
    id: String,
    address: SocketAddr,
    requests: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
    status: AtomicU16,
    delay_ms: AtomicU64,
    /// Requests to `/hold` wait until this turns true.
    release: watch::Sender<bool>,
    last_headers: Mutex<Option<HeaderMap>>,
    hosts: Mutex<HashMap<String, u64>>,
}

impl TestBackend {
    fn backend(&self) -> Backend {
        Backend {
            instance_id: self.id.clone(),
            address: self.address,
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn spawn_backend(id: &str) -> Arc<TestBackend> {
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

async fn answer(
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

fn test_config() -> LbConfig {
    LbConfig {
        ejection_base: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(20),
        address_handover: Duration::from_secs(2),
        ..LbConfig::default()
    }
}

fn spec(name: &str) -> ListenerSpec {
    ListenerSpec {
        name: name.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_cidrs: Vec::new(),
        ejection_failures: 3,
    }
}

fn group(name: &str, weight: u32, backends: &[&Arc<TestBackend>]) -> BackendGroup {
    BackendGroup {
        server_group: name.to_owned(),
        weight,
        backends: backends.iter().map(|b| b.backend()).collect(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// A body-less GET; the status and the answering backend's body.
async fn get(
    client: &reqwest::Client,
    lb: SocketAddr,
    path: &str,
) -> Result<(StatusCode, String), reqwest::Error> {
    let response = client.get(format!("http://{lb}{path}")).send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// An address nothing listens on.
fn dead_address() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `workers` request loops against the address in `target` until `stop` or
/// `max_each` requests each; returns (successes, failures as text).
fn load(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_between_groups_by_weight() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let (a, b) = (spawn_backend("a").await, spawn_backend("b").await);
    let lb = lbs.upsert(spec("split")).await.unwrap();
    lbs.set_backends(
        "split",
        vec![group("v001", 80, &[&a]), group("v002", 20, &[&b])],
    )
    .unwrap();
    let (ok, failed) = load(
        Arc::new(RwLock::new(lb)),
        4,
        250,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ok, 1000);
    assert_eq!(a.requests() + b.requests(), 1000);
    assert!(
        (770..=830).contains(&a.requests()),
        "v001 got {} of 1000 at weight 80/100",
        a.requests()
    );
    assert_eq!(lbs.weights("split").unwrap()["v002"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slow_instance_gets_fewer_requests() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let (slow, fast) = (spawn_backend("slow").await, spawn_backend("fast").await);
    slow.delay_ms.store(200, Ordering::SeqCst);
    let lb = lbs.upsert(spec("least")).await.unwrap();
    lbs.set_backends("least", vec![group("v001", 1, &[&slow, &fast])])
        .unwrap();
    let (ok, failed) = load(
        Arc::new(RwLock::new(lb)),
        8,
        25,
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(ok, 200);
    assert!(
        slow.requests() * 3 < fast.requests(),
        "slow {} vs fast {}",
        slow.requests(),
        fast.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_an_instance_until_the_period_ends() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let (bad, good) = (spawn_backend("bad").await, spawn_backend("good").await);
    bad.status.store(500, Ordering::SeqCst);
    let lb = lbs.upsert(spec("eject")).await.unwrap();
    lbs.set_backends("eject", vec![group("v001", 1, &[&bad, &good])])
        .unwrap();
    let client = client();
    let mut metrics = String::new();
    for _ in 0..50 {
        get(&client, lb, "/").await.unwrap();
        metrics.clear();
        lbs.encode_metrics(&mut metrics);
        if metrics.contains(
            "gennaker_lb_ejections_total{load_balancer=\"eject\",server_group=\"v001\"} 1",
        ) {
            break;
        }
    }
    assert_eq!(
        bad.requests(),
        3,
        "ejected after exactly 3 failures in a row"
    );
    // Ejected for 5 s: the next requests all go to the good one.
    for _ in 0..10 {
        let (status, body) = get(&client, lb, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good 0"));
    }
    assert_eq!(bad.requests(), 3);
    let stats = lbs.stats("eject").unwrap();
    assert_eq!(stats[0].by_class["5xx"], 3);

    // Healthy again: it takes traffic once the ejection is over.
    bad.status.store(200, Ordering::SeqCst);
    let deadline = Instant::now() + PATIENCE;
    while bad.requests() == 3 {
        assert!(
            Instant::now() < deadline,
            "the ejected instance never came back"
        );
        let (status, _) = get(&client, lb, "/").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_another_instance() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let live = spawn_backend("live").await;
    let dead = |id: &str| Backend {
        instance_id: id.to_owned(),
        address: dead_address(),
    };
    let lb = lbs.upsert(spec("retry")).await.unwrap();
    lbs.set_backends(
        "retry",
        vec![
            BackendGroup {
                server_group: "v001".to_owned(),
                weight: 1,
                backends: vec![dead("v001-0"), live.backend()],
            },
            BackendGroup {
                server_group: "v002".to_owned(),
                weight: 1,
                // Alone in its group: never ejected, so every second request tries it.
                backends: vec![dead("v002-0")],
            },
        ],
    )
    .unwrap();
    let client = client();
    for i in 0..40 {
        let body = format!("payload {i}");
        let response = client
            .post(format!("http://{lb}/orders"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The body survived the failed attempts.
        assert_eq!(
            response.text().await.unwrap(),
            format!("live {}", body.len())
        );
    }
    assert_eq!(live.requests(), 40);
    let stats = lbs.stats("retry").unwrap();
    let errors: u64 = stats.iter().map(|s| s.by_class["error"]).sum();
    assert_eq!(
        errors, 0,
        "retried attempts are not counted as failed requests"
    );
    let mut metrics = String::new();
    lbs.encode_metrics(&mut metrics);
    assert!(
        metrics.contains(
            "gennaker_lb_ejections_total{load_balancer=\"retry\",server_group=\"v001\"} 1"
        )
    );
    assert!(
        metrics.contains(
            "gennaker_lb_ejections_total{load_balancer=\"retry\",server_group=\"v002\"} 0"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_backend_the_answer_is_503() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let lb = lbs.upsert(spec("empty")).await.unwrap();
    let client = client();
    let (status, body) = get(&client, lb, "/").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("'empty'"), "{body}");

    // A group at weight 0 takes no new requests either.
    let idle = spawn_backend("idle").await;
    lbs.set_backends("empty", vec![group("v001", 0, &[&idle])])
        .unwrap();
    let (status, _) = get(&client, lb, "/").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(idle.requests(), 0);
    let mut metrics = String::new();
    lbs.encode_metrics(&mut metrics);
    assert!(metrics.contains("gennaker_lb_unrouted_requests_total{load_balancer=\"empty\"} 2"));

    assert!(matches!(
        lbs.set_backends("nope", Vec::new()),
        Err(LbError::Unknown(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_backends_under_load_fails_no_request() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let (a, b) = (spawn_backend("a").await, spawn_backend("b").await);
    a.delay_ms.store(2, Ordering::SeqCst);
    b.delay_ms.store(2, Ordering::SeqCst);
    let lb = lbs.upsert(spec("swap")).await.unwrap();
    lbs.set_backends("swap", vec![group("v001", 1, &[&a])])
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(Arc::new(RwLock::new(lb)), 4, 500, Arc::clone(&stop));
    for round in 0..60 {
        let table = match round % 3 {
            0 => vec![group("v002", 1, &[&b])],
            1 => vec![group("v001", 1, &[&a]), group("v002", 3, &[&b])],
            _ => vec![group("v001", 1, &[&a])],
        };
        lbs.set_backends("swap", table).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = running.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 0 && a.requests() > 0 && b.requests() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_the_request_in_flight() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let held = spawn_backend("held").await;
    let lb = lbs.upsert(spec("drain")).await.unwrap();
    lbs.set_backends("drain", vec![group("v001", 1, &[&held])])
        .unwrap();
    let slow = tokio::spawn(async move { get(&client(), lb, "/hold").await });
    eventually("the request to reach the backend", || {
        held.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    lbs.set_backends("drain", Vec::new()).unwrap();
    assert!(
        !lbs.drain("drain", "v001", Duration::from_millis(200)).await,
        "a held request is still in flight"
    );
    assert_eq!(lbs.stats("drain").unwrap()[0].in_flight, 1);
    let draining = {
        let lbs = lbs.clone();
        tokio::spawn(async move { lbs.drain("drain", "v001", PATIENCE).await })
    };
    assert!(!draining.is_finished());
    held.release.send_replace(true);
    assert!(draining.await.unwrap(), "drained once the request finished");
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "held 0"));
    assert!(lbs.drain("drain", "unknown-group", Duration::ZERO).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_lets_requests_in_flight_finish() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let held = spawn_backend("held").await;
    let lb = lbs.upsert(spec("gone")).await.unwrap();
    lbs.set_backends("gone", vec![group("v001", 1, &[&held])])
        .unwrap();
    let requests: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(&client(), lb, "/hold").await }))
        .collect();
    eventually("five held requests", || {
        held.in_flight.load(Ordering::SeqCst) == 5
    })
    .await;
    let removing = {
        let lbs = lbs.clone();
        tokio::spawn(async move { lbs.remove("gone").await })
    };
    // It stops accepting at once...
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(lb).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after remove");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!removing.is_finished(), "requests are still in flight");
    // ...and closes once its requests are done.
    held.release.send_replace(true);
    for request in requests {
        let (status, _) = request.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    assert!(removing.await.unwrap());
    assert!(!lbs.remove("gone").await);
    assert!(lbs.stats("gone").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_a_new_address_under_load_fails_no_request() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    a.delay_ms.store(2, Ordering::SeqCst);
    let old = lbs.upsert(spec("move")).await.unwrap();
    lbs.set_backends("move", vec![group("v001", 1, &[&a])])
        .unwrap();
    let target = Arc::new(RwLock::new(old));
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(Arc::clone(&target), 4, 2000, Arc::clone(&stop));
    eventually("load through the old address", || a.requests() > 50).await;

    let moved = lbs.upsert(spec("move")).await.unwrap();
    assert_eq!(moved, old, "the same address changes nothing");
    let new = lbs
        .upsert(ListenerSpec {
            listen: "127.0.0.2:0".parse().unwrap(),
            ..spec("move")
        })
        .await
        .unwrap();
    assert_ne!(new, old);
    *target.write().unwrap() = new;
    let before = a.requests();
    eventually("load through the new address", || {
        a.requests() > before + 100
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = running.await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 150);
    let hosts = a.hosts.lock().unwrap().clone();
    assert!(hosts.contains_key(&old.to_string()) && hosts.contains_key(&new.to_string()));
    assert_eq!(lbs.address("move"), Some(new));
    // The old address stops accepting after the handover.
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(old).await.is_ok() {
        assert!(Instant::now() < deadline, "the old address still accepts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_refuses_other_sources() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs
        .upsert(ListenerSpec {
            allowed_cidrs: vec!["127.0.0.1/32".to_owned()],
            ..spec("fw")
        })
        .await
        .unwrap();
    lbs.set_backends("fw", vec![group("v001", 1, &[&a])])
        .unwrap();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(PATIENCE)
            .local_address(IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (status, _) = get(&from([127, 0, 0, 1]), lb, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(get(&from([127, 0, 0, 2]), lb, "/").await.is_err());
    assert_eq!(a.requests(), 1);

    // Changed in place (same address): now 127.0.0.1 is out too.
    let same = lbs
        .upsert(ListenerSpec {
            allowed_cidrs: vec!["10.0.0.0/8".to_owned()],
            ..spec("fw")
        })
        .await
        .unwrap();
    assert_eq!(same, lb);
    assert!(get(&from([127, 0, 0, 1]), lb, "/").await.is_err());
    let mut metrics = String::new();
    lbs.encode_metrics(&mut metrics);
    assert!(
        metrics.contains("gennaker_lb_refused_connections_total{load_balancer=\"fw\"}"),
        "{metrics}"
    );
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("gennaker_lb_refused_connections_total{load_balancer=\"fw\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 2, "refused {refused}");

    assert!(matches!(
        lbs.upsert(ListenerSpec {
            allowed_cidrs: vec!["10.0.0/8".to_owned()],
            ..spec("fw")
        })
        .await,
        Err(LbError::BadCidr(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_class() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs.upsert(spec("web")).await.unwrap();
    lbs.set_backends("web", vec![group("web-v001", 1, &[&a])])
        .unwrap();
    let client = client();
    for _ in 0..7 {
        assert_eq!(get(&client, lb, "/").await.unwrap().0, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(
            get(&client, lb, "/missing").await.unwrap().0,
            StatusCode::NOT_FOUND
        );
    }
    let expected = [
        "gennaker_lb_requests_total{load_balancer=\"web\",server_group=\"web-v001\",class=\"2xx\"} 7",
        "gennaker_lb_requests_total{load_balancer=\"web\",server_group=\"web-v001\",class=\"4xx\"} 3",
        "gennaker_lb_requests_total{load_balancer=\"web\",server_group=\"web-v001\",class=\"5xx\"} 0",
        "gennaker_lb_request_duration_seconds_count{load_balancer=\"web\",server_group=\"web-v001\"} 10",
        "gennaker_lb_request_duration_seconds_bucket{le=\"+Inf\",load_balancer=\"web\",server_group=\"web-v001\"} 10",
        "gennaker_lb_in_flight{load_balancer=\"web\",server_group=\"web-v001\"} 0",
        "gennaker_lb_ejections_total{load_balancer=\"web\",server_group=\"web-v001\"} 0",
        "gennaker_lb_refused_connections_total{load_balancer=\"web\"} 0",
    ];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut metrics = String::new();
        lbs.encode_metrics(&mut metrics);
        let missing: Vec<_> = expected.iter().filter(|e| !metrics.contains(*e)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing {missing:?} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = lbs.stats("web").unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].server_group, "web-v001");
    assert_eq!(stats[0].by_class["2xx"], 7);
    assert_eq!(stats[0].by_class["4xx"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_backend_connections() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs.upsert(spec("pool")).await.unwrap();
    lbs.set_backends("pool", vec![group("v001", 1, &[&a])])
        .unwrap();
    let client = client();
    for _ in 0..100 {
        assert_eq!(get(&client, lb, "/").await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(a.requests(), 100);
    assert!(
        a.connections.load(Ordering::SeqCst) <= 2,
        "{} connections for 100 sequential requests",
        a.connections.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_bodies_streamed() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs.upsert(spec("headers")).await.unwrap();
    lbs.set_backends("headers", vec![group("v001", 1, &[&a])])
        .unwrap();
    let big = vec![b'x'; 4 * 1024 * 1024];
    let response = client()
        .post(format!("http://{lb}/upload"))
        .header("host", "shop.example")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "a 4194304");
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "shop.example");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert!(seen.get("x-hop").is_none());

    // HTTP/2 from the client: the authority becomes the Host.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(format!("http://{lb}/h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], lb.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_of_unknown_length_streams_through() {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs.upsert(spec("stream")).await.unwrap();
    lbs.set_backends("stream", vec![group("v001", 1, &[&a])])
        .unwrap();
    let mut response = client()
        .get(format!("http://{lb}/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The first chunk arrives while the backend still holds the rest.
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first");
    assert_eq!(lbs.stats("stream").unwrap()[0].in_flight, 1);
    a.release.send_replace(true);
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
    assert!(lbs.drain("stream", "v001", PATIENCE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traffic_series_samples_each_interval() {
    let config = LbConfig {
        sample_interval: Duration::from_millis(100),
        ..test_config()
    };
    let lbs = LoadBalancers::new(config, CancellationToken::new());
    let a = spawn_backend("a").await;
    let lb = lbs.upsert(spec("series")).await.unwrap();
    lbs.set_backends("series", vec![group("v001", 1, &[&a])])
        .unwrap();
    let client = client();
    for _ in 0..5 {
        get(&client, lb, "/").await.unwrap();
    }
    get(&client, lb, "/missing").await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let samples = lbs.traffic_series("series", "v001").unwrap();
        let ok: u64 = samples.iter().map(|s| s.by_class["2xx"]).sum();
        let not_found: u64 = samples.iter().map(|s| s.by_class["4xx"]).sum();
        if ok == 5 && not_found == 1 {
            let busy = samples.iter().find(|s| s.by_class["2xx"] > 0).unwrap();
            assert!(busy.latency_p50.is_some() && busy.latency_p99 >= busy.latency_p50);
            assert!(samples.iter().all(|s| s.window > Duration::ZERO));
            break;
        }
        assert!(Instant::now() < deadline, "samples: {samples:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lbs.traffic_series("series", "v404").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_token_stops_every_listener() {
    let token = CancellationToken::new();
    let lbs = LoadBalancers::new(test_config(), token.clone());
    let a = spawn_backend("a").await;
    let first = lbs.upsert(spec("one")).await.unwrap();
    let second = lbs.upsert(spec("two")).await.unwrap();
    lbs.set_backends("one", vec![group("v001", 1, &[&a])])
        .unwrap();
    assert_eq!(get(&client(), first, "/").await.unwrap().0, StatusCode::OK);
    token.cancel();
    lbs.shutdown().await;
    for address in [first, second] {
        let deadline = Instant::now() + PATIENCE;
        while tokio::net::TcpStream::connect(address).await.is_ok() {
            assert!(Instant::now() < deadline, "{address} still accepts");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(matches!(
        lbs.upsert(spec("three")).await,
        Err(LbError::Bind { .. })
    ));
}
