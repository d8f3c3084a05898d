//! The records the store hands out. Times are Unix epoch milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An application as stored: its Spinnaker-style config document plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRecord {
    /// The application's name, as the user spelled it.
    pub name: String,
    /// The application document (`name`, `email`, `permissions`, …) exactly as saved.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// When the application was created.
    pub created_at: i64,
    /// When the application was last changed.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// 1 on creation, one more with every change: a client that sends back the version it
    /// read (`If-Match`) updates only if nobody changed the application in between.
    pub version: i64,
}

/// The current revision of a pipeline config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PipelineRecord {
    /// The pipeline's id (kept across revisions and renames).
    pub id: String,
    /// The application the pipeline belongs to.
    pub application: String,
    /// The pipeline's name.
    pub name: String,
    /// The revision number of `config`; the first save is revision 1.
    pub revision: i64,
    /// The pipeline document exactly as saved (plus `id`/`application` when they were absent).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// When the pipeline was first saved.
    pub created_at: i64,
    /// When the current revision was saved.
    pub updated_at: i64,
    /// Who saved the current revision.
    pub updated_by: String,
}

/// One stored revision of a pipeline config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PipelineRevision {
    /// The pipeline's id.
    pub pipeline_id: String,
    /// The revision number, counting from 1.
    pub revision: i64,
    /// The pipeline's name in this revision.
    pub name: String,
    /// The document of this revision.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// When this revision was saved.
    pub created_at: i64,
    /// Who saved it.
    pub author: String,
    /// Set when this revision was made by restoring an older one.
    pub restored_from: Option<i64>,
}

/// What a save did (of a pipeline, or of a canary config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum SaveOutcome {
    /// It was created (revision 1).
    Created,
    /// A new revision of an existing one was stored.
    Updated,
    /// The document equals the current revision: nothing was written.
    Unchanged,
}

/// A pipeline save request: the document, with its name and optional id already read out.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSave {
    /// The id in the document, if it had one: an existing pipeline with this id is updated
    /// (and renamed when the name changed).
    pub id: Option<String>,
    /// The pipeline's name.
    pub name: String,
    /// The whole document.
    pub config: Value,
}

/// A user of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's name (unique, case-insensitive).
    pub name: String,
    /// Admins may do everything.
    pub admin: bool,
    /// The roles the user holds, sorted.
    pub roles: Vec<String>,
    /// When the user was created.
    pub created_at: i64,
}

/// A role that application permissions can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// When the role was created.
    pub created_at: i64,
}

/// An API token's metadata; the secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// The token's id (used to revoke it).
    pub id: String,
    /// The user the token authenticates as.
    pub user: String,
    /// A label chosen by its creator.
    pub name: String,
    /// When it was created.
    pub created_at: i64,
    /// When it stops working, if ever.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A new token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The user the token belongs to.
    pub user: String,
    /// A label.
    pub name: String,
    /// SHA-256 of the secret, hex encoded.
    pub token_hash: String,
    /// Optional expiry.
    pub expires_at: Option<i64>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing id, assigned by the store.
    pub id: i64,
    /// When it happened.
    pub at: i64,
    /// Who did it (a user name, or `anonymous`).
    pub actor: String,
    /// What was done, e.g. `POST /api/v1/applications`.
    pub action: String,
    /// What it was done to, e.g. `application:shop`.
    pub target: String,
    /// `success`, `denied` or `failed`.
    pub outcome: String,
    /// The HTTP status returned.
    pub status: i64,
    /// Extra detail (error message, revision saved…).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: Value,
}

/// A new audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// `success`, `denied` or `failed`.
    pub outcome: String,
    /// The HTTP status returned.
    pub status: i64,
    /// Extra detail.
    pub detail: Value,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries with an id below this (for paging backwards).
    pub before_id: Option<i64>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries whose target starts with this.
    pub target_prefix: Option<String>,
    /// At most this many (newest first).
    pub limit: i64,
}
