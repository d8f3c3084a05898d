//! The operator's host policy: what a pipeline may make this machine run through the
//! local provider (`[local]` in gennaker.toml).
//!
//! Anyone who may save and run a pipeline of an application would otherwise run any
//! program, from any file, in any directory, as the server's own user. The policy
//! narrows that to what the operator lists: programs (`commands`), directories artifacts
//! may be copied from (`artifact_roots`) and instances may run in
//! (`working_dir_roots`), whether artifacts may come from URLs, the OS user instances
//! run as, and the addresses load balancers may listen on besides loopback. By default
//! nothing is listed: only an artifact fetched from a URL runs, in its instance's own
//! directory, and load balancers listen on loopback only.
//!
//! Paths are compared after resolving symlinks and `..` (the part of a path that does
//! not exist yet may hold no `..`), so a link inside an allowed root that points outside
//! it is refused. Every check runs when a pipeline is saved (where a value is known
//! then) and again when the deploy runs (expressions are known by then).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifacts::DEFAULT_MAX_ARTIFACT_BYTES;
use crate::error::LocalError;
use crate::spec::{ArtifactSource, ProcessSpec};

/// How long an artifact download may take unless the operator says otherwise.
pub const DEFAULT_ARTIFACT_FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// What `PATH` instances start with (their environment is otherwise cleared).
pub const INSTANCE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The longest local account name (it names directories under the data directory).
const MAX_ACCOUNT_LENGTH: usize = 64;

/// `[local]` in gennaker.toml, as written (see [`HostPolicy`] for what it means).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSettings {
    /// Absolute directories an `artifact.path` may be under (default: none).
    pub artifact_roots: Vec<PathBuf>,
    /// Absolute programs a spec may name as `command` (default: none, so only the
    /// cached artifact itself runs).
    pub commands: Vec<PathBuf>,
    /// Absolute directories a `workingDir` may be under (default: none, so instances
    /// run in their own directory under the data directory).
    pub working_dir_roots: Vec<PathBuf>,
    /// The OS user instances run as (the server must run as root); default: the
    /// server's own user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<String>,
    /// Whether `artifact.url` may be used (default: true; which hosts a URL may reach
    /// is the outbound allow-list's business).
    pub allow_artifact_urls: bool,
    /// Addresses a load balancer may listen on besides loopback (e.g. `0.0.0.0`);
    /// default: none.
    pub load_balancer_bind: Vec<IpAddr>,
    /// The largest artifact accepted, in bytes (default 1 GiB).
    pub max_artifact_bytes: u64,
    /// How long an artifact download may take in all, in seconds (default 300).
    pub artifact_fetch_timeout_seconds: u64,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self {
            artifact_roots: Vec::new(),
            commands: Vec::new(),
            working_dir_roots: Vec::new(),
            run_as_user: None,
            allow_artifact_urls: true,
            load_balancer_bind: Vec::new(),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            artifact_fetch_timeout_seconds: DEFAULT_ARTIFACT_FETCH_TIMEOUT.as_secs(),
        }
    }
}

/// The OS user instances run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Its name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its home directory (the instances' `HOME`).
    pub home: PathBuf,
}

/// A spec field the policy refuses, and why (a message naming the value and the
/// setting that would allow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field, as a dotted path in the process spec (`command`, `artifact.path`,
    /// `workingDir`, `account`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Refusal {
    fn new(field: &str, message: String) -> Self {
        Self {
            field: field.to_owned(),
            message,
        }
    }
}

impl From<Refusal> for LocalError {
    fn from(refusal: Refusal) -> Self {
        LocalError::Refused(refusal.message)
    }
}

/// [`HostSettings`] checked and resolved: roots and commands canonicalised, the run-as
/// user looked up.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    artifact_roots: Vec<PathBuf>,
    commands: Vec<PathBuf>,
    working_dir_roots: Vec<PathBuf>,
    run_as: Option<RunAs>,
    allow_artifact_urls: bool,
    load_balancer_bind: Vec<IpAddr>,
    max_artifact_bytes: u64,
    fetch_timeout: Duration,
}

impl Default for HostPolicy {
    /// The default settings: artifacts from URLs only, no command, no working
    /// directory, the server's user, loopback load balancers.
    fn default() -> Self {
        let settings = HostSettings::default();
        Self {
            artifact_roots: Vec::new(),
            commands: Vec::new(),
            working_dir_roots: Vec::new(),
            run_as: None,
            allow_artifact_urls: settings.allow_artifact_urls,
            load_balancer_bind: Vec::new(),
            max_artifact_bytes: settings.max_artifact_bytes,
            fetch_timeout: DEFAULT_ARTIFACT_FETCH_TIMEOUT,
        }
    }
}

