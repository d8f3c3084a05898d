//! The execution store and the engine's durable queue, run against SQLite and PostgreSQL
//! alike. Time is never read from a clock here: every `now`, `deliver_at` and
//! `lease_until` is a plain number chosen by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::ExecutionStatus;
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionStore, ExecutionWrite, LeasedMessage,
    NewMessage, SqlStore, StepCommit,
};

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a fresh store.
/// `multi_thread` runs the body on a multi-threaded runtime (for tests that race tasks).
macro_rules! queue_test {
    ($name:ident, |$store:ident| $body:block) => {
        queue_test!(@define $name, "current_thread", |$store| $body);
    };
    (multi_thread $name:ident, |$store:ident| $body:block) => {
        queue_test!(@define $name, "multi_thread", |$store| $body);
    };
    (@define $name:ident, $flavor:literal, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: SqlStore) $body

            #[tokio::test(flavor = $flavor)]
            async fn sqlite() {
                let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
                run(store).await;
            }

            #[tokio::test(flavor = $flavor)]
            async fn postgres() {
                let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
                run(store.clone()).await;
                store.close().await;
            }
        }
    };
}

mod carrying;
mod claiming;
mod concurrency;
mod delivery;
mod executions;
mod fairness;
mod migration;
mod notifications;
mod sealing;
mod workers;

/// A new execution row at version 1.
fn execution(id: &str, application: &str, created_at: i64) -> ExecutionRow {
    ExecutionRow {
        id: id.to_owned(),
        application: application.to_owned(),
        pipeline_config_id: None,
        pipeline_name: None,
        status: ExecutionStatus::NotStarted,
        created_at,
        start_time: None,
        end_time: None,
        correlation_id: None,
        version: 1,
        document: format!(r#"{{"id":"{id}"}}"#),
    }
}

/// A new execution of pipeline config `config` named `name`, with `status`.
fn pipeline_execution(
    id: &str,
    application: &str,
    config: &str,
    name: &str,
    status: ExecutionStatus,
    created_at: i64,
) -> ExecutionRow {
    ExecutionRow {
        pipeline_config_id: Some(config.to_owned()),
        pipeline_name: Some(name.to_owned()),
        status,
        ..execution(id, application, created_at)
    }
}

fn insert(row: ExecutionRow) -> ExecutionWrite {
    ExecutionWrite {
        row,
        expected_version: None,
    }
}

/// Writes `row` (whose `version` is the new one) over `expected`.
fn update(row: ExecutionRow, expected: i64) -> ExecutionWrite {
    ExecutionWrite {
        row,
        expected_version: Some(expected),
    }
}

fn message(partition: &str, payload: &str, deliver_at: i64) -> NewMessage {
    NewMessage {
        partition: partition.to_owned(),
        payload: payload.to_owned(),
        deliver_at,
        replace_key: None,
        tenant: None,
    }
}

/// A message for a partition whose work belongs to `tenant`.
fn tenant_message(tenant: &str, partition: &str, payload: &str, deliver_at: i64) -> NewMessage {
    NewMessage {
        tenant: Some(tenant.to_owned()),
        ..message(partition, payload, deliver_at)
    }
}

/// Commits a step that only enqueues `messages`.
async fn enqueue(store: &SqlStore, messages: Vec<NewMessage>) {
    let outcome = store
        .commit_step(&StepCommit {
            enqueue: messages,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// Inserts executions (no messages) and expects the step to commit.
async fn insert_all(store: &SqlStore, rows: Vec<ExecutionRow>) {
    let outcome = store
        .commit_step(&StepCommit {
            executions: rows.into_iter().map(insert).collect(),
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// Acknowledges `ids` as `owner` and nothing else.
async fn ack(store: &SqlStore, owner: &str, ids: Vec<i64>) -> CommitOutcome {
    store
        .commit_step(&StepCommit {
            owner: owner.to_owned(),
            acknowledged: ids,
            ..StepCommit::default()
        })
        .await
        .unwrap()
}

fn payloads(messages: &[LeasedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.payload.as_str()).collect()
}

fn ids_of(rows: &[ExecutionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn query(limit: i64) -> ExecutionQuery {
    ExecutionQuery {
        limit,
        ..ExecutionQuery::default()
    }
}

/// Every message of `partition` as `(payload, deliver_at, attempts)`.
async fn partition_state(store: &SqlStore, partition: &str) -> Vec<(String, i64, i32)> {
    store
        .partition_messages(partition)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.payload, m.deliver_at, m.attempts))
        .collect()
}
