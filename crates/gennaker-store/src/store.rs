//! The `Store` trait: everything Gennaker persists goes through it.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;
use crate::records::{
    ApiToken, ApplicationRecord, AuditEntry, AuditQuery, NewAuditEntry, NewToken, PipelineRecord,
    PipelineRevision, PipelineSave, Role, SaveOutcome, User,
};

/// Persistent state of a Gennaker installation.
///
/// Names of applications, pipelines and users are unique without regard to case, as in
/// Spinnaker; records keep the spelling they were created with.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Which backend this is (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Creates an application; a conflict when one with the same name exists.
    async fn create_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
    ) -> Result<ApplicationRecord>;
    /// Replaces an existing application's document. With `expected_version`, only when
    /// the application is still at that version (else a conflict), checked atomically
    /// with the write so concurrent editors cannot overwrite each other unseen.
    async fn update_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<ApplicationRecord>;
    /// Reads an application.
    async fn get_application(&self, name: &str) -> Result<Option<ApplicationRecord>>;
    /// Lists all applications, by name.
    async fn list_applications(&self) -> Result<Vec<ApplicationRecord>>;
    /// Deletes an application; refused while it still has pipelines.
    async fn delete_application(&self, name: &str) -> Result<ApplicationRecord>;

    /// Saves a pipeline by id or name: creates it, or stores a new revision when the
    /// document differs from the current one.
    async fn save_pipeline(
        &self,
        application: &str,
        save: &PipelineSave,
        actor: &str,
    ) -> Result<(PipelineRecord, SaveOutcome)>;
    /// Reads a pipeline's current revision by name.
    async fn get_pipeline(&self, application: &str, name: &str) -> Result<Option<PipelineRecord>>;
    /// Reads an application and, in the same query, its pipeline `name_or_id`: the one
    /// with that name, else the one with that id (the lookup of a request naming both
    /// in its path). `None` when the application does not exist.
    async fn get_application_pipeline(
        &self,
        application: &str,
        name_or_id: &str,
    ) -> Result<Option<(ApplicationRecord, Option<PipelineRecord>)>>;
    /// Reads a pipeline's current revision by id.
    async fn get_pipeline_by_id(&self, id: &str) -> Result<Option<PipelineRecord>>;
    /// Lists an application's pipelines, by name.
    async fn list_pipelines(&self, application: &str) -> Result<Vec<PipelineRecord>>;
    /// Deletes a pipeline and its revisions; returns what was deleted.
    async fn delete_pipeline(&self, application: &str, name: &str) -> Result<PipelineRecord>;
    /// Lists every revision of a pipeline, newest first.
    async fn pipeline_history(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Vec<PipelineRevision>>;
    /// Reads one revision of a pipeline.
    async fn pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<PipelineRevision>>;
    /// Makes an old revision current again, as a new revision.
    async fn restore_pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
        actor: &str,
    ) -> Result<PipelineRecord>;

    /// On a new installation (no user at all), creates the admin `token.user` together
    /// with `token`, in one transaction, so an admin never exists without a token. Returns
    /// false, changing nothing, when a user exists already (another server may have won).
    async fn create_first_admin(&self, token: &NewToken) -> Result<bool>;
    /// Counts users (zero means the installation is new).
    async fn count_users(&self) -> Result<i64>;
    /// Creates a user with the given roles (which must exist).
    async fn create_user(&self, name: &str, admin: bool, roles: &[String]) -> Result<User>;
    /// Reads a user.
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    /// Lists users, by name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Replaces a user's roles (which must exist).
    async fn set_user_roles(&self, name: &str, roles: &[String]) -> Result<User>;
    /// Deletes a user and their tokens.
    async fn delete_user(&self, name: &str) -> Result<()>;
    /// Sets a user's password hash (a PHC string), or removes it (`None`).
    async fn set_user_password(&self, name: &str, password_hash: Option<&str>) -> Result<()>;
    /// A user and their password hash, when the user exists and has a password.
    async fn user_password(&self, name: &str) -> Result<Option<(User, String)>>;

    /// Creates a role.
    async fn create_role(&self, name: &str, description: &str) -> Result<Role>;
    /// Lists roles, by name.
    async fn list_roles(&self) -> Result<Vec<Role>>;
    /// Deletes a role (and removes it from users).
    async fn delete_role(&self, name: &str) -> Result<()>;

    /// Stores a new token; a conflict when its secret is stored already, even revoked.
    async fn create_token(&self, token: &NewToken) -> Result<ApiToken>;
    /// Lists tokens, all or one user's.
    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>>;
    /// Reads a token's metadata.
    async fn get_token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Revokes a token.
    async fn revoke_token(&self, id: &str) -> Result<ApiToken>;
    /// Finds the live (not revoked, not expired) token with this hash, and its user.
    async fn authenticate(&self, token_hash: &str, now: i64) -> Result<Option<(ApiToken, User)>>;

    /// Appends to the audit log.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry>;
    /// Reads the audit log, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
}

