//! Canary configs held in memory: for tests, and for a server whose canary configs are
//! not stored yet (every lookup then finds nothing, and the stage says which config it
//! could not find).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::CanaryConfig;
use crate::lookup::{CanaryConfigLookup, LookupError, StoredCanaryConfig};

/// Canary configs in memory, by id.
#[derive(Debug, Clone, Default)]
pub struct InMemoryCanaryConfigs {
    configs: Arc<RwLock<BTreeMap<String, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    applications: Vec<String>,
    config: CanaryConfig,
}

impl InMemoryCanaryConfigs {
    /// No configs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the config with this id.
    pub fn insert(
        &self,
        id: impl Into<String>,
        name: impl Into<String>,
        applications: &[&str],
        config: CanaryConfig,
    ) {
        let entry = Entry {
            name: name.into(),
            applications: applications.iter().map(|a| (*a).to_owned()).collect(),
            config,
        };
        // A poisoned lock only means another insert panicked; the map is still whole.
        let mut configs = self.configs.write().unwrap_or_else(|e| e.into_inner());
        configs.insert(id.into(), entry);
    }

    fn find(&self, matches: impl Fn(&str, &Entry) -> bool) -> Option<StoredCanaryConfig> {
        let configs = self.configs.read().unwrap_or_else(|e| e.into_inner());
        configs
            .iter()
            .find(|(id, entry)| matches(id, entry))
            .map(|(id, entry)| StoredCanaryConfig {
                id: id.clone(),
                name: entry.name.clone(),
                applications: entry.applications.clone(),
                config: entry.config.clone(),
            })
    }
}

#[async_trait::async_trait]
impl CanaryConfigLookup for InMemoryCanaryConfigs {
    async fn by_id(&self, id: &str) -> Result<Option<StoredCanaryConfig>, LookupError> {
        Ok(self.find(|key, _| key == id))
    }

    async fn by_name(&self, name: &str) -> Result<Option<StoredCanaryConfig>, LookupError> {
        Ok(self.find(|_, entry| entry.name == name))
    }
}
