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

pub mod artifacts;
mod error;
mod group;
mod health;
pub mod lb;
mod process;
mod provider;
mod records;
mod router;
pub mod routing;
mod spec;
mod supervisor;

pub use error::LocalError;
pub use provider::{LocalProvider, LocalSettings};
pub use spec::{ArtifactSource, HealthCheckSpec, ProcessSpec};