/// Resolves an operator's absolute path, naming the setting when it cannot be used.
fn resolve_setting(setting: &str, path: &Path, directory: bool) -> Result<PathBuf, LocalError> {
    let refuse = |reason: String| {
        LocalError::Settings(format!("[local] {setting}: '{}' {reason}", path.display()))
    };
    if !path.is_absolute() {
        return Err(refuse("is not an absolute path".to_owned()));
    }
    let resolved =
        std::fs::canonicalize(path).map_err(|e| refuse(format!("cannot be used: {e}")))?;
    let is_dir = resolved.is_dir();
    if directory && !is_dir {
        return Err(refuse("is not a directory".to_owned()));
    }
    if !directory && !resolved.is_file() {
        return Err(refuse("is not a file".to_owned()));
    }
    Ok(resolved)
}

impl HostPolicy {
    /// Checks `settings` and resolves them. Fails, naming the setting, when a root or
    /// command does not exist or is not absolute, when the run-as user does not exist or
    /// the server cannot switch to it (it is not root), or when a limit is out of range.
    pub fn new(settings: &HostSettings) -> Result<Self, LocalError> {
        let resolve_all = |setting: &str, paths: &[PathBuf], directory: bool| {
            paths
                .iter()
                .map(|p| resolve_setting(setting, p, directory))
                .collect::<Result<Vec<_>, _>>()
        };
        let run_as = settings
            .run_as_user
            .as_deref()
            .map(run_as_user)
            .transpose()?;
        if settings.max_artifact_bytes == 0 {
            return Err(LocalError::Settings(
                "[local] max_artifact_bytes must be greater than 0".to_owned(),
            ));
        }
        let timeout = settings.artifact_fetch_timeout_seconds;
        if !(1..=86_400).contains(&timeout) {
            return Err(LocalError::Settings(format!(
                "[local] artifact_fetch_timeout_seconds must be between 1 and 86400, not {timeout}"
            )));
        }
        Ok(Self {
            artifact_roots: resolve_all("artifact_roots", &settings.artifact_roots, true)?,
            commands: resolve_all("commands", &settings.commands, false)?,
            working_dir_roots: resolve_all("working_dir_roots", &settings.working_dir_roots, true)?,
            run_as,
            allow_artifact_urls: settings.allow_artifact_urls,
            load_balancer_bind: settings.load_balancer_bind.clone(),
            max_artifact_bytes: settings.max_artifact_bytes,
            fetch_timeout: Duration::from_secs(timeout),
        })
    }

    /// The OS user instances run as (`None`: the server's).
    pub fn run_as(&self) -> Option<&RunAs> {
        self.run_as.as_ref()
    }

    /// The largest artifact accepted, in bytes.
    pub fn max_artifact_bytes(&self) -> u64 {
        self.max_artifact_bytes
    }

    /// How long an artifact download may take in all.
    pub fn fetch_timeout(&self) -> Duration {
        self.fetch_timeout
    }

    /// Every refusal of a spec given as JSON at save time; fields holding expressions
    /// (and fields of the wrong type, which the run reports) are left to the run.
    pub fn check_value(&self, account: Option<&str>, spec: &Value) -> Vec<Refusal> {
        let mut refusals = Vec::new();
        let artifact = spec.get("artifact");
        let checks: [(Option<&str>, PathCheck); 3] = [
            (known(spec.get("command")), Self::command),
            (
                known(artifact.and_then(|a| a.get("path"))),
                Self::artifact_path,
            ),
            (known(spec.get("workingDir")), Self::working_dir),
        ];
        for (value, check) in checks {
            if let Some(value) = value
                && let Err(refusal) = check(self, value)
            {
                refusals.push(refusal);
            }
        }
        if let Some(url) = known(artifact.and_then(|a| a.get("url")))
            && let Err(refusal) = self.artifact_url(url)
        {
            refusals.push(refusal);
        }
        if artifact.is_some_and(|a| a.get("base64").is_some())
            && let Err(refusal) = self.embedded_artifact()
        {
            refusals.push(refusal);
        }
        if let Some(account) = account.filter(|a| !a.contains("${"))
            && let Err(refusal) = check_account(account)
        {
            refusals.push(refusal);
        }
        refusals
    }

