//! Changing tables, draining, removing and moving listeners while requests run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gennaker_local::lb::{ListenerSpec, LoadBalancers};
use http::StatusCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::support::*;

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
async fn a_request_held_past_the_drain_timeout_is_cut_off() {
    let config = gennaker_local::lb::LbConfig {
        drain_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let lbs = LoadBalancers::new(config, CancellationToken::new());
    let held = spawn_backend("held").await;
    let lb = lbs.upsert(spec("stuck")).await.unwrap();
    lbs.set_backends("stuck", vec![group("v001", 1, &[&held])])
        .unwrap();
    let request = tokio::spawn(async move { get(&client(), lb, "/hold").await });
    eventually("the held request", || {
        held.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let started = Instant::now();
    assert!(lbs.remove("stuck").await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < PATIENCE,
        "remove waited {took:?} for a request that never ends"
    );
    // Its connection was closed: the client gets an error, not a hang.
    let outcome = tokio::time::timeout(PATIENCE, request)
        .await
        .expect("the client was left hanging")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the cut-off request answered: {outcome:?}"
    );
    held.release.send_replace(true);
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
