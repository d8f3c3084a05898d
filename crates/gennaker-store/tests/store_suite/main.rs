//! One behaviour suite, run against SQLite and PostgreSQL alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{
    AuditQuery, MAX_PIPELINE_REVISIONS, NewAuditEntry, NewToken, PipelineSave, SaveOutcome,
    SqlStore, Store, StoreError, redact_database_url,
};
use serde_json::json;

use gennaker_store::store_test;

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
