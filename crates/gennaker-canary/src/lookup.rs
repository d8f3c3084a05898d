//! How the `kayentaCanary` stage finds the canary config it names: by id
//! (`canaryConfig.canaryConfigId`) or by name (`canaryConfig.canaryConfigName`, which
//! Orca resolves to an id before it runs). [`StoreCanaryConfigs`] reads them from the
//! store the API saves them to.

use std::sync::Arc;

use gennaker_store::{CanaryConfigRecord, CanaryConfigStore};

use crate::config::CanaryConfig;

/// A stored canary config as the stage uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCanaryConfig {
    /// The config's id.
    pub id: String,
    /// The config's name.
    pub name: String,
    /// The applications it belongs to: a stage of another application may use it only
    /// when its execution's user may read one of them.
    pub applications: Vec<String>,
    /// The document, as the judge reads it.
    pub config: CanaryConfig,
}

/// Why a config could not be looked up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LookupError {
    /// The store failed (or could not be reached).
    #[error("cannot read canary configs: {0}")]
    Store(String),
    /// The stored document is not a config the judge can read (stored before a
    /// validation rule existed, or edited in the database).
    #[error(
        "canary config '{id}' cannot be read: {message}; open it with `gennaker canary config get {id} -o json`, fix it and save it again"
    )]
    Unreadable {
        /// The config's id.
        id: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Finds canary configs by id or by name.
#[async_trait::async_trait]
pub trait CanaryConfigLookup: Send + Sync + std::fmt::Debug {
    /// The config with this id, if there is one.
    async fn by_id(&self, id: &str) -> Result<Option<StoredCanaryConfig>, LookupError>;
    /// The config with this name (names ignore case), if there is one.
    async fn by_name(&self, name: &str) -> Result<Option<StoredCanaryConfig>, LookupError>;
}

/// [`CanaryConfigLookup`] on the store the API saves configs to.
#[derive(Debug, Clone)]
pub struct StoreCanaryConfigs(pub Arc<dyn CanaryConfigStore>);

impl StoreCanaryConfigs {
    fn stored(
        record: Option<CanaryConfigRecord>,
    ) -> Result<Option<StoredCanaryConfig>, LookupError> {
        let Some(record) = record else {
            return Ok(None);
        };
        let config: CanaryConfig =
            serde_json::from_value(record.config).map_err(|err| LookupError::Unreadable {
                id: record.id.clone(),
                message: err.to_string(),
            })?;
        Ok(Some(StoredCanaryConfig {
            id: record.id,
            name: record.name,
            applications: record.applications,
            config,
        }))
    }
}

#[async_trait::async_trait]
impl CanaryConfigLookup for StoreCanaryConfigs {
    async fn by_id(&self, id: &str) -> Result<Option<StoredCanaryConfig>, LookupError> {
        let record = self
            .0
            .get_canary_config(id)
            .await
            .map_err(|err| LookupError::Store(err.to_string()))?;
        Self::stored(record)
    }

    async fn by_name(&self, name: &str) -> Result<Option<StoredCanaryConfig>, LookupError> {
        let record = self
            .0
            .get_canary_config_by_name(name)
            .await
            .map_err(|err| LookupError::Store(err.to_string()))?;
        Self::stored(record)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use gennaker_store::testing::{TestBackend, TestDatabase};
    use gennaker_store::{CanaryConfigSave, ExpectedVersion};
    use serde_json::json;

    #[tokio::test]
    async fn finds_stored_configs_by_id_and_name() {
        let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
        let store = Arc::new(store);
        let document = json!({"name": "Latency", "applications": ["shop"],
            "metrics": [{"name": "p99", "groups": ["latency"], "query": {"type": "builtin", "metricName": "latency_p99"}}],
            "classifier": {"groupWeights": {"latency": 100}}});
        let save = |id: Option<&str>, name: &str, config| CanaryConfigSave {
            id: id.map(str::to_owned),
            name: name.to_owned(),
            applications: vec!["shop".to_owned()],
            config,
            expected: ExpectedVersion::Any,
        };
        let (record, _) = store
            .save_canary_config(&save(None, "Latency", document), "alice")
            .await
            .unwrap();
        let lookup = StoreCanaryConfigs(store.clone());

        let found = lookup.by_id(&record.id).await.unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), found.name.as_str()),
            (record.id.as_str(), "Latency")
        );
        assert_eq!(found.applications, vec!["shop"]);
        assert_eq!(found.config.metrics[0].name, "p99");
        assert_eq!(
            found.config.classifier.unwrap().group_weights["latency"],
            100.0
        );
        assert_eq!(
            lookup.by_name("latency").await.unwrap().unwrap().id,
            record.id
        );
        assert_eq!(lookup.by_id("nope").await.unwrap(), None);
        assert_eq!(lookup.by_name("nope").await.unwrap(), None);

        // A document the judge cannot read says which config and how to fix it.
        store
            .save_canary_config(
                &save(Some("bad"), "Broken", json!({"metrics": "none"})),
                "alice",
            )
            .await
            .unwrap();
        let err = lookup.by_name("broken").await.unwrap_err();
        assert!(
            matches!(&err, LookupError::Unreadable { id, .. } if id == "bad"),
            "{err}"
        );
        assert!(
            err.to_string().contains("gennaker canary config get bad"),
            "{err}"
        );

        // A store that is gone is a store error.
        store.close().await;
        assert!(matches!(
            lookup.by_id(&record.id).await,
            Err(LookupError::Store(_))
        ));
    }
}
