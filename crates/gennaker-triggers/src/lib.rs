//! Triggers: pipelines that start by themselves.
//!
//! A pipeline's `triggers[]` are stored in Spinnaker's JSON (`cron`, `webhook`, `git`,
//! `docker`, `pipeline`, each with `enabled`). This crate decides which pipelines an
//! event fires and with what `trigger` object (Spinnaker-shaped: `type`, `user`,
//! `parameters`, `artifacts`, `payload` and the type's own fields), starts them through
//! the engine exactly once per (event, pipeline), and keeps a log per application of
//! what arrived, what fired and why the rest did not. The HTTP endpoints that receive
//! webhooks live in the server; it hands their requests to [`Triggers::receive`].

mod cron;
mod docker;
mod event;
mod matching;
mod ratelimit;
mod service;
mod settings;
mod signature;

pub use cron::Schedule;
pub use docker::RegistryClient;
pub use event::{Event, GIT_PROVIDERS, GitPush};
pub use matching::{Firing, Verdict, evaluate, triggers_of};
pub use ratelimit::RateLimiter;
pub use service::{Receipt, TriggerError, Triggers};
pub use settings::{DockerAccount, TriggerSettings};
pub use signature::{Signatures, github_signature_256};
