//! The `local` provider: server groups as supervised OS processes on this machine,
//! behind the built-in L7 load balancer ([`lb`]).
//!
//! A server group is N processes started from a [`ProcessSpec`] (`PORT` assigned per
//! instance) whose artifact is fetched once into a content-addressed cache and pinned by
//! sha256 ([`artifacts`]). Each instance has a supervisor task that restarts it after a
//! crash and probes its health; `Up` instances of enabled groups are what the load
//! balancers route to ([`routing`]). Everything needed to find the processes again is
//! persisted in the store, so instances outlive a server restart and are re-adopted
//! ([`LocalProvider::start`]).
//!
//! Inside, each part has one job: the registry knows the groups and their records,
//! creation names and records new groups exactly once per origin, instances start, stop
//! and supervise processes, health keeps each instance's state, routing hands tables to
//! the load balancers, adoption finds the processes again after a restart.

mod access;
mod adoption;
pub mod artifacts;
mod creation;
mod error;
mod group;
mod health;
mod instances;
pub mod lb;
mod policy;
mod process;
mod provider;
mod records;
mod registry;
pub mod routing;
mod spec;
mod supervisor;
mod targets;

pub use error::LocalError;
pub use policy::{
    DEFAULT_ARTIFACT_FETCH_TIMEOUT, HostPolicy, HostSettings, INSTANCE_PATH, Refusal, RunAs,
    check_account,
};
pub use provider::{LocalProvider, LocalSettings};
pub use spec::{ArtifactSource, HealthCheckSpec, MAX_EMBEDDED_BYTES, ProcessSpec};
pub use targets::TARGETS_FILE;

/// Locks a mutex whose updates are single assignments: a poisoned lock still holds
/// consistent data, so it is used as is.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds an HTTP client; the builder only fails when the TLS backend cannot start.
pub(crate) fn http_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, LocalError> {
    builder.build().map_err(|e| LocalError::Io {
        path: "http client".to_owned(),
        reason: e.to_string(),
    })
}
