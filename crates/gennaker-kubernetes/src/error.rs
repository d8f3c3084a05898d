//! The provider's errors, and how they become task errors.

use gennaker_engine::TaskError;

/// A `[[kubernetes.accounts]]` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct SettingsError {
    /// Where: `kubernetes.accounts[0].token`.
    pub at: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl SettingsError {
    pub(crate) fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            message: message.into(),
        }
    }
}

/// Something the API server (or the way to it) refused or could not do.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The account's user may not do this (HTTP 403 from the API server).
    #[error(
        "account '{account}' may not {verb} {resource} in {scope} (the API server answered 403 Forbidden: {message}); grant the account's user a Role (or ClusterRole) allowing '{verb}' on '{resource}' there"
    )]
    Forbidden {
        /// The account.
        account: String,
        /// The verb refused (`create`, `patch`, `delete`, `list`, `get`).
        verb: String,
        /// The resource (`replicasets.apps`).
        resource: String,
        /// `namespace 'shop'` or `the cluster scope`.
        scope: String,
        /// The API server's own message.
        message: String,
    },
    /// The API server refused the request as invalid, conflicting, unknown (4xx).
    #[error("account '{account}': {action} failed: {message} (HTTP {code})")]
    Refused {
        /// The account.
        account: String,
        /// What was asked (`apply replicaSet web-v001 in namespace 'shop'`).
        action: String,
        /// The status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached or failed (5xx, timeouts): worth retrying.
    #[error("account '{account}': {action} failed: {message}")]
    Unavailable {
        /// The account.
        account: String,
        /// What was asked.
        action: String,
        /// Why.
        message: String,
    },
    /// A kind the API server does not serve.
    #[error(
        "account '{account}' has no kind '{kind}' in API group version '{api_version}'; check apiVersion and kind (is its CRD installed?)"
    )]
    UnknownKind {
        /// The account.
        account: String,
        /// The `apiVersion`.
        api_version: String,
        /// The `kind`.
        kind: String,
    },
    /// A client for the account could not be built from its settings.
    #[error("account '{account}': {message}")]
    Client {
        /// The account.
        account: String,
        /// Why.
        message: String,
    },
}

impl From<KubeError> for TaskError {
    fn from(err: KubeError) -> Self {
        match err {
            KubeError::Unavailable { .. } => TaskError::Transient(err.to_string()),
            KubeError::Forbidden { .. }
            | KubeError::Refused { .. }
            | KubeError::UnknownKind { .. }
            | KubeError::Client { .. } => TaskError::Permanent(err.to_string()),
        }
    }
}
