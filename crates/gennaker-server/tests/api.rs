//! The server's integration tests: a real HTTP server on a real database (SQLite and
//! PostgreSQL alike), driven over HTTP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with the backend.
macro_rules! api_test {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: TestBackend) $body

            #[tokio::test]
            async fn sqlite() {
                run(TestBackend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                run(TestBackend::Postgres).await;
            }
        }
    };
}

#[path = "api/faulty.rs"]
mod faulty;
#[path = "api/harness.rs"]
mod harness;

#[path = "api/access.rs"]
mod access;
#[path = "api/applications.rs"]
mod applications;
#[path = "api/audit_log.rs"]
mod audit_log;
#[path = "api/authz.rs"]
mod authz;
#[path = "api/authz_table.rs"]
mod authz_table;
#[path = "api/bootstrap.rs"]
mod bootstrap;
#[path = "api/canary_configs.rs"]
mod canary_configs;
#[path = "api/canary_report.rs"]
mod canary_report;
#[path = "api/executions.rs"]
mod executions;
#[path = "api/garbage.rs"]
mod garbage;
#[path = "api/infrastructure.rs"]
mod infrastructure;
#[path = "api/pipelines.rs"]
mod pipelines;
#[path = "api/saved_forms.rs"]
mod saved_forms;
#[path = "api/secrets.rs"]
mod secrets;
#[path = "api/security.rs"]
mod security;
#[path = "api/stage_authz.rs"]
mod stage_authz;
#[path = "api/stage_walk.rs"]
mod stage_walk;
#[path = "api/surface.rs"]
mod surface;
#[path = "api/ui.rs"]
mod ui;
#[path = "api/ui_pages.rs"]
mod ui_pages;
