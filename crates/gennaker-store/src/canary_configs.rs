//! Canary configurations (Kayenta's `CanaryConfig` documents): stored by id, unique by
//! name, each saved revision kept (up to [`MAX_CANARY_CONFIG_REVISIONS`]).
//!
//! The store does not read the document beyond what it is told in a
//! [`CanaryConfigSave`] (id, name, applications); validating it is the canary crate's
//! job. It does stamp what every save sets (Kayenta's `id`, `createdTimestamp`,
//! `updatedTimestamp` and their `…Iso` forms, Gennaker's `lastModifiedBy`), so a stored
//! document always says what it is and when it changed, and a save that changes only
//! those stamps stores nothing.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::records::SaveOutcome;
use crate::resources::ExpectedVersion;

/// How many revisions of a canary config are kept, like pipelines': a saving loop must
/// not grow the history without bound. The oldest go first; the current one stays.
pub const MAX_CANARY_CONFIG_REVISIONS: i64 = 100;

/// The largest document stored, as JSON text: a config is a few kilobytes (even a
/// hundred metrics are well under this), and every stage run reads it.
pub const MAX_CANARY_CONFIG_BYTES: usize = 1024 * 1024;

/// The current revision of a canary config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfigRecord {
    /// The config's id (a UUID unless the document brought its own), kept across
    /// revisions and renames.
    pub id: String,
    /// The config's name, unique without regard to case.
    pub name: String,
    /// The applications the config belongs to (whose permissions guard it).
    pub applications: Vec<String>,
    /// The revision number of `config`; the first save is revision 1.
    pub revision: i64,
    /// The Kayenta document as saved, with `id` and the save stamps filled in.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// When the config was first saved (epoch ms).
    pub created_at: i64,
    /// When the current revision was saved (epoch ms).
    pub updated_at: i64,
    /// Who saved the current revision.
    pub updated_by: String,
}

/// One stored revision of a canary config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfigRevision {
    /// The config's id.
    pub config_id: String,
    /// The revision number, counting from 1.
    pub revision: i64,
    /// The config's name in this revision.
    pub name: String,
    /// The config's applications in this revision.
    pub applications: Vec<String>,
    /// The document of this revision.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// When this revision was saved (epoch ms).
    pub created_at: i64,
    /// Who saved it.
    pub author: String,
}

/// A canary config save: the document with its id, name and applications read out.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryConfigSave {
    /// The config to write: an existing one with this id is updated (and renamed when
    /// the name changed); none with this id is created under it. `None` creates a
    /// config under a new UUID.
    pub id: Option<String>,
    /// The config's name; another config holding it is a conflict.
    pub name: String,
    /// The applications it belongs to.
    pub applications: Vec<String>,
    /// The whole document.
    pub config: Value,
    /// What the writer expects to find under `id`, checked atomically with the write:
    /// a writer that checked permissions on what it read must not overwrite a config
    /// someone changed (or moved to other applications) in between. The version is the
    /// revision.
    pub expected: ExpectedVersion,
}

/// Canary configs, kept by [`SqlStore`](crate::SqlStore) on both backends.
#[async_trait]
pub trait CanaryConfigStore: Send + Sync + std::fmt::Debug {
    /// Creates a config or stores a new revision of it (see [`CanaryConfigSave`]). A
    /// document equal to the current one but for the save stamps stores nothing
    /// ([`SaveOutcome::Unchanged`]). A name another config holds, an `expected`
    /// that does not hold, are conflicts; a document beyond
    /// [`MAX_CANARY_CONFIG_BYTES`] is refused.
    async fn save_canary_config(
        &self,
        save: &CanaryConfigSave,
        actor: &str,
    ) -> Result<(CanaryConfigRecord, SaveOutcome)>;
    /// Reads a config by id.
    async fn get_canary_config(&self, id: &str) -> Result<Option<CanaryConfigRecord>>;
    /// Reads a config by name (without regard to case).
    async fn get_canary_config_by_name(&self, name: &str) -> Result<Option<CanaryConfigRecord>>;
    /// Lists configs by name: all, or those belonging to `application`.
    async fn list_canary_configs(
        &self,
        application: Option<&str>,
    ) -> Result<Vec<CanaryConfigRecord>>;
    /// Deletes a config and its history if `expected` holds (the revision read);
    /// returns what was deleted. Not found when there is none.
    async fn delete_canary_config(
        &self,
        id: &str,
        expected: ExpectedVersion,
    ) -> Result<CanaryConfigRecord>;
    /// Every kept revision of a config, newest first; not found when there is no such
    /// config.
    async fn canary_config_history(&self, id: &str) -> Result<Vec<CanaryConfigRevision>>;
    /// One revision of a config.
    async fn canary_config_revision(
        &self,
        id: &str,
        revision: i64,
    ) -> Result<Option<CanaryConfigRevision>>;
}
