//! Authorization inside stages: whether a running stage may act on a resource of
//! another application.
//!
//! The API checks the caller once, when an execution starts, against the execution's
//! own application. A stage may name resources of other applications (a server group,
//! a load balancer, a child pipeline), so every task that acts on one asks
//! [`Services::authorize`] right before the effect, at run time, inside the idempotent
//! task: a repeat after a crash checks again, and rights taken away since the start
//! (a role removed, a user deleted, an application's permissions narrowed) count.
//!
//! The rule:
//! - a resource of the execution's own application is always allowed (starting the
//!   execution needed EXECUTE there, saving its pipeline WRITE);
//! - otherwise the execution acts as its [`Principal`]: the user who started it, or,
//!   for an execution the system started with no user, its trigger's `runAsUser`; the
//!   user's CURRENT admin flag and roles are read from the store, and the target
//!   application's permissions decide with the API's rule
//!   ([`gennaker_core::check_application_access`]);
//! - a target application that does not exist is refused, even for admins: nobody
//!   owns what would be created or changed there;
//! - an execution with no user and no `runAsUser` acts only on its own application.

use gennaker_core::execution::{Execution, StageExecution};
use gennaker_core::{Access, AccessDenied, check_application_access};
use serde_json::Value;

use crate::task::{Services, TaskContext, TaskError};

/// A resource a stage acts on: what the authorization check judges and its message
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTarget<'a> {
    /// What it is: `server group`, `cluster`, `load balancer`, `pipeline`.
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The application that owns it, as the resource itself records it.
    pub application: &'a str,
}

/// Whom an execution acts as in other applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The user who started it (`authentication.user`).
    User(String),
    /// An execution started by the system with no user: the service account its
    /// trigger names (`trigger.runAsUser`, Spinnaker's run-as user).
    RunAs(String),
    /// Started by the system with no user and no `runAsUser`: no rights outside its
    /// own application.
    System,
}

impl Principal {
    /// Whom `execution` acts as.
    ///
    /// A `runAsUser` counts only when no user started the execution: the trigger of a
    /// run a person starts is written by that person (`POST …/executions` takes any
    /// trigger fields), so honouring it would let anyone borrow any user's rights.
    pub fn of(execution: &Execution) -> Self {
        let user = execution.authentication.user.trim();
        if !user.is_empty() {
            return Self::User(user.to_owned());
        }
        match execution.trigger.get("runAsUser").and_then(Value::as_str) {
            Some(run_as) if !run_as.trim().is_empty() => Self::RunAs(run_as.trim().to_owned()),
            _ => Self::System,
        }
    }

    /// How a refusal names the principal.
    fn described(&self) -> String {
        match self {
            Self::User(name) => format!("user '{name}' who started this execution"),
            Self::RunAs(name) => format!("user '{name}' (the trigger's runAsUser)"),
            Self::System => "the system".to_owned(),
        }
    }
}

impl Services {
    /// Succeeds when `stage` of `execution` may have `access` to `target` (see the
    /// module's rule); a refusal is a permanent task error naming the stage, the
    /// resource, the user and the missing permission. A store that cannot answer is a
    /// transient error: the check is retried, never skipped.
    pub async fn authorize(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        target: StageTarget<'_>,
        access: Access,
    ) -> Result<(), TaskError> {
        if target
            .application
            .eq_ignore_ascii_case(&execution.application)
        {
            return Ok(());
        }
        let refuse = |why: String| {
            tracing::warn!(
                execution = %execution.id,
                stage = %stage.name,
                target = %target.name,
                application = %target.application,
                %access,
                "stage refused: {why}"
            );
            TaskError::Permanent(format!(
                "stage '{}' ({}) may not act on {} '{}' of application '{}': {why}",
                stage.name, stage.stage_type, target.kind, target.name, target.application
            ))
        };
        let principal = Principal::of(execution);
        let name = match &principal {
            Principal::User(name) | Principal::RunAs(name) => name,
            Principal::System => {
                return Err(refuse(format!(
                    "this execution was started by the system with no user and its trigger names no runAsUser, so it may act only on its own application '{}'",
                    execution.application
                )));
            }
        };
        let who = principal.described();
        let unavailable = |e: gennaker_store::StoreError| {
            TaskError::Transient(format!(
                "cannot check whether stage '{}' may act on application '{}': {e}",
                stage.name, target.application
            ))
        };
        let Some(user) = self.store.get_user(name).await.map_err(unavailable)? else {
            return Err(refuse(format!("{who} no longer exists")));
        };
        let Some(application) = self
            .store
            .get_application(target.application)
            .await
            .map_err(unavailable)?
        else {
            return Err(refuse(format!(
                "application '{}' does not exist; create it first, or name a cluster of application '{}'",
                target.application, execution.application
            )));
        };
        match check_application_access(&application.config, access, user.admin, &user.roles) {
            Ok(()) => Ok(()),
            Err(AccessDenied::UnreadablePermissions(err)) => Err(refuse(format!(
                "its permissions cannot be read ({err}); only admins may act on it until they are fixed"
            ))),
            // The target's role lists are not shown: whoever reads this execution may
            // not be allowed to read the other application.
            Err(AccessDenied::MissingRole { .. }) => Err(refuse(format!(
                "{who} lacks {access} permission on '{}'; an admin can grant a role with {access} on '{}' (`gennaker user set-roles`), or the stage can run in a pipeline of '{}'",
                target.application, target.application, target.application
            ))),
        }
    }
}

impl TaskContext<'_> {
    /// [`Services::authorize`] for this task's stage.
    pub async fn authorize(
        &self,
        target: StageTarget<'_>,
        access: Access,
    ) -> Result<(), TaskError> {
        self.services
            .authorize(self.execution, self.stage, target, access)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execution(user: &str, trigger: Value) -> Execution {
        let requester = crate::build::Requester {
            user: user.into(),
            roles: vec![],
            origin: "test".into(),
        };
        let mut execution = crate::build::orchestration_execution("shop", "t", &[], &requester, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        execution.trigger = trigger.as_object().cloned().unwrap_or_default();
        execution
    }

    #[test]
    fn a_person_is_judged_as_herself_whatever_the_trigger_says() {
        assert_eq!(
            Principal::of(&execution("alice", json!({"runAsUser": "admin"}))),
            Principal::User("alice".into())
        );
        assert_eq!(
            Principal::of(&execution("", json!({"runAsUser": "deployer"}))),
            Principal::RunAs("deployer".into())
        );
        assert_eq!(
            Principal::of(&execution(" ", json!({"runAsUser": " "}))),
            Principal::System
        );
        assert_eq!(Principal::of(&execution("", json!({}))), Principal::System);
    }
}
