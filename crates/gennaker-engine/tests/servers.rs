//! Two engines (two servers' worth) on one PostgreSQL database: each hears every status
//! event of an execution exactly once, whichever engine's workers committed it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::testing::requester;
use gennaker_engine::{
    Engine, EngineConfig, ExecutionEvent, RunRequest, StageRegistry, SystemClock,
};
use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// An event as both engines should see it.
type Key = (Option<String>, Option<String>, String);

fn key(event: &ExecutionEvent) -> Key {
    (
        event.stage_id.clone(),
        event.task.clone(),
        event.status.as_str().to_owned(),
    )
}

/// The execution's events as `events` delivers them, until the execution ends.
async fn until_end(events: &mut broadcast::Receiver<ExecutionEvent>, id: &str) -> Vec<Key> {
    let mut heard = Vec::new();
    loop {
        let event = events.recv().await.expect("no event lost");
        if event.execution_id != id {
            continue;
        }
        heard.push(key(&event));
        if event.stage_id.is_none() && event.status.is_complete() {
            return heard;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_engine_on_one_postgres_hears_every_event_once() {
    let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
    let engine = || {
        Engine::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            StageRegistry::standard(),
            Arc::new(SystemClock),
            EngineConfig {
                workers: 2,
                single_server: false,
                idle_recheck: Duration::from_millis(200),
                ..EngineConfig::default()
            },
        )
        .unwrap()
    };
    let (a, b) = (engine(), engine());
    assert_ne!(a.server_id(), b.server_id());
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for engine in [&a, &b] {
        workers.push(
            engine
                .start(store.queue_listener().await.unwrap(), shutdown.clone())
                .await
                .unwrap(),
        );
    }
    let stages: Vec<_> = (1..=6)
        .map(|i| {
            let after: Vec<String> = if i == 1 { vec![] } else { vec![(i - 1).to_string()] };
            json!({"refId": i.to_string(), "name": format!("s{i}"), "type": "wait", "waitTime": 0, "requisiteStageRefIds": after})
        })
        .collect();
    let config = gennaker_core::Pipeline::from_value(
        json!({"name": "hops", "application": "app", "stages": stages}),
    )
    .unwrap();
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let execution = a
        .run_pipeline("app", &config, &RunRequest::default(), &requester())
        .await
        .unwrap();
    // Bounded against a hang; not a speed requirement.
    let (heard_a, heard_b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            until_end(&mut on_a, &execution.id),
            until_end(&mut on_b, &execution.id)
        )
    })
    .await
    .expect("both engines heard the execution end");
    let done = a.execution(&execution.id).await.unwrap().unwrap();
    assert_eq!(done.status.as_str(), "SUCCEEDED");
    // Which engine ran each task: here both took part, or at least one did; either way
    // each engine heard every event once, in the order they were committed.
    let ran: BTreeMap<String, usize> =
        done.stages
            .iter()
            .flat_map(|s| s.tasks.iter())
            .fold(BTreeMap::new(), |mut ran, task| {
                *ran.entry(task.server.clone().unwrap()).or_default() += 1;
                ran
            });
    assert!(
        ran.keys().all(|s| s == a.server_id() || s == b.server_id()),
        "{ran:?}"
    );
    assert_eq!(heard_a, heard_b, "ran by {ran:?}");
    let mut unique = heard_a.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), heard_a.len(), "an event twice: {heard_a:?}");
    // Every stage and task started and ended: 6 × (stage RUNNING, task RUNNING, task
    // SUCCEEDED, stage SUCCEEDED), with the execution's RUNNING and SUCCEEDED.
    assert_eq!(heard_a.len(), 6 * 4 + 2, "{heard_a:?}");
    shutdown.cancel();
    for mut set in workers {
        while set.join_next().await.is_some() {}
    }
    store.close().await;
}
