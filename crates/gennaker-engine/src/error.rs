//! The engine's error type.

use gennaker_store::StoreError;

use crate::build::BuildError;

/// What can go wrong when asking the engine for something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed; the step is retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored document or message could not be read or written.
    #[error("engine document is not valid: {0}")]
    Document(#[from] serde_json::Error),
    /// The pipeline cannot run as asked.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No execution (or stage) by that id.
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// `execution` or `stage`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation does not apply in the current state (cancel a finished execution,
    /// judge a stage that is not waiting for judgment, …).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (a judgment restricted to other roles).
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The outbound HTTP client could not be built.
    #[error(transparent)]
    Outbound(#[from] gennaker_outbound::OutboundError),
}
