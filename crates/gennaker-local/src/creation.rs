//! Creating a server group exactly once per origin (the stage that asked for it), so a
//! retried or resumed deploy stage finds its group instead of making a second one.
//!
//! Naming and recording a new group are serialised by one provider-wide lock, held only
//! for that short store work: the artifact is fetched before, outside it, so one slow
//! download never stalls the other deploys (fetches of one artifact share a download).

use std::collections::BTreeMap;
use std::sync::Arc;

use gennaker_core::redact::redact_url_passwords;
use gennaker_deploy::{CreateServerGroup, DeployError, ServerGroup, ServerGroupOrigin};

use crate::artifacts::{ArtifactCache, refused_url};
use crate::error::LocalError;
use crate::group::Group;
use crate::instances::Instances;
use crate::policy::check_account;
use crate::records::GroupRecord;
use crate::spec::{ArtifactSource, ProcessSpec};

/// Creates server groups.
#[derive(Debug)]
pub(crate) struct Creator {
    instances: Arc<Instances>,
    cache: ArtifactCache,
    /// For artifact downloads: the outbound policy's client, so an artifact URL
    /// reaches only what the operator allows (not 127.0.0.1 or the private network by
    /// default).
    http: reqwest::Client,
    /// Serialises naming and recording, so one origin never creates two groups.
    record: tokio::sync::Mutex<()>,
}

impl Creator {
    pub(crate) fn new(instances: Arc<Instances>, cache: ArtifactCache) -> Result<Self, LocalError> {
        let http = instances
            .settings
            .outbound
            .client()
            .map_err(|e| LocalError::Io {
                path: "outbound http client".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            instances,
            cache,
            http,
            record: tokio::sync::Mutex::new(()),
        })
    }

    /// Refuses an artifact URL whose scheme or address the outbound policy refuses
    /// before any connection is made (the client would refuse it too, but only once
    /// connected). Host names are judged by the client's resolver when fetched.
    fn check_url(&self, url: &str) -> Result<(), LocalError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            LocalError::Refused(
                redact_url_passwords(&format!(
                    "artifact url '{url}' is not a valid URL ({e}): write an http:// or https:// URL"
                ))
                .into_owned(),
            )
        })?;
        self.instances
            .settings
            .outbound
            .check_url(&parsed)
            .map_err(|refusal| refused_url(url, &refusal))
    }

    /// The group of `request.origin`, created (artifact fetched, record stored, then
    /// instances started) unless it exists already.
    pub(crate) async fn create(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError> {
        request.capacity.validate().map_err(DeployError::Invalid)?;
        check_account(&request.account).map_err(LocalError::from)?;
        let spec = ProcessSpec::parse(&request.spec)?;
        // A repeated request downloads nothing: its group is found first.
        if let Some(existing) = self.existing(&request.origin).await? {
            return Ok(existing);
        }
        // Checked again here although the pipeline was checked when saved: an
        // expression, a spec found upstream or a narrowed policy is only known now.
        let policy = &self.instances.settings.host;
        policy.check_spec(&spec).map_err(LocalError::from)?;
        let artifact = match &spec.artifact {
            // Copied from where the path resolves to, so the file read is the one checked.
            Some(ArtifactSource::Path(path)) => {
                let resolved = policy.artifact_path(path).map_err(LocalError::from)?;
                let source = ArtifactSource::Path(resolved.display().to_string());
                Some(self.cache.fetch(&source, &self.http).await?)
            }
            Some(ArtifactSource::Url(url)) => {
                self.check_url(url)?;
                Some(
                    self.cache
                        .fetch(&ArtifactSource::Url(url.clone()), &self.http)
                        .await?,
                )
            }
            Some(source @ ArtifactSource::Base64(_)) => {
                Some(self.cache.fetch(source, &self.http).await?)
            }
            None => None,
        };
        let registry = &self.instances.registry;
        let _one_at_a_time = self.record.lock().await;
        // The same origin may have been created while the artifact was fetched.
        if let Some(existing) = self.existing(&request.origin).await? {
            return Ok(existing);
        }
        let moniker = registry
            .next_moniker(&request.account, &request.moniker)
            .await?;
        let record = GroupRecord {
            name: moniker.name(),
            moniker,
            account: request.account,
            capacity: request.capacity,
            disabled: !request.enabled,
            load_balancers: request.load_balancers,
            created_time: gennaker_store::now_millis(),
            spec: request.spec,
            origin: Some(request.origin),
            artifact,
            instances: BTreeMap::new(),
        };
        let group = Arc::new(Group::new(record, spec));
        // Persisted (with its origin) before any process starts.
        registry.add(group.clone()).await?;
        tracing::info!(group = %group.key, "server group created");
        self.instances.reconcile(&group).await?;
        Ok(group.view())
    }

    /// The group a stage created already, if any.
    async fn existing(
        &self,
        origin: &ServerGroupOrigin,
    ) -> Result<Option<ServerGroup>, DeployError> {
        let registry = &self.instances.registry;
        let records = registry.load_records().await?;
        let Some(record) = records.iter().find(|r| r.origin.as_ref() == Some(origin)) else {
            return Ok(None);
        };
        registry
            .get(&record.key())
            .map(|g| Some(g.view()))
            .ok_or_else(|| DeployError::no_server_group(&record.name))
    }
}
