//! How requests are spread: weights, least load, ejection, retries, no backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gennaker_local::lb::{Backend, BackendGroup, LbError, LoadBalancers};
use http::StatusCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::support::*;

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
