//! One behaviour suite, run against SQLite and PostgreSQL alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{
    AuditQuery, MAX_PIPELINE_REVISIONS, NewAuditEntry, NewToken, PipelineSave, SaveOutcome,
    SqlStore, Store, StoreError, redact_database_url,
};
use serde_json::json;

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a fresh store.
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: SqlStore) $body

            #[tokio::test]
            async fn sqlite() {
                let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
                run(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
                run(store.clone()).await;
                store.close().await;
            }
        }
    };
}

mod applications;
mod audit;
mod database;
mod faulty;
mod pipelines;
mod races;
mod users;

fn save(name: &str, config: serde_json::Value) -> PipelineSave {
    PipelineSave {
        id: config.get("id").and_then(|v| v.as_str()).map(str::to_owned),
        name: name.to_owned(),
        config,
    }
}
