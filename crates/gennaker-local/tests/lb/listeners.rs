//! What a listener does besides spreading: allow lists, metrics, connection reuse,
//! headers and streamed bodies, the traffic series, shutdown.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gennaker_local::lb::{LbConfig, LbError, ListenerSpec, LoadBalancers};
use http::StatusCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::support::*;

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
