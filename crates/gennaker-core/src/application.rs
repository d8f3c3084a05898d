//! Applications as Front50 stores them, with Fiat's permission model.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::problems::{JsonPath, Problem, ValidationReport};
use crate::shape::{Shape, shaped_serde};

/// Longest application name accepted (AWS's limit, the strictest Spinnaker applies).
pub const MAX_APP_NAME_LEN: usize = 250;

/// An application (Front50's `Application`), camelCase JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct Application {
    /// Unique name; also the first part of every cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Owner's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the application runs (`kubernetes`, `aws`, …; Gennaker adds `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_providers: Option<CloudProviders>,
    /// Who may read, change and run it.
    #[serde(default, skip_serializing_if = "Permissions::is_empty")]
    pub permissions: Permissions,
    /// Every other key (`createTs`, `updateTs`, `trafficGuards`, `repoType`, …), verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Application);

/// The error of [`Application::from_value`].
#[derive(Debug, thiserror::Error)]
#[error("not an application: {0}")]
pub struct ApplicationError(#[from] serde_json::Error);

impl Application {
    /// An application with just a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Reads an application from its JSON value.
    pub fn from_value(value: Value) -> Result<Self, ApplicationError> {
        Ok(serde_json::from_value(value)?)
    }

    /// Writes the application as JSON, restoring the key order it was read in.
    pub fn to_value(&self) -> Value {
        // Cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The cloud provider names, whichever form they were stored in.
    pub fn cloud_provider_names(&self) -> Vec<String> {
        self.cloud_providers
            .as_ref()
            .map(CloudProviders::names)
            .unwrap_or_default()
    }
}

/// `cloudProviders`: Front50 stores a comma-separated string, Deck and `spin` send an
/// array. Both are read and written back as they came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CloudProviders {
    /// `"kubernetes,aws"`.
    Csv(String),
    /// `["kubernetes", "aws"]`.
    List(Vec<String>),
}

impl CloudProviders {
    /// The provider names, trimmed, without empties.
    pub fn names(&self) -> Vec<String> {
        let names: Vec<&str> = match self {
            Self::Csv(s) => s.split(',').collect(),
            Self::List(list) => list.iter().map(String::as_str).collect(),
        };
        names
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// What a caller wants to do with an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Access {
    /// See the application, its pipelines and executions.
    Read,
    /// Change the application and its pipelines.
    Write,
    /// Run pipelines, judge, cancel.
    Execute,
}

impl Access {
    /// The name Fiat and the API use: `READ`, `WRITE`, `EXECUTE`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Execute => "EXECUTE",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why [`check_application_access`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// The application's `permissions` cannot be read: only admins may use it.
    #[error("its permissions cannot be read ({0}); only admins may use it until they are fixed")]
    UnreadablePermissions(String),
    /// None of the user's roles is granted the access.
    #[error("none of the user's roles is granted {access}")]
    MissingRole {
        /// The access asked for.
        access: Access,
        /// The roles granted it (with the `EXECUTE` → `READ` fallback applied).
        granted: Vec<String>,
    },
}

/// The one rule deciding whether a user may act on an application, shared by the API
/// and the stages that act on other applications: admins may do everything; an
/// application whose document names no permissions (or no role at all) is open to
/// every authenticated user; otherwise one of the user's roles must be granted
/// `access` ([`Permissions::allows`]); unreadable permissions deny everyone but admins.
pub fn check_application_access<S: AsRef<str>>(
    document: &Value,
    access: Access,
    admin: bool,
    roles: &[S],
) -> Result<(), AccessDenied> {
    if admin {
        return Ok(());
    }
    let permissions = match Permissions::of_application_document(document) {
        Ok(None) => return Ok(()),
        Ok(Some(permissions)) => permissions,
        Err(err) => return Err(AccessDenied::UnreadablePermissions(err)),
    };
    if permissions.allows(access, roles) {
        Ok(())
    } else {
        Err(AccessDenied::MissingRole {
            access,
            granted: permissions.roles_for(access).to_vec(),
        })
    }
}

/// Roles granted each access: `{"READ": [...], "WRITE": [...], "EXECUTE": [...]}`.
///
/// Fiat's semantics, which Gennaker keeps so imported permissions mean the same thing:
/// - an application with no roles at all is unrestricted: every authenticated user has
///   every access;
/// - when `EXECUTE` is absent or empty, the `READ` roles may execute (Fiat's default
///   `executeFallback: READ`);
/// - `WRITE` does not imply `READ`: Fiat grants each access from its own list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Permissions {
    /// Roles that may read.
    #[serde(rename = "READ", default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<String>>,
    /// Roles that may write.
    #[serde(rename = "WRITE", default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Vec<String>>,
    /// Roles that may execute; falls back to `READ` when absent or empty.
    #[serde(rename = "EXECUTE", default, skip_serializing_if = "Option::is_none")]
    pub execute: Option<Vec<String>>,
    #[serde(skip)]
    shape: Shape,
}
shaped_serde!(Permissions);

impl Permissions {
    /// The permissions in an application document: `None` when it names none
    /// (unrestricted), `Err` when they cannot be read (which denies everyone but admins).
    pub fn of_application_document(document: &Value) -> Result<Option<Self>, String> {
        match document.get("permissions") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    /// True when no access is restricted (no key present).
    pub fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none() && self.execute.is_none()
    }

    /// True when no role is named anywhere: the application is open to every
    /// authenticated user.
    pub fn is_unrestricted(&self) -> bool {
        [&self.read, &self.write, &self.execute]
            .iter()
            .all(|roles| roles.as_ref().is_none_or(Vec::is_empty))
    }

    /// The roles granted `access`, with the `EXECUTE` → `READ` fallback applied.
    pub fn roles_for(&self, access: Access) -> &[String] {
        let roles = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
            Access::Execute => match &self.execute {
                Some(roles) if !roles.is_empty() => return roles,
                _ => &self.read,
            },
        };
        roles.as_deref().unwrap_or_default()
    }

    /// Whether a user holding `user_roles` has `access` (role names compare
    /// case-insensitively, as Fiat lower-cases them).
    pub fn allows<S: AsRef<str>>(&self, access: Access, user_roles: &[S]) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        self.roles_for(access).iter().any(|granted| {
            user_roles
                .iter()
                .any(|held| held.as_ref().eq_ignore_ascii_case(granted))
        })
    }
}