/// Implements [`Store`] for `$type` by passing every call on to `$target`, an expression
/// of `$this` (the receiver) with the same methods. With `before`, `$before` runs first
/// with `$method` bound to the method's name (a test wrapper injecting faults).
///
/// It lists every method once, so the wrappers that pass calls on (the SQL store to its
/// per-entity code, the testing [`FaultyStore`](crate::testing)) never drift from the
/// trait: a method added to [`Store`] is added here, and the compiler checks the rest.
macro_rules! forward_store {
    ($type:ty, $this:ident => $target:expr) => {
        $crate::store::forward_store!(@impl $type, $this, _method, (), $target);
    };
    ($type:ty, $this:ident => $target:expr, before |$method:ident| $before:expr) => {
        $crate::store::forward_store!(@impl $type, $this, $method, $before, $target);
    };
    (@impl $type:ty, $this:ident, $method:ident, $before:expr, $target:expr) => {
        $crate::store::forward_store!(@methods $type, $this, $method, $before, $target;
            ping() -> ();
            create_application(name: &str, config: &::serde_json::Value, actor: &str) -> $crate::ApplicationRecord;
            update_application(name: &str, config: &::serde_json::Value, actor: &str, expected_version: Option<i64>) -> $crate::ApplicationRecord;
            get_application(name: &str) -> Option<$crate::ApplicationRecord>;
            list_applications() -> Vec<$crate::ApplicationRecord>;
            delete_application(name: &str) -> $crate::ApplicationRecord;
            save_pipeline(application: &str, save: &$crate::PipelineSave, actor: &str) -> ($crate::PipelineRecord, $crate::SaveOutcome);
            get_pipeline(application: &str, name: &str) -> Option<$crate::PipelineRecord>;
            get_application_pipeline(application: &str, name_or_id: &str) -> Option<($crate::ApplicationRecord, Option<$crate::PipelineRecord>)>;
            get_pipeline_by_id(id: &str) -> Option<$crate::PipelineRecord>;
            list_pipelines(application: &str) -> Vec<$crate::PipelineRecord>;
            delete_pipeline(application: &str, name: &str) -> $crate::PipelineRecord;
            pipeline_history(application: &str, name: &str) -> Vec<$crate::PipelineRevision>;
            pipeline_revision(application: &str, name: &str, revision: i64) -> Option<$crate::PipelineRevision>;
            restore_pipeline_revision(application: &str, name: &str, revision: i64, actor: &str) -> $crate::PipelineRecord;
            create_first_admin(token: &$crate::NewToken) -> bool;
            count_users() -> i64;
            create_user(name: &str, admin: bool, roles: &[String]) -> $crate::User;
            get_user(name: &str) -> Option<$crate::User>;
            list_users() -> Vec<$crate::User>;
            set_user_roles(name: &str, roles: &[String]) -> $crate::User;
            delete_user(name: &str) -> ();
            set_user_password(name: &str, password_hash: Option<&str>) -> ();
            user_password(name: &str) -> Option<($crate::User, String)>;
            create_role(name: &str, description: &str) -> $crate::Role;
            list_roles() -> Vec<$crate::Role>;
            delete_role(name: &str) -> ();
            create_token(token: &$crate::NewToken) -> $crate::ApiToken;
            list_tokens(user: Option<&str>) -> Vec<$crate::ApiToken>;
            get_token(id: &str) -> Option<$crate::ApiToken>;
            revoke_token(id: &str) -> $crate::ApiToken;
            authenticate(token_hash: &str, now: i64) -> Option<($crate::ApiToken, $crate::User)>;
            append_audit(entry: &$crate::NewAuditEntry) -> $crate::AuditEntry;
            list_audit(query: &$crate::AuditQuery) -> Vec<$crate::AuditEntry>;
        );
    };
    (@methods $type:ty, $this:ident, $method:ident, $before:expr, $target:expr;
        $($name:ident($($arg:ident: $arg_type:ty),*) -> $output:ty;)*
    ) => {
        #[::async_trait::async_trait]
        impl $crate::Store for $type {
            fn backend(&$this) -> &'static str {
                $target.backend()
            }
            $(
                async fn $name(&$this, $($arg: $arg_type),*) -> $crate::Result<$output> {
                    let $method = stringify!($name);
                    $before;
                    $target.$name($($arg),*).await
                }
            )*
        }
    };
}
pub(crate) use forward_store;
