//! Where the `kayentaCanary` stage finds canary configs: by id or by name, with the
//! applications each belongs to (who may use it).

use crate::config::CanaryConfig;

/// Stored canary configs, as the stage reads them.
#[async_trait::async_trait]
pub trait CanaryConfigLookup: Send + Sync + std::fmt::Debug {
    /// The config with this id, if any.
    async fn by_id(&self, id: &str) -> Result<Option<StoredCanaryConfig>, LookupError>;
    /// The config with this name, if any.
    async fn by_name(&self, name: &str) -> Result<Option<StoredCanaryConfig>, LookupError>;
}

/// A canary config as stored: its id, name, owning applications and content.
pub struct StoredCanaryConfig {
    /// The stored config's id (`canaryConfigId` in stages).
    pub id: String,
    /// Its name (`canaryConfigName` in stages).
    pub name: String,
    /// The applications it belongs to; pipelines of other applications need READ on
    /// one of them to use it.
    pub applications: Vec<String>,
    /// The config itself.
    pub config: CanaryConfig,
}

/// Why a lookup could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The store behind the lookup failed.
    #[error("canary config store: {0}")]
    Store(String),
}
