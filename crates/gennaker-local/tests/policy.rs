//! The operator's host policy with real processes: what a spec may run is refused with
//! the message a user sees (naming the field, the value and the setting), instances
//! start with a clean environment, run as the configured OS user, and load balancers
//! listen on loopback unless the operator allows more.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use gennaker_deploy::{
    Capacity, DeployError, LoadBalancerSpec, Provider, SpecProblem, TrafficRouter,
};
use gennaker_local::HostSettings;
use gennaker_store::testing::TestBackend;
use serde_json::{Value, json};
use support::*;

/// How long an instance may take to write its log on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The permanent refusal a create ends with.
async fn refused(provider: &impl Provider, account: &str, spec: Value) -> String {
    let mut request = request("pol", "s1", Capacity::fixed(1), spec);
    request.account = account.to_owned();
    match provider.create_server_group(request).await {
        Err(DeployError::Invalid(message)) => message,
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
}

/// A script artifact in `dir` that prints its environment, then keeps running.
fn env_script(dir: &Path) -> String {
    let path = dir.join("print-env");
    std::fs::write(&path, "#!/bin/sh\nid -u\nenv\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The log of the group's first instance, once it holds `PORT=`.
async fn instance_log(data: &Path, group: &str) -> String {
    let path = data.join(format!("logs/local/{group}-0.log"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains("\nPORT=") {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no environment in {}: {log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_operator_did_not_allow_is_refused_with_the_setting_named() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider_with(HostSettings::default()).await;
    assert_eq!(
        refused(
            &provider,
            "local",
            json!({"command": "/bin/sh", "args": ["-c", "id"]})
        )
        .await,
        "command '/bin/sh' is not allowed: the operator allows no commands ([local] commands in gennaker.toml); deploy an artifact instead"
    );
    assert_eq!(
        refused(
            &provider,
            "local",
            json!({"artifact": {"path": "/etc/passwd"}})
        )
        .await,
        "artifact path '/etc/passwd' is not allowed: the operator allows no artifact roots ([local] artifact_roots in gennaker.toml); deploy an artifact from a URL instead"
    );
    assert_eq!(
        refused(
            &provider,
            "local",
            json!({"artifact": {"url": "http://127.0.0.1:1/a"}, "workingDir": "/etc"})
        )
        .await,
        "workingDir '/etc' is not allowed: the operator allows no working dir roots ([local] working_dir_roots in gennaker.toml); leave workingDir out to run in the instance's own directory"
    );
    assert_eq!(
        refused(
            &provider,
            "../../escape",
            json!({"artifact": {"url": "http://127.0.0.1:1/a"}})
        )
        .await,
        "account '../../escape' is not a valid local account name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters (e.g. \"local\")"
    );
    // The save-time check sees the same, field by field.
    assert_eq!(
        provider.check_spec(Some("local"), &json!({"command": "/bin/sh"})),
        [SpecProblem {
            field: "command".to_owned(),
            message: "command '/bin/sh' is not allowed: the operator allows no commands ([local] commands in gennaker.toml); deploy an artifact instead".to_owned(),
        }]
    );
    assert!(
        provider
            .check_spec(Some("local"), &json!({"command": "${c}"}))
            .is_empty()
    );
    assert!(provider.server_groups("pol").await.unwrap().is_empty());
    assert!(!env.data.join("instances/escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_resolved_before_they_are_compared() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let root = env.dir.path().join("builds");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    let provider = env
        .provider_with(HostSettings {
            artifact_roots: vec![root.clone()],
            ..HostSettings::default()
        })
        .await;
    let link = root.join("link").display().to_string();
    assert_eq!(
        refused(&provider, "local", json!({"artifact": {"path": link}})).await,
        format!(
            "artifact path '{link}' (resolves to '/etc/passwd') is not allowed: it is not under a directory the operator allows ({}) ([local] artifact_roots in gennaker.toml); deploy an artifact from a URL instead",
            root.display()
        )
    );
    let dotdot = format!("{}/../../../../../../etc/passwd", root.display());
    assert!(
        refused(&provider, "local", json!({"artifact": {"path": dotdot}}))
            .await
            .contains("(resolves to '/etc/passwd') is not allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_regular_files_are_artifacts() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let root = env.dir.path().canonicalize().unwrap();
    let fifo = root.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir_all(root.join("a-dir")).unwrap();
    let provider = env
        .provider_with(HostSettings {
            artifact_roots: vec![root.clone(), "/dev".into()],
            ..HostSettings::default()
        })
        .await;
    for (path, kind) in [
        ("/dev/urandom".to_owned(), "a character device"),
        // Opened without blocking: no writer ever comes, and the refusal is immediate.
        (fifo.display().to_string(), "a FIFO"),
        (root.join("a-dir").display().to_string(), "a directory"),
    ] {
        assert_eq!(
            refused(&provider, "local", json!({"artifact": {"path": path}})).await,
            format!(
                "artifact path '{path}' is {kind}, not a regular file: only regular files can be deployed"
            )
        );
    }
    assert!(provider.server_groups("pol").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_with_a_clean_environment_and_is_still_adopted() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    // Set in this (the server's) process by cargo: it must not reach an instance.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let script = env_script(env.dir.path());
    let provider = env.provider().await;
    let spec = json!({
        "artifact": {"path": script},
        "env": {"MODE": "prod"},
        "healthCheck": {"tcp": true},
        "gracePeriodSeconds": 1
    });
    provider
        .create_server_group(request("envy", "s1", Capacity::fixed(1), spec))
        .await
        .unwrap();
    let log = instance_log(&env.data, "envy-prod-v000").await;
    let vars: Vec<&str> = log.lines().filter(|l| l.contains('=')).collect();
    let names: Vec<&str> = vars.iter().filter_map(|v| v.split('=').next()).collect();
    assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "{log}");
    for expected in [
        "PATH=/usr/local/bin:/usr/bin:/bin".to_owned(),
        "MODE=prod".to_owned(),
        "INSTANCE_ID=envy-prod-v000-0".to_owned(),
        format!(
            "HOME={}",
            env.data.join("instances/local/envy-prod-v000-0").display()
        ),
    ] {
        assert!(
            vars.contains(&expected.as_str()),
            "{expected} missing: {log}"
        );
    }
    // Only what the provider sets (sh adds PWD, SHLVL and `_` of its own).
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "MODE",
                "PORT",
                "INSTANCE_ID",
                "SERVER_GROUP",
                "CLUSTER",
                "APPLICATION",
                "GENNAKER_LOCAL_INSTANCE",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(name),
            "{name} leaked into the instance: {log}"
        );
    }
    // The marker is still there: a restarted provider adopts the process.
    let pids = env.marked_pids();
    assert_eq!(pids.len(), 1);
    provider.shutdown().await;
    let again = env.provider().await;
    let group = wait_for(&again, "envy-prod-v000", "adopted", |g| {
        g.instances
            .first()
            .is_some_and(|i| i.details["pid"] == json!(pids[0]))
    })
    .await;
    assert_eq!(group.instances[0].restarts, 0);
    again.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_run_as_the_configured_user() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let settings = HostSettings {
        run_as_user: Some("nobody".to_owned()),
        ..env.host_settings()
    };
    if !nix::unistd::geteuid().is_root() {
        // Only root can switch users: the policy says so at start-up.
        let error = gennaker_local::HostPolicy::new(&settings)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("[local] run_as_user = 'nobody' needs the server to run as root"),
            "{error}"
        );
        return;
    }
    // The layout the server leaves: its data directory (here the test's directory,
    // the provider's parent) 0700 with a 0600 database in it, the provider's own
    // directory 0700, and an artifact only its owner may run.
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let private = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let database = env.dir.path().join("gennaker.db");
    std::fs::write(&database, b"").unwrap();
    private(&database, 0o600);
    private(env.dir.path(), 0o700);
    private(&env.data, 0o700);
    let script = env_script(env.dir.path());
    private(Path::new(&script), 0o700);
    let provider = env.provider_with(settings).await;
    // The user may pass through to its artifact and its directory, not list them.
    assert_eq!(mode(env.dir.path()), 0o711);
    for traversed in ["", "artifacts", "artifacts/sha256", "instances"] {
        assert_eq!(mode(&env.data.join(traversed)), 0o711, "{traversed}");
    }
    assert_eq!(mode(&database), 0o600);
    let spec = json!({"artifact": {"path": script}, "healthCheck": {"tcp": true}, "gracePeriodSeconds": 1});
    provider
        .create_server_group(request("asuser", "s1", Capacity::fixed(1), spec))
        .await
        .unwrap();
    let log = instance_log(&env.data, "asuser-prod-v000").await;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // The cached copy of the 0700 script: the user reads and runs it.
    let cached: Vec<_> = std::fs::read_dir(env.data.join("artifacts/sha256"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(mode(&cached[0]), 0o755);
    assert_eq!(
        log.lines().next(),
        Some(nobody.uid.to_string().as_str()),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l == format!("HOME={}", nobody.dir.display())),
        "{log}"
    );
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_listen_on_loopback_unless_the_operator_allows_more() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let spec = |account: &str, listen: &str| LoadBalancerSpec {
        name: "front".to_owned(),
        account: account.to_owned(),
        application: "pol".to_owned(),
        listen: listen.to_owned(),
        allowed_cidrs: Vec::new(),
        ejection_failures: 5,
    };
    let closed = env.provider().await;
    match closed
        .upsert_load_balancer(spec("local", "0.0.0.0:0"))
        .await
    {
        Err(DeployError::Invalid(message)) => assert_eq!(
            message,
            "load balancer listen address '0.0.0.0:0' is not allowed: the operator allows load balancers on loopback addresses only ([local] load_balancer_bind in gennaker.toml); listen on 127.0.0.1 instead"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        closed.upsert_load_balancer(spec("../x", "127.0.0.1:0")).await,
        Err(DeployError::Invalid(m)) if m.starts_with("account '../x' is not a valid local account name")
    ));
    assert!(closed.load_balancers("pol").await.unwrap().is_empty());
    closed
        .upsert_load_balancer(spec("local", "127.0.0.1:0"))
        .await
        .unwrap();
    closed.destroy_all().await.unwrap();
    closed.shutdown().await;

    let open = env
        .provider_with(HostSettings {
            load_balancer_bind: vec!["0.0.0.0".parse().unwrap()],
            ..env.host_settings()
        })
        .await;
    let balancer = open
        .upsert_load_balancer(spec("local", "0.0.0.0:0"))
        .await
        .unwrap();
    assert!(
        balancer.address.starts_with("0.0.0.0:"),
        "{}",
        balancer.address
    );
    open.destroy_all().await.unwrap();
}
