//! `[[kubernetes.accounts]]` in gennaker.toml: the clusters stages may deploy to, how
//! to reach each one, and which namespaces a stage may touch there; and
//! `[[artifacts.github.accounts]]`: the GitHub (or GitHub Enterprise) APIs manifest
//! stages read `github/file` artifacts from.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SettingsError;

/// The most accounts a server may configure (each holds a client and its caches).
pub const MAX_ACCOUNTS: usize = 100;

/// The most namespaces one account may list.
pub const MAX_NAMESPACES: usize = 1000;

/// `[kubernetes]` in gennaker.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// `[[kubernetes.accounts]]`: the clusters stages name by `account`.
    #[serde(default)]
    pub accounts: Vec<AccountSettings>,
}

/// One `[[kubernetes.accounts]]` entry. Either `kubeconfig` (and optionally `context`),
/// or `url` + `token` (+ `ca_file`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The name stages give as `account` (or `credentials`).
    pub name: String,
    /// A kubeconfig file to read the cluster, user and credentials from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its `current-context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server's URL, when no kubeconfig is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The bearer token sent to `url`. Never logged or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed the API server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The namespaces stages may act in; empty: all of them.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// The token is replaced by `<redacted>`: settings are logged at start-up and shown in
/// errors, and a bearer token there is a cluster credential leaked.
impl std::fmt::Debug for AccountSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSettings")
            .field("name", &self.name)
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("namespaces", &self.namespaces)
            .finish()
    }
}

