//! The load balancer's traffic samples on SQLite and PostgreSQL alike: batches,
//! idempotent retries, windows, limits and pruning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts};

use gennaker_store::store_test as sample_test;

fn sample(lb: &str, group: &str, at_ms: i64, ok: u64, failed: u64) -> MetricSample {
    MetricSample {
        load_balancer: lb.to_owned(),
        server_group: group.to_owned(),
        at_ms,
        window_ms: 1000,
        requests: RequestCounts {
            ok,
            server_error: failed,
            ..RequestCounts::default()
        },
        latency: vec![
            LatencyBucket {
                le: Some(0.005),
                count: ok,
            },
            LatencyBucket {
                le: None,
                count: failed,
            },
        ],
    }
}

sample_test!(batches_round_trip_and_retries_are_harmless, |store| {
    let batch: Vec<_> = (1..=5)
        .flat_map(|i| {
            [
                sample("front", "web-v001", i * 1000, i as u64, 1),
                sample("front", "web-v002", i * 1000, 2, 0),
                sample("admin", "web-v001", i * 1000, 7, 0),
            ]
        })
        .collect();
    assert_eq!(store.insert_metric_samples(&batch).await.unwrap(), 15);
    assert_eq!(store.insert_metric_samples(&batch).await.unwrap(), 0);
    assert_eq!(store.insert_metric_samples(&[]).await.unwrap(), 0);

    let read = store
        .metric_samples("web-v001", 2000, 4000, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 6, "3 intervals x 2 load balancers");
    assert_eq!(
        read.iter()
            .map(|s| (s.at_ms, s.load_balancer.as_str()))
            .collect::<Vec<_>>(),
        [
            (2000, "admin"),
            (2000, "front"),
            (3000, "admin"),
            (3000, "front"),
            (4000, "admin"),
            (4000, "front")
        ]
    );
    assert_eq!(read[1], sample("front", "web-v001", 2000, 2, 1));
    assert_eq!(read[1].requests.total(), 3);
    assert_eq!(read[1].latency[1].le, None);

    let limited = store
        .metric_samples("web-v001", 0, i64::MAX, 4)
        .await
        .unwrap();
    assert_eq!(limited.len(), 4);
    assert_eq!(limited[0].at_ms, 1000);
    assert!(
        store
            .metric_samples("web-v404", 0, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
});

sample_test!(pruning_deletes_only_older_samples, |store| {
    let batch: Vec<_> = (1..=10)
        .map(|i| sample("front", "web-v001", i * 1000, 1, 0))
        .collect();
    store.insert_metric_samples(&batch).await.unwrap();
    assert_eq!(store.prune_metric_samples(4000).await.unwrap(), 3);
    let left = store
        .metric_samples("web-v001", 0, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(left.len(), 7);
    assert_eq!(left[0].at_ms, 4000);
});
