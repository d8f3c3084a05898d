//! The API's routes.

pub(crate) mod access;
pub(crate) mod applications;
pub(crate) mod canary;
pub(crate) mod canary_configs;
mod documents;
pub(crate) mod events;
pub(crate) mod executions;
pub(crate) mod health;
pub(crate) mod infrastructure;
pub(crate) mod pipelines;
pub(crate) mod stage_types;
pub(crate) mod triggers;
