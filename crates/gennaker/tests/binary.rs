//! The real binary, end to end: `gennaker server` started as a child process on a
//! temporary data dir, driven by the client verbs over real HTTP; the offline tools; and
//! a graceful stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

use support::refused_server_start;

const BIN: &str = env!("CARGO_BIN_EXE_gennaker");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gennaker-core/tests/fixtures/pipelines")
        .join(name)
}

struct Server {
    child: Option<Child>,
    url: String,
    data_dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the server with extra environment variables.
    fn start_with(env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("RUST_LOG", "info")
            .env_remove("GENNAKER_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data_dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            home,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(body) = http_get(&format!("{}/readyz", server.url))
                && body.contains("ready")
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not become ready: {}", server.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Runs a client verb as the admin (or with the given token).
    fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let token = token.map_or_else(|| self.admin_token(), str::to_owned);
        Command::new(BIN)
            .args(args)
            .env("GENNAKER_URL", &self.url)
            .env("GENNAKER_TOKEN", token)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(None, args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs an offline verb (no server involved).
fn offline(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Everything a command printed, stdout then stderr.
fn printed(output: &Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    format!("{stdout}{stderr}")
}

/// A minimal HTTP GET over std, so the test needs no async runtime.
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn a_pipeline_round_trips_through_the_real_server_and_cli() {
    let server = Server::start();
    let log = server.log();
    assert!(
        log.contains("admin-token"),
        "the first start says where the admin token is: {log}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir.path().join("admin-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    server.ok(&[
        "app",
        "save",
        "--name",
        "catalog",
        "--email",
        "team@example.com",
    ]);
    let file = fixture("parallel-branches-join.json");
    let saved = server.ok(&["pipeline", "save", "-f", file.to_str().unwrap()]);
    assert!(saved.to_lowercase().contains("created"), "{saved}");

    let original: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let name = original["name"].as_str().unwrap();
    let got = server.json(&["pipeline", "get", "catalog", name]);
    // As Front50, the server stamps who saved it and when; the rest is what was sent.
    assert_eq!(got["config"]["lastModifiedBy"], "admin");
    assert_ne!(got["config"]["updateTs"], original["updateTs"]);
    let unstamped = |doc: &Value| {
        let mut doc = doc.clone();
        for key in ["lastModifiedBy", "updateTs"] {
            doc.as_object_mut().unwrap().remove(key);
        }
        doc
    };
    assert_eq!(
        unstamped(&got["config"]),
        unstamped(&original),
        "the stored document is the submitted one"
    );

    // A changed document makes revision 2; restoring revision 1 makes revision 3.
    let mut changed = original.clone();
    changed["description"] = json!("changed");
    let changed_file = server.home.path().join("changed.yaml");
    std::fs::write(
        &changed_file,
        gennaker_core::to_yaml_string(&changed).unwrap(),
    )
    .unwrap();
    server.ok(&["pipeline", "save", "-f", changed_file.to_str().unwrap()]);
    let history = server.json(&["pipeline", "history", "catalog", name]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    server.ok(&["pipeline", "restore", "catalog", name, "1"]);
    let restored = server.json(&["pipeline", "get", "catalog", name]);
    assert_eq!(restored["revision"], 3);
    assert_eq!(restored["config"], got["config"]);

    let listed = server.ok(&["pipeline", "list", "catalog"]);
    assert!(listed.contains(name), "{listed}");
    let audit = server.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"].as_str().unwrap().contains("/restore")),
        "{audit}"
    );
}

#[test]
fn the_cli_explains_bad_tokens_and_permissions() {
    let server = Server::start();
    let output = server.run(Some("gnk_wrong"), &["app", "list"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin-token"),
        "a 401 says where to find a token: {stderr}"
    );

    server.ok(&["role", "create", "readers"]);
    server.ok(&["user", "create", "rita", "--role", "readers"]);
    let created = server.json(&["token", "create", "--user", "rita", "--name", "laptop"]);
    let rita = created["token"].as_str().unwrap().to_owned();
    server.ok(&[
        "app",
        "save",
        "--name",
        "shop",
        "--email",
        "a@b.c",
        "--read-role",
        "readers",
        "--write-role",
        "ops",
    ]);
    let whoami = server.run(Some(&rita), &["whoami"]);
    assert!(String::from_utf8_lossy(&whoami.stdout).contains("rita"));
    let denied = server.run(Some(&rita), &["app", "delete", "shop"]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("WRITE"),
        "a 403 names the missing permission: {stderr}"
    );

    server.ok(&["token", "revoke", created["info"]["id"].as_str().unwrap()]);
    assert!(!server.run(Some(&rita), &["app", "list"]).status.success());
}

#[test]
fn connection_refused_says_what_to_check() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args([
            "app",
            "list",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "x",
        ])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gennaker server") && stderr.contains("--url"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut server = Server::start();
    let mut child = server.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[test]
fn a_slow_client_cannot_hold_up_sigterm() {
    // Clients may take ten minutes over their headers, yet a stop waits 1 s for them.
    let settings = tempfile::tempdir().unwrap();
    let file = settings.path().join("gennaker.toml");
    std::fs::write(
        &file,
        "[http]\nheader_read_timeout_seconds = 600\nshutdown_deadline_seconds = 1\n",
    )
    .unwrap();
    let mut server = Server::start_with(&[("GENNAKER_CONFIG", file.to_str().unwrap())]);
    let address = server.url.strip_prefix("http://").unwrap().to_owned();
    // One client in the middle of its headers, one in the middle of its body.
    let mut slow_headers = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(&mut slow_headers, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut slow_body = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(
        &mut slow_body,
        b"POST /api/v1/pipelines/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut child = server.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "slow clients held up SIGTERM: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let log = server.log();
    assert!(
        log.contains("connections still open after the shutdown deadline"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn a_numeric_admin_token_is_a_string_and_never_printed() {
    // figment used to read this as a number: startup failed and quoted the secret.
    let server = Server::start_with(&[("GENNAKER_ADMIN_TOKEN", "0123456789")]);
    let whoami = server.run(Some("0123456789"), &["whoami"]);
    assert!(
        whoami.status.success(),
        "the leading zero is kept: {}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    assert!(!server.log().contains("0123456789"), "{}", server.log());

    // A number in gennaker.toml is refused, without quoting it.
    let text = refused_server_start("admin_token = 987654321\n");
    assert!(text.contains("admin_token"), "{text}");
    assert!(!text.contains("987654321"), "{text}");
}

#[test]
fn database_passwords_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://gk:hunter2@db.example/gk?sslmode=require&password=hunter3",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("GENNAKER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = printed(&output);
    assert!(text.contains("gk:***@db.example"), "{text}");
    assert!(text.contains("password=***"), "{text}");
    assert!(!text.contains("hunter"), "{text}");
}

#[test]
fn validate_works_offline_and_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture("check-preconditions.json");
    let output = offline(&["pipeline", "validate", "-f", good.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"application": "app", "name": "p", "stages": [
            {"refId": "1", "type": "wiat", "requisiteStageRefIds": ["2"]},
            {"refId": "2", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]},
            {"refId": "2", "type": "wait", "waitTime": 1}]}"#,
    )
    .unwrap();
    let output = offline(&["pipeline", "validate", "-f", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = printed(&output);
    assert!(
        text.contains("wait"),
        "suggests the closest stage type: {text}"
    );
    assert!(
        text.contains("$.stages[2]"),
        "names the duplicate's path: {text}"
    );
    assert!(
        text.contains("cycle") || text.contains("->"),
        "prints the cycle: {text}"
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"name\": \"p\",\n  \"stages\": [,]\n}").unwrap();
    let output = offline(&["pipeline", "validate", "-f", broken.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = printed(&output);
    assert!(
        text.contains("broken.json:3:14"),
        "syntax errors carry line and column: {text}"
    );
}

#[test]
fn expr_eval_prints_typed_json_or_the_error_position() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx.json");
    std::fs::write(
        &context,
        r#"{"trigger": {"tag": "v1.2.3"}, "parameters": {"replicas": "3"}}"#,
    )
    .unwrap();
    let output = offline(&[
        "expr",
        "eval",
        "--context",
        context.to_str().unwrap(),
        "${ trigger.tag.substring(1) }",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).unwrap(),
        json!("1.2.3")
    );

    let output = offline(&[
        "expr",
        "eval",
        "--context",
        context.to_str().unwrap(),
        "${ #toInt(parameters.replicas) * 2 }",
    ]);
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).unwrap(),
        json!(6)
    );

    let output = offline(&[
        "expr",
        "eval",
        "--context",
        context.to_str().unwrap(),
        "${ trigger.tga.length() }",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tag"), "suggests the near key: {stderr}");

    let output = offline(&["expr", "eval", "${ T(java.lang.Runtime).getRuntime() }"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("T("),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn canary_judge_prints_a_table_or_kayentas_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("canary.json");
    std::fs::write(
        &config,
        json!({
            "name": "demo",
            "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
            "metrics": [
                {"name": "latency", "query": {"type": "prometheus", "metricName": "latency"}, "groups": ["perf"],
                 "analysisConfigurations": {"canary": {"direction": "increase"}}, "scopeName": "default"},
                {"name": "errors", "query": {"type": "prometheus", "metricName": "errors"}, "groups": ["errors"],
                 "analysisConfigurations": {"canary": {"direction": "increase"}}, "scopeName": "default"}
            ],
            "classifier": {"groupWeights": {"perf": 50, "errors": 50}}
        })
        .to_string(),
    )
    .unwrap();
    let control: Vec<f64> = (0..100).map(|i| 100.0 + f64::from(i % 10)).collect();
    let slower: Vec<f64> = control.iter().map(|v| v * 1.5).collect();
    let data = dir.path().join("pairs.json");
    std::fs::write(
        &data,
        json!([
            {"name": "latency", "tags": {}, "values": {"control": control, "experiment": slower}},
            {"name": "errors", "tags": {}, "values": {"control": [0, 0, 1, 0], "experiment": [0, 0, 1, 0]}}
        ])
        .to_string(),
    )
    .unwrap();
    let args = [
        "canary",
        "judge",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let output = offline(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("latency") && table.contains("High"),
        "{table}"
    );

    let output = offline(&[&args[..], &["-o", "json"]].concat());
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let latency = result["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "latency")
        .unwrap();
    assert_eq!(latency["classification"], "High");
    assert!(latency["interval"]["lower"].as_f64().unwrap() > 0.0);
    assert_eq!(result["score"]["score"], 50.0);
    assert_eq!(result["score"]["classification"], "Marginal");
}

#[test]
fn help_offers_only_the_options_a_command_uses() {
    let client = ["--url", "--token", "--output"];
    let cases: [(&[&str], &[&str]); 7] = [
        (&["demo-app", "--help"], &[]),
        (&["help", "demo-app"], &[]),
        (&["server", "--help"], &[]),
        (&["demo", "--help"], &[]),
        (&["expr", "eval", "--help"], &["--output"]),
        (&["canary", "judge", "--help"], &["--output"]),
        (&["app", "list", "--help"], &client),
    ];
    for (args, offered) in cases {
        let output = offline(args);
        assert!(output.status.success(), "{args:?}: {}", printed(&output));
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains("Usage: gennaker"), "{args:?}: {help}");
        for option in client {
            assert_eq!(
                help.contains(option),
                offered.contains(&option),
                "{args:?} offers {option}: {help}"
            );
        }
    }
    let top = printed(&offline(&["--help"]));
    assert!(client.iter().all(|option| top.contains(option)), "{top}");
}

#[test]
fn validate_offline_says_what_a_save_would_do_never_that_it_saved() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jenkins.json");
    std::fs::write(
        &file,
        r#"{"application": "app", "name": "p", "stages": [
            {"refId": "1", "type": "jenkins", "name": "Build", "master": "ci", "job": "build"}]}"#,
    )
    .unwrap();
    for format in [&[][..], &["-o", "json"]] {
        let output = offline(
            &[
                &["pipeline", "validate", "-f", file.to_str().unwrap()],
                format,
            ]
            .concat(),
        );
        let text = printed(&output);
        assert!(output.status.success(), "{text}");
        assert!(
            text.contains("the pipeline is accepted, but a run stops"),
            "{text}"
        );
        assert!(!text.contains("is saved"), "{text}");
    }
    let text = printed(&offline(&[
        "pipeline",
        "validate",
        "-f",
        file.to_str().unwrap(),
    ]));
    assert!(
        text.contains(
            "valid pipeline; it would be saved with 1 warning (validated offline, nothing saved)"
        ),
        "{text}"
    );
}