    /// Checks a parsed spec at run time (the first refusal).
    pub(crate) fn check_spec(&self, spec: &ProcessSpec) -> Result<(), Refusal> {
        if let Some(command) = &spec.command {
            self.command(command)?;
        }
        match &spec.artifact {
            Some(ArtifactSource::Path(path)) => {
                self.artifact_path(path)?;
            }
            Some(ArtifactSource::Url(url)) => self.artifact_url(url)?,
            Some(ArtifactSource::Base64(_)) => self.embedded_artifact()?,
            None => {}
        }
        if let Some(dir) = &spec.working_dir {
            self.working_dir(dir)?;
        }
        Ok(())
    }

    /// A `command`, resolved, when it is one the operator allows.
    pub(crate) fn command(&self, command: &str) -> Result<PathBuf, Refusal> {
        let refuse = |why: String| {
            Refusal::new(
                "command",
                format!(
                    "command '{command}' is not allowed: {why} ([local] commands in gennaker.toml); deploy an artifact instead"
                ),
            )
        };
        if self.commands.is_empty() {
            return Err(refuse("the operator allows no commands".to_owned()));
        }
        let allowed = || {
            format!(
                "it is not one of the commands the operator allows ({})",
                list(&self.commands)
            )
        };
        let resolved = resolve(command).map_err(|_| refuse(allowed()))?;
        if self.commands.contains(&resolved) {
            Ok(resolved)
        } else {
            Err(refuse(allowed()))
        }
    }

    /// An `artifact.path`, resolved, when it is under a root the operator allows.
    pub(crate) fn artifact_path(&self, path: &str) -> Result<PathBuf, Refusal> {
        under_roots(
            "artifact.path",
            "artifact path",
            path,
            &self.artifact_roots,
            "artifact_roots",
            "deploy an artifact from a URL instead",
        )
    }

    /// An `artifact.url`, when the operator allows URLs.
    pub(crate) fn artifact_url(&self, url: &str) -> Result<(), Refusal> {
        if self.allow_artifact_urls {
            return Ok(());
        }
        Err(Refusal::new(
            "artifact.url",
            format!(
                "artifact url '{url}' is not allowed: the operator turned artifact URLs off ([local] allow_artifact_urls in gennaker.toml); deploy an artifact path under an allowed root instead"
            ),
        ))
    }

    /// Embedded bytes (`artifact.base64`) come from outside this machine as a URL's
    /// do, so the same switch allows them.
    pub(crate) fn embedded_artifact(&self) -> Result<(), Refusal> {
        if self.allow_artifact_urls {
            return Ok(());
        }
        Err(Refusal::new(
            "artifact.base64",
            "embedded artifacts are not allowed: the operator turned artifacts from outside this machine off ([local] allow_artifact_urls in gennaker.toml); deploy an artifact path under an allowed root instead".to_owned(),
        ))
    }

    /// A `workingDir`, resolved, when it is under a root the operator allows.
    pub(crate) fn working_dir(&self, dir: &str) -> Result<PathBuf, Refusal> {
        under_roots(
            "workingDir",
            "workingDir",
            dir,
            &self.working_dir_roots,
            "working_dir_roots",
            "leave workingDir out to run in the instance's own directory",
        )
    }

    /// Whether a load balancer may listen on `address`: loopback always, other
    /// addresses when the operator lists them.
    pub(crate) fn check_listen(&self, address: SocketAddr) -> Result<(), String> {
        let ip = address.ip();
        if ip.is_loopback() || self.load_balancer_bind.contains(&ip) {
            return Ok(());
        }
        let allowed = if self.load_balancer_bind.is_empty() {
            "the operator allows load balancers on loopback addresses only".to_owned()
        } else {
            let others: Vec<String> = self
                .load_balancer_bind
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "the operator allows loopback addresses and {}",
                others.join(", ")
            )
        };
        Err(format!(
            "load balancer listen address '{address}' is not allowed: {allowed} ([local] load_balancer_bind in gennaker.toml); listen on 127.0.0.1 instead"
        ))
    }
}

/// Checks a local account name: it names directories under the data directory, so it
/// is one safe path component.
pub fn check_account(account: &str) -> Result<(), Refusal> {
    let mut chars = account.chars();
    let safe = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && account.len() <= MAX_ACCOUNT_LENGTH;
    if safe {
        return Ok(());
    }
    Err(Refusal::new(
        "account",
        format!(
            "account '{}' is not a valid local account name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most {MAX_ACCOUNT_LENGTH} characters (e.g. \"local\")",
            account.escape_debug()
        ),
    ))
}

/// One of the policy's checks of a path field.
type PathCheck = fn(&HostPolicy, &str) -> Result<PathBuf, Refusal>;

/// A string field whose value is known at save time (not blank, no expression).
fn known(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.contains("${"))
}

