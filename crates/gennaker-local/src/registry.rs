//! The server groups this provider knows: the in-memory groups that supervision, routing
//! and the deploy layer read, and their records in the store, which survive a restart.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use gennaker_core::naming::{Moniker, SEQUENCE_MODULUS, next_sequence};
use gennaker_deploy::{DeployError, ServerGroup};
use gennaker_store::{ExpectedVersion, ResourceStore};

use crate::error::LocalError;
use crate::group::Group;
use crate::lock;
use crate::records::{GroupRecord, PROVIDER, SERVER_GROUP, record_key};
use crate::routing::GroupRoutes;
use crate::targets::TargetsFile;

/// The known server groups by record key, and where their records live.
#[derive(Debug)]
pub(crate) struct Registry {
    store: Arc<dyn ResourceStore>,
    groups: Mutex<BTreeMap<String, Arc<Group>>>,
    /// The Prometheus target file, rewritten after every save and removal.
    targets: OnceLock<TargetsFile>,
}

impl Registry {
    pub(crate) fn new(store: Arc<dyn ResourceStore>) -> Self {
        Self {
            store,
            groups: Mutex::new(BTreeMap::new()),
            targets: OnceLock::new(),
        }
    }

    /// Keeps a Prometheus target file of the started instances from now on.
    pub(crate) fn keep_targets(&self, targets: TargetsFile) {
        let _ = self.targets.set(targets);
    }

    /// Rewrites the target file (if kept) from the groups now; a failure is logged,
    /// never fatal: scraping is an extra.
    pub(crate) async fn write_targets(&self) {
        if let Some(targets) = self.targets.get()
            && let Err(error) = targets.write(&self.all()).await
        {
            tracing::warn!(%error, "cannot write the Prometheus target file");
        }
    }

    /// The store the records (of groups and load balancers) are kept in.
    pub(crate) fn store(&self) -> &Arc<dyn ResourceStore> {
        &self.store
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Group>> {
        lock(&self.groups).get(key).cloned()
    }

    /// The group `name` of `account`, or the deploy layer's "no such server group".
    pub(crate) fn find(&self, account: &str, name: &str) -> Result<Arc<Group>, DeployError> {
        self.get(&record_key(account, name))
            .ok_or_else(|| DeployError::no_server_group(name))
    }

    /// Knows `group` from now on (its record is stored already).
    pub(crate) fn insert(&self, group: Arc<Group>) {
        lock(&self.groups).insert(group.key.clone(), group);
    }

    pub(crate) fn all(&self) -> Vec<Arc<Group>> {
        lock(&self.groups).values().cloned().collect()
    }

    /// The groups of an application as the deploy layer sees them, ordered by cluster,
    /// then age.
    pub(crate) fn views_of(&self, application: &str) -> Vec<ServerGroup> {
        let mut groups: Vec<ServerGroup> = self
            .all()
            .iter()
            .filter(|g| g.state().record.moniker.app == application)
            .map(|g| g.view())
            .collect();
        groups.sort_by(|a, b| {
            (a.cluster(), a.created_time, &a.name).cmp(&(b.cluster(), b.created_time, &b.name))
        });
        groups
    }

    /// What routing needs of every group.
    pub(crate) fn routes(&self) -> Vec<GroupRoutes> {
        self.all().iter().map(|g| g.routes()).collect()
    }

    /// Every port recorded by any group.
    pub(crate) fn ports_in_use(&self) -> HashSet<u16> {
        self.all()
            .iter()
            .flat_map(|g| {
                g.state()
                    .record
                    .instances
                    .values()
                    .map(|i| i.port)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stores a new group's record (refusing to overwrite one) and knows the group.
    pub(crate) async fn add(&self, group: Arc<Group>) -> Result<(), LocalError> {
        self.put(&group, ExpectedVersion::Absent).await?;
        self.insert(group);
        Ok(())
    }

    /// Deletes the record of `key` and forgets its group; a missing one is no error.
    pub(crate) async fn remove(&self, key: &str) -> Result<(), LocalError> {
        self.store
            .delete_resource(PROVIDER, SERVER_GROUP, key)
            .await?;
        lock(&self.groups).remove(key);
        self.write_targets().await;
        Ok(())
    }

    /// Saves the group's record (the newest snapshot wins); a failure is logged.
    pub(crate) async fn persist(&self, group: &Group) {
        if let Err(e) = self.try_persist(group).await {
            tracing::error!(group = %group.key, error = %e, "server group not saved");
        }
    }

    /// Saves the group's record (the newest snapshot wins).
    pub(crate) async fn try_persist(&self, group: &Group) -> Result<(), LocalError> {
        {
            let _order = group.persist.lock().await;
            self.put(group, ExpectedVersion::Any).await?;
        }
        self.write_targets().await;
        Ok(())
    }

    /// Stores the group's current record.
    async fn put(&self, group: &Group, expected: ExpectedVersion) -> Result<(), LocalError> {
        let document = serde_json::to_value(group.record()).map_err(|e| LocalError::Corrupt {
            kind: "server group",
            key: group.key.clone(),
            reason: e.to_string(),
        })?;
        self.store
            .put_resource(PROVIDER, SERVER_GROUP, &group.key, &document, expected)
            .await?;
        Ok(())
    }

    /// Every stored group record.
    pub(crate) async fn load_records(&self) -> Result<Vec<GroupRecord>, LocalError> {
        self.store
            .list_resources(PROVIDER, SERVER_GROUP, "")
            .await?
            .into_iter()
            .map(|resource| {
                serde_json::from_value(resource.document).map_err(|e| LocalError::Corrupt {
                    kind: "server group",
                    key: resource.key,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The name of the next server group of a cluster: the newest group's sequence + 1
    /// (Frigga/Clouddriver), skipping names still taken after a wrap-around.
    pub(crate) async fn next_moniker(
        &self,
        account: &str,
        cluster: &Moniker,
    ) -> Result<Moniker, LocalError> {
        let records = self.load_records().await?;
        let cluster_name = cluster.cluster();
        let same: Vec<&GroupRecord> = records
            .iter()
            .filter(|r| r.account == account && r.moniker.cluster() == cluster_name)
            .collect();
        let newest = same
            .iter()
            .max_by_key(|r| (r.created_time, r.moniker.sequence))
            .and_then(|r| r.moniker.sequence);
        let taken: HashSet<Option<u32>> = same.iter().map(|r| r.moniker.sequence).collect();
        let mut sequence = next_sequence(newest);
        for _ in 0..SEQUENCE_MODULUS {
            if !taken.contains(&Some(sequence)) {
                break;
            }
            sequence = next_sequence(Some(sequence));
        }
        Ok(cluster.clone().with_sequence(sequence))
    }
}
