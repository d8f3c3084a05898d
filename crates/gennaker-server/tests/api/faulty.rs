//! A store that passes everything to a real [`SqlStore`] but lets a test hold up or fail
//! audit writes, to see what the server does when the audit log is slow or broken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use gennaker_store::{
    ApiToken, ApplicationRecord, AuditEntry, AuditQuery, NewAuditEntry, NewToken, PipelineRecord,
    PipelineRevision, PipelineSave, Result, Role, SaveOutcome, SqlStore, Store, StoreError, User,
};
use serde_json::Value;
use tokio::sync::Semaphore;

/// The switches a test holds.
#[derive(Debug)]
pub(crate) struct AuditFaults {
    /// Audit writes wait for a permit (none at first, so they wait until `open`).
    gate: Semaphore,
    /// Audit writes fail while this is set.
    fail: AtomicBool,
}

impl AuditFaults {
    /// Audit writes wait until [`AuditFaults::open`].
    pub(crate) fn closed() -> Arc<Self> {
        Arc::new(AuditFaults {
            gate: Semaphore::new(0),
            fail: AtomicBool::new(false),
        })
    }

    /// Audit writes fail.
    pub(crate) fn failing() -> Arc<Self> {
        let faults = AuditFaults::closed();
        faults.open();
        faults.fail.store(true, Ordering::SeqCst);
        faults
    }

    /// Lets every waiting and later audit write through.
    pub(crate) fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

/// [`SqlStore`] with [`AuditFaults`] on `append_audit`.
#[derive(Debug)]
pub(crate) struct FaultyStore {
    pub inner: SqlStore,
    pub faults: Arc<AuditFaults>,
}

#[async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn create_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
    ) -> Result<ApplicationRecord> {
        self.inner.create_application(name, config, actor).await
    }
    async fn update_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<ApplicationRecord> {
        self.inner
            .update_application(name, config, actor, expected_version)
            .await
    }
    async fn get_application(&self, name: &str) -> Result<Option<ApplicationRecord>> {
        self.inner.get_application(name).await
    }
    async fn list_applications(&self) -> Result<Vec<ApplicationRecord>> {
        self.inner.list_applications().await
    }
    async fn delete_application(&self, name: &str) -> Result<ApplicationRecord> {
        self.inner.delete_application(name).await
    }
    async fn save_pipeline(
        &self,
        application: &str,
        save: &PipelineSave,
        actor: &str,
    ) -> Result<(PipelineRecord, SaveOutcome)> {
        self.inner.save_pipeline(application, save, actor).await
    }
    async fn get_pipeline(&self, application: &str, name: &str) -> Result<Option<PipelineRecord>> {
        self.inner.get_pipeline(application, name).await
    }
    async fn get_pipeline_by_id(&self, id: &str) -> Result<Option<PipelineRecord>> {
        self.inner.get_pipeline_by_id(id).await
    }
    async fn list_pipelines(&self, application: &str) -> Result<Vec<PipelineRecord>> {
        self.inner.list_pipelines(application).await
    }
    async fn delete_pipeline(&self, application: &str, name: &str) -> Result<PipelineRecord> {
        self.inner.delete_pipeline(application, name).await
    }
    async fn pipeline_history(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Vec<PipelineRevision>> {
        self.inner.pipeline_history(application, name).await
    }
    async fn pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<PipelineRevision>> {
        self.inner
            .pipeline_revision(application, name, revision)
            .await
    }
    async fn restore_pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
        actor: &str,
    ) -> Result<PipelineRecord> {
        self.inner
            .restore_pipeline_revision(application, name, revision, actor)
            .await
    }
    async fn create_first_admin(&self, token: &NewToken) -> Result<bool> {
        self.inner.create_first_admin(token).await
    }
    async fn count_users(&self) -> Result<i64> {
        self.inner.count_users().await
    }
    async fn create_user(&self, name: &str, admin: bool, roles: &[String]) -> Result<User> {
        self.inner.create_user(name, admin, roles).await
    }
    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        self.inner.get_user(name).await
    }
    async fn list_users(&self) -> Result<Vec<User>> {
        self.inner.list_users().await
    }
    async fn set_user_roles(&self, name: &str, roles: &[String]) -> Result<User> {
        self.inner.set_user_roles(name, roles).await
    }
    async fn delete_user(&self, name: &str) -> Result<()> {
        self.inner.delete_user(name).await
    }
    async fn create_role(&self, name: &str, description: &str) -> Result<Role> {
        self.inner.create_role(name, description).await
    }
    async fn list_roles(&self) -> Result<Vec<Role>> {
        self.inner.list_roles().await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.inner.delete_role(name).await
    }
    async fn create_token(&self, token: &NewToken) -> Result<ApiToken> {
        self.inner.create_token(token).await
    }
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        self.inner.list_tokens(user).await
    }
    async fn get_token(&self, id: &str) -> Result<Option<ApiToken>> {
        self.inner.get_token(id).await
    }
    async fn revoke_token(&self, id: &str) -> Result<ApiToken> {
        self.inner.revoke_token(id).await
    }
    async fn authenticate(&self, token_hash: &str, now: i64) -> Result<Option<(ApiToken, User)>> {
        self.inner.authenticate(token_hash, now).await
    }
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let _permit = self
            .faults
            .gate
            .acquire()
            .await
            .map_err(|_| StoreError::Conflict("the audit gate was closed".to_owned()))?;
        if self.faults.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Conflict(
                "the test made audit writes fail".to_owned(),
            ));
        }
        self.inner.append_audit(entry).await
    }
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.inner.list_audit(query).await
    }
}