/// Looks up the run-as user; only root can switch to it.
fn run_as_user(name: &str) -> Result<RunAs, LocalError> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| {
            LocalError::Settings(format!("[local] run_as_user: cannot look up '{name}': {e}"))
        })?
        .ok_or_else(|| {
            LocalError::Settings(format!(
                "[local] run_as_user: there is no OS user named '{name}'"
            ))
        })?;
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && euid != user.uid {
        return Err(LocalError::Settings(format!(
            "[local] run_as_user = '{name}' needs the server to run as root to switch users (it runs as uid {euid}): start it as root, or remove the setting"
        )));
    }
    Ok(RunAs {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    })
}

/// `path` under one of `roots` after resolving, or a refusal naming `field`, the value,
/// the setting and `instead`.
fn under_roots(
    field: &str,
    label: &str,
    path: &str,
    roots: &[PathBuf],
    setting: &str,
    instead: &str,
) -> Result<PathBuf, Refusal> {
    let refuse = |shown: String, why: String| {
        Refusal::new(
            field,
            format!(
                "{label} {shown} is not allowed: {why} ([local] {setting} in gennaker.toml); {instead}"
            ),
        )
    };
    let plain = format!("'{path}'");
    if roots.is_empty() {
        return Err(refuse(
            plain,
            format!("the operator allows no {}", setting.replace('_', " ")),
        ));
    }
    let outside = || {
        format!(
            "it is not under a directory the operator allows ({})",
            list(roots)
        )
    };
    let resolved = resolve(path).map_err(|why| refuse(plain.clone(), why))?;
    if roots.iter().any(|root| resolved.starts_with(root)) {
        return Ok(resolved);
    }
    let shown = if resolved == Path::new(path) {
        plain
    } else {
        format!("'{path}' (resolves to '{}')", resolved.display())
    };
    Err(refuse(shown, outside()))
}