/// Checks an application name against Front50's rules (`^[a-zA-Z0-9._-]+$`, at most
/// 250 characters) and warns where Frigga cannot parse cluster names back.
pub fn validate_application_name(name: &str, path: &JsonPath, report: &mut ValidationReport) {
    if name.trim().is_empty() {
        report.push(
            Problem::error(path, "the application name is empty")
                .with_hint("use letters, digits, '.', '_' or '-', e.g. \"checkout\""),
        );
        return;
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        report.push(
            Problem::error(
                path,
                format!("application name '{name}' contains '{bad}'; only letters, digits, '.', '_' and '-' are allowed"),
            ),
        );
    }
    if name.chars().count() > MAX_APP_NAME_LEN {
        report.push(Problem::error(
            path,
            format!("application name is longer than {MAX_APP_NAME_LEN} characters"),
        ));
    }
    if name.contains('-') {
        report.push(
            Problem::warning(
                path,
                format!("application name '{name}' contains '-': cluster names built from it (app-stack-detail) cannot be parsed back into application and stack"),
            )
            .with_hint("prefer a name without '-', e.g. with '_' or '.'"),
        );
    }
}

/// Validates an application document: every problem with its path.
pub fn validate_application_value(value: &Value) -> ValidationReport {
    let mut report = ValidationReport::default();
    let root = JsonPath::root();
    let Some(obj) = value.as_object() else {
        report.push(Problem::error(
            &root,
            "an application must be a JSON object like {\"name\": \"myapp\", \"email\": \"team@example.com\"}",
        ));
        return report;
    };
    match obj.get("name") {
        None | Some(Value::Null) => report.push(Problem::error(
            root.key("name"),
            "the application has no name",
        )),
        Some(Value::String(name)) => {
            validate_application_name(name, &root.key("name"), &mut report)
        }
        Some(_) => report.push(Problem::error(root.key("name"), "name must be a string")),
    }
    match obj.get("email") {
        None | Some(Value::Null) => {}
        Some(Value::String(email)) if email.is_empty() || looks_like_email(email) => {}
        Some(Value::String(email)) => report.push(
            Problem::error(
                root.key("email"),
                format!("'{email}' is not an email address"),
            )
            .with_hint("expected something like team@example.com"),
        ),
        Some(_) => report.push(Problem::error(root.key("email"), "email must be a string")),
    }
    if let Some(desc) = obj.get("description")
        && !(desc.is_string() || desc.is_null())
    {
        report.push(Problem::error(
            root.key("description"),
            "description must be a string",
        ));
    }
    check_cloud_providers(
        obj.get("cloudProviders"),
        &root.key("cloudProviders"),
        &mut report,
    );
    check_permissions(
        obj.get("permissions"),
        &root.key("permissions"),
        &mut report,
    );
    report
}

/// Loose on purpose: one `@` with something on both sides and a dot in the domain;
/// the mail server is the real judge.
fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(char::is_whitespace)
}

fn check_cloud_providers(value: Option<&Value>, path: &JsonPath, report: &mut ValidationReport) {
    match value {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    report.push(Problem::error(
                        path.index(i),
                        "a cloud provider must be a string",
                    ));
                }
            }
        }
        Some(_) => report.push(Problem::error(
            path,
            "cloudProviders must be a list of names or a comma-separated string",
        )),
    }
}

fn check_permissions(value: Option<&Value>, path: &JsonPath, report: &mut ValidationReport) {
    let obj = match value {
        None | Some(Value::Null) => return,
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            report.push(Problem::error(
                path,
                "permissions must be an object like {\"READ\": [\"role\"], \"WRITE\": [\"role\"], \"EXECUTE\": [\"role\"]}",
            ));
            return;
        }
    };
    for (key, roles) in obj {
        let key_path = path.key(key);
        if !matches!(key.as_str(), "READ" | "WRITE" | "EXECUTE") {
            report.push(
                Problem::error(&key_path, format!("unknown permission '{key}'"))
                    .with_hint("permissions are READ, WRITE and EXECUTE (upper case)"),
            );
            continue;
        }
        match roles {
            Value::Null => {}
            Value::Array(items) => {
                for (i, role) in items.iter().enumerate() {
                    match role {
                        Value::String(s) if !s.trim().is_empty() => {}
                        _ => report.push(Problem::error(
                            key_path.index(i),
                            "a role must be a non-empty string",
                        )),
                    }
                }
            }
            _ => report.push(Problem::error(
                &key_path,
                format!("{key} must be a list of role names"),
            )),
        }
    }
}