impl KubernetesSettings {
    /// Checks the accounts: names unique and well-formed, exactly one way to connect,
    /// namespaces valid DNS labels. Errors name the entry (`kubernetes.accounts[1]`)
    /// and the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.accounts.len() > MAX_ACCOUNTS {
            return Err(SettingsError::new(
                "kubernetes.accounts",
                format!(
                    "{} accounts are configured; at most {MAX_ACCOUNTS} are allowed",
                    self.accounts.len()
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            let at = |field: &str| format!("kubernetes.accounts[{i}].{field}");
            if !is_dns_label(&account.name) {
                return Err(SettingsError::new(
                    at("name"),
                    format!(
                        "'{}' is not a valid account name: use lower-case letters, digits and '-' (at most 63)",
                        account.name
                    ),
                ));
            }
            if !names.insert(account.name.as_str()) {
                return Err(SettingsError::new(
                    at("name"),
                    format!("account '{}' is configured twice", account.name),
                ));
            }
            match (&account.kubeconfig, &account.url) {
                (Some(_), Some(_)) => {
                    return Err(SettingsError::new(
                        at("url"),
                        "give either kubeconfig (and context) or url + token, not both",
                    ));
                }
                (None, None) => {
                    return Err(SettingsError::new(
                        at("kubeconfig"),
                        "the account needs kubeconfig = \"/path/to/kubeconfig\", or url + token (+ ca_file)",
                    ));
                }
                (Some(_), None) => {
                    for (field, set) in [
                        ("token", account.token.is_some()),
                        ("ca_file", account.ca_file.is_some()),
                    ] {
                        if set {
                            return Err(SettingsError::new(
                                at(field),
                                format!(
                                    "{field} is only used with url; the kubeconfig holds the credentials"
                                ),
                            ));
                        }
                    }
                }
                (None, Some(url)) => {
                    if !url.starts_with("https://") && !url.starts_with("http://") {
                        return Err(SettingsError::new(
                            at("url"),
                            format!("'{url}' is not an http(s) URL of an API server"),
                        ));
                    }
                    if account.token.as_deref().is_none_or(str::is_empty) {
                        return Err(SettingsError::new(
                            at("token"),
                            "an account with url needs a bearer token",
                        ));
                    }
                    if account.context.is_some() {
                        return Err(SettingsError::new(
                            at("context"),
                            "context is only used with kubeconfig",
                        ));
                    }
                }
            }
            if account.namespaces.len() > MAX_NAMESPACES {
                return Err(SettingsError::new(
                    at("namespaces"),
                    format!("at most {MAX_NAMESPACES} namespaces may be listed"),
                ));
            }
            for (j, namespace) in account.namespaces.iter().enumerate() {
                if !is_dns_label(namespace) {
                    return Err(SettingsError::new(
                        format!("kubernetes.accounts[{i}].namespaces[{j}]"),
                        format!("'{namespace}' is not a valid namespace name"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// GitHub's public API, the default `api_base_url` of a GitHub artifact account.
pub const GITHUB_API: &str = "https://api.github.com";

/// The most GitHub artifact accounts a server may configure.
pub const MAX_ARTIFACT_ACCOUNTS: usize = 100;

/// `[artifacts]` in gennaker.toml: the accounts artifacts are read through
/// (Spinnaker's `artifacts.*.accounts`). `embedded/base64` artifacts need none, and
/// `http/file` artifacts are fetched under the `[outbound]` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSettings {
    /// `[artifacts.github]`: `github/file` artifacts.
    #[serde(default)]
    pub github: GithubArtifactSettings,
}

/// `[artifacts.github]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubArtifactSettings {
    /// `[[artifacts.github.accounts]]`: the names artifacts give as `artifactAccount`.
    #[serde(default)]
    pub accounts: Vec<GithubAccountSettings>,
}

/// One `[[artifacts.github.accounts]]` entry: a GitHub API and the token read with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAccountSettings {
    /// The name artifacts give as `artifactAccount` (or stages as
    /// `manifestArtifactAccount`).
    pub name: String,
    /// The API's base URL: `https://api.github.com` (the default) or a GitHub
    /// Enterprise server's `https://ghe.example.com/api/v3`. An artifact's reference
    /// must be a contents URL under it, so the token goes nowhere else.
    #[serde(default = "default_github_api")]
    pub api_base_url: String,
    /// The token sent as `Authorization: Bearer …` (none: anonymous, public
    /// repositories only). Never logged, shown or stored with executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn default_github_api() -> String {
    GITHUB_API.to_owned()
}

/// The token is replaced by `<redacted>`, as an account's.
impl std::fmt::Debug for GithubAccountSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAccountSettings")
            .field("name", &self.name)
            .field("api_base_url", &self.api_base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ArtifactSettings {
    /// Checks the accounts: names unique and well-formed, base URLs http(s) without
    /// credentials, query or fragment, tokens not blank. Errors name the entry
    /// (`artifacts.github.accounts[1]`) and the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let accounts = &self.github.accounts;
        if accounts.len() > MAX_ARTIFACT_ACCOUNTS {
            return Err(SettingsError::new(
                "artifacts.github.accounts",
                format!(
                    "{} accounts are configured; at most {MAX_ARTIFACT_ACCOUNTS} are allowed",
                    accounts.len()
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, account) in accounts.iter().enumerate() {
            let at = |field: &str| format!("artifacts.github.accounts[{i}].{field}");
            let name = &account.name;
            if name.is_empty()
                || name.len() > 63
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(SettingsError::new(
                    at("name"),
                    format!(
                        "'{name}' is not a valid account name: use letters, digits, '-', '_' and '.' (at most 63)"
                    ),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(SettingsError::new(
                    at("name"),
                    format!("account '{name}' is configured twice"),
                ));
            }
            let base = &account.api_base_url;
            let problem = match reqwest::Url::parse(base) {
                Err(err) => Some(format!("is not a URL ({err})")),
                Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                    Some("is not an http(s) URL".to_owned())
                }
                Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                    Some("must not hold credentials: set token instead".to_owned())
                }
                Ok(url) if url.query().is_some() || url.fragment().is_some() => {
                    Some("must not have a query or fragment".to_owned())
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return Err(SettingsError::new(
                    at("api_base_url"),
                    format!(
                        "'{}' {problem}; write e.g. \"{GITHUB_API}\" or \"https://ghe.example.com/api/v3\"",
                        gennaker_core::redact::redact_url_passwords(base)
                    ),
                ));
            }
            if account
                .token
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                return Err(SettingsError::new(
                    at("token"),
                    "the token is blank: give one, or leave token out for public repositories",
                ));
            }
        }
        Ok(())
    }
}

/// An RFC 1123 label: what Kubernetes accepts as a namespace name.
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> AccountSettings {
        AccountSettings {
            name: name.into(),
            url: Some("https://127.0.0.1:6443".into()),
            token: Some("s3cr3t-token".into()),
            ..AccountSettings::default()
        }
    }

    fn github(name: &str, base: &str) -> GithubAccountSettings {
        GithubAccountSettings {
            name: name.into(),
            api_base_url: base.into(),
            token: Some("ghp_s3cr3t".into()),
        }
    }

    #[test]
    fn github_accounts_are_checked_with_the_entry_and_field_named() {
        let settings = |accounts| ArtifactSettings {
            github: GithubArtifactSettings { accounts },
        };
        let ok = settings(vec![
            github("github", GITHUB_API),
            github("ghe", "https://ghe.example.com/api/v3"),
        ]);
        assert_eq!(ok.validate(), Ok(()));
        assert!(!format!("{ok:?}").contains("s3cr3t"));

        let twice = settings(vec![github("gh", GITHUB_API), github("gh", GITHUB_API)]);
        let err = twice.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("artifacts.github.accounts[1].name"),
            "{err}"
        );

        for base in ["ftp://h/", "not a url", "https://u:pw@h/", "https://h/?x=1"] {
            let err = settings(vec![github("gh", base)])
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("artifacts.github.accounts[0].api_base_url"),
                "{err}"
            );
            assert!(!err.contains(":pw@"), "{err}");
        }
        let mut blank = github("gh", GITHUB_API);
        blank.token = Some(" ".into());
        let err = settings(vec![blank]).validate().unwrap_err().to_string();
        assert!(
            err.starts_with("artifacts.github.accounts[0].token"),
            "{err}"
        );

        let parsed: ArtifactSettings =
            serde_json::from_value(serde_json::json!({"github": {"accounts": [{"name": "gh"}]}}))
                .unwrap();
        assert_eq!(parsed.github.accounts[0].api_base_url, GITHUB_API);
        assert_eq!(parsed.github.accounts[0].token, None);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let shown = format!("{:?}", account("k8s"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn accounts_are_checked_with_the_entry_and_field_named() {
        let ok = KubernetesSettings {
            accounts: vec![account("k8s"), account("prod")],
        };
        assert_eq!(ok.validate(), Ok(()));

        let twice = KubernetesSettings {
            accounts: vec![account("k8s"), account("k8s")],
        };
        let err = twice.validate().unwrap_err().to_string();
        assert!(err.starts_with("kubernetes.accounts[1].name"), "{err}");

        let mut both = account("k8s");
        both.kubeconfig = Some("/etc/kube".into());
        let err = KubernetesSettings {
            accounts: vec![both],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("not both"), "{err}");

        let mut tokenless = account("k8s");
        tokenless.token = None;
        let err = KubernetesSettings {
            accounts: vec![tokenless],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("kubernetes.accounts[0].token"), "{err}");

        let mut bad_namespace = account("k8s");
        bad_namespace.namespaces = vec!["default".into(), "Shop".into()];
        let err = KubernetesSettings {
            accounts: vec![bad_namespace],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("kubernetes.accounts[0].namespaces[1]"),
            "{err}"
        );

        let err = KubernetesSettings {
            accounts: vec![AccountSettings {
                name: "k8s".into(),
                ..AccountSettings::default()
            }],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("kubeconfig"), "{err}");
    }
}