fn list(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// `path` with symlinks and `..` resolved. The deepest part that exists is
/// canonicalised and the rest appended; that rest may not hold `..` (it cannot be
/// resolved without the directories it steps out of).
pub(crate) fn resolve(path: &str) -> Result<PathBuf, String> {
    let given = Path::new(path);
    if !given.is_absolute() {
        return Err("it is not an absolute path".to_owned());
    }
    let mut existing = given;
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut resolved) => {
                for name in rest.iter().rev() {
                    resolved.push(name);
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
                    return Err("it steps out ('..') of a directory that does not exist".to_owned());
                };
                rest.push(name.to_owned());
                existing = parent;
            }
            Err(e) => return Err(format!("it cannot be resolved: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::symlink;

    use serde_json::json;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    /// `root/app` (a file), `root/link` → `outside/secret`, `root/sub/`, `outside/secret`.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("app"), b"x").unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        Fixture {
            _dir: dir,
            root,
            outside,
        }
    }

    fn policy(fixture: &Fixture) -> HostPolicy {
        HostPolicy::new(&HostSettings {
            artifact_roots: vec![fixture.root.clone()],
            working_dir_roots: vec![fixture.root.clone()],
            commands: vec![fixture.root.join("app")],
            ..HostSettings::default()
        })
        .unwrap()
    }

    fn path(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn paths_under_a_root_pass_after_resolving() {
        let f = fixture();
        let policy = policy(&f);
        let app = f.root.join("app");
        assert_eq!(policy.artifact_path(&path(&app)).unwrap(), app);
        // `..` that stays inside, and a file that does not exist yet.
        let inside = format!("{}/sub/../app", f.root.display());
        assert_eq!(policy.artifact_path(&inside).unwrap(), app);
        let later = f.root.join("sub/new/file");
        assert_eq!(policy.artifact_path(&path(&later)).unwrap(), later);
        assert_eq!(policy.command(&path(&app)).unwrap(), app);
        assert!(policy.working_dir(&path(&f.root.join("sub"))).is_ok());
    }

    #[test]
    fn escapes_by_symlink_or_dotdot_are_refused() {
        let f = fixture();
        let policy = policy(&f);
        let link = path(&f.root.join("link"));
        let refusal = policy.artifact_path(&link).unwrap_err();
        assert_eq!(refusal.field, "artifact.path");
        assert_eq!(
            refusal.message,
            format!(
                "artifact path '{link}' (resolves to '{}') is not allowed: it is not under a directory the operator allows ({}) ([local] artifact_roots in gennaker.toml); deploy an artifact from a URL instead",
                f.outside.join("secret").display(),
                f.root.display()
            )
        );
        let dotdot = format!("{}/../outside/secret", f.root.display());
        assert!(policy.artifact_path(&dotdot).is_err());
        // `..` after a directory that does not exist cannot be resolved.
        let unknown = format!("{}/missing/../../outside/secret", f.root.display());
        let refusal = policy.artifact_path(&unknown).unwrap_err();
        assert!(
            refusal.message.contains("steps out ('..')"),
            "{}",
            refusal.message
        );
        // A root's name as a prefix of another directory is not the root.
        let sibling = format!("{}-other/app", f.root.display());
        assert!(policy.artifact_path(&sibling).is_err());
        assert!(policy.artifact_path("relative/app").is_err());
        // A symlinked command is compared by what it points to.
        assert!(policy.command(&link).is_err());
        assert!(policy.working_dir(&path(&f.outside)).is_err());
    }

    #[test]
    fn the_default_policy_allows_urls_only() {
        let policy = HostPolicy::default();
        let refusal = policy.command("/bin/sh").unwrap_err();
        assert_eq!(
            refusal.message,
            "command '/bin/sh' is not allowed: the operator allows no commands ([local] commands in gennaker.toml); deploy an artifact instead"
        );
        assert_eq!(
            policy.artifact_path("/bin/true").unwrap_err().message,
            "artifact path '/bin/true' is not allowed: the operator allows no artifact roots ([local] artifact_roots in gennaker.toml); deploy an artifact from a URL instead"
        );
        assert_eq!(
            policy.working_dir("/tmp").unwrap_err().message,
            "workingDir '/tmp' is not allowed: the operator allows no working dir roots ([local] working_dir_roots in gennaker.toml); leave workingDir out to run in the instance's own directory"
        );
        assert!(policy.artifact_url("https://example.com/app").is_ok());
        assert!(policy.check_listen("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(policy.check_listen("[::1]:80".parse().unwrap()).is_ok());
        assert_eq!(
            policy
                .check_listen("0.0.0.0:8080".parse().unwrap())
                .unwrap_err(),
            "load balancer listen address '0.0.0.0:8080' is not allowed: the operator allows load balancers on loopback addresses only ([local] load_balancer_bind in gennaker.toml); listen on 127.0.0.1 instead"
        );
        let open = HostPolicy::new(&HostSettings {
            load_balancer_bind: vec!["0.0.0.0".parse().unwrap()],
            allow_artifact_urls: false,
            ..HostSettings::default()
        })
        .unwrap();
        assert!(open.check_listen("0.0.0.0:8080".parse().unwrap()).is_ok());
        assert!(open.check_listen("10.0.0.1:8080".parse().unwrap()).is_err());
        assert_eq!(
            open.artifact_url("https://x/a").unwrap_err().field,
            "artifact.url"
        );
    }

    #[test]
    fn save_time_checks_skip_expressions_and_name_fields() {
        let policy = HostPolicy::default();
        let refusals = policy.check_value(
            Some("../../etc"),
            &json!({"command": "/bin/sh", "artifact": {"path": "${trigger.path}"}, "workingDir": "/tmp"}),
        );
        let fields: Vec<&str> = refusals.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["command", "workingDir", "account"]);
        assert!(
            policy
                .check_value(Some("${x}"), &json!({"command": "${c}"}))
                .is_empty()
        );
    }

    #[test]
    fn account_names_are_one_safe_path_component() {
        for good in ["local", "prod-1", "a.b_c"] {
            assert!(check_account(good).is_ok(), "{good}");
        }
        for bad in ["", "..", ".hidden", "a/b", "../x", "a\nb", &"a".repeat(65)] {
            assert!(check_account(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_name_what_is_wrong() {
        let err = |settings: HostSettings| HostPolicy::new(&settings).unwrap_err().to_string();
        assert_eq!(
            err(HostSettings {
                artifact_roots: vec!["relative".into()],
                ..HostSettings::default()
            }),
            "[local] artifact_roots: 'relative' is not an absolute path"
        );
        assert!(
            err(HostSettings {
                commands: vec!["/no/such/program".into()],
                ..HostSettings::default()
            })
            .starts_with("[local] commands: '/no/such/program' cannot be used")
        );
        assert_eq!(
            err(HostSettings {
                run_as_user: Some("no-such-user-here".into()),
                ..HostSettings::default()
            }),
            "[local] run_as_user: there is no OS user named 'no-such-user-here'"
        );
        assert!(
            err(HostSettings {
                artifact_fetch_timeout_seconds: 0,
                ..HostSettings::default()
            })
            .contains("artifact_fetch_timeout_seconds")
        );
    }
}
