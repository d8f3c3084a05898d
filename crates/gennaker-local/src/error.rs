//! The local provider's errors, and how they map onto the deploy layer's
//! retry-or-not split ([`DeployError`]).

use gennaker_deploy::DeployError;
use gennaker_store::StoreError;

/// What can go wrong in the local provider.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The process spec cannot be run as given.
    #[error("{0}")]
    InvalidSpec(String),
    /// The operator's host policy, or the artifact's type, size or download time,
    /// refuses what the spec asks: it fails for good, a retry would be refused again.
    #[error("{0}")]
    Refused(String),
    /// The provider's settings cannot be used (at start-up).
    #[error("{0}")]
    Settings(String),
    /// The artifact could not be fetched or cached.
    #[error("artifact {source_name}: {reason}")]
    Artifact {
        /// The path or URL.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The artifact is larger than the cache accepts: it will not shrink on a retry.
    #[error(
        "artifact {source_name} is larger than the limit of {limit} bytes: it is refused ([local] max_artifact_bytes in gennaker.toml)"
    )]
    ArtifactTooLarge {
        /// The path or URL.
        source_name: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A process could not be started.
    #[error("cannot start '{program}': {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// A file under the data directory could not be written or read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not parse (written by an incompatible version).
    #[error("stored {kind} '{key}' is unreadable: {reason}")]
    Corrupt {
        /// The record kind.
        kind: &'static str,
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl LocalError {
    pub(crate) fn io(path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    }
}

impl From<LocalError> for DeployError {
    fn from(err: LocalError) -> Self {
        match err {
            LocalError::InvalidSpec(_)
            | LocalError::Refused(_)
            | LocalError::Settings(_)
            | LocalError::Spawn { .. }
            | LocalError::ArtifactTooLarge { .. } => DeployError::Invalid(err.to_string()),
            // A missing file or an unreachable URL may be fixed by the time a retry runs.
            LocalError::Artifact { .. }
            | LocalError::Io { .. }
            | LocalError::Store(_)
            | LocalError::Corrupt { .. } => DeployError::Unavailable(err.to_string()),
        }
    }
}
