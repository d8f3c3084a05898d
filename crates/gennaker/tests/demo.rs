//! `gennaker demo`, the README's first command, as a user runs it: to the end, and with
//! `--keep`, where the printed instructions must reach the kept server and Ctrl-C must
//! stop everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::{BIN, KillInstances, instances_of};
use tokio::io::{AsyncBufReadExt, BufReader};

mod support;

/// The longest the six releases may take before the test gives up.
const DEMO_PATIENCE: Duration = Duration::from_secs(300);
/// The longest the clean-up after Ctrl-C may take.
const CLEAN_UP_PATIENCE: Duration = Duration::from_secs(120);

/// The canary analysis' marginal score in the demo's canary releases.
const MARGINAL: f64 = 50.0;
/// Its pass score.
const PASS: f64 = 70.0;

/// README's first command: `gennaker demo` releases six versions under traffic, rolls
/// the broken one and the bad canary back, promotes the good canary, reports zero failed
/// requests outside the bad canary's own share and leaves no process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_releases_six_versions_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let summary_path = dir.path().join("summary.json");
    let output = tokio::process::Command::new(BIN)
        .args(["demo", "--rate", "100", "--summary-json"])
        .arg(&summary_path)
        .env("TMPDIR", dir.path())
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed:\n{printed}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["requests_failed"], 0, "{summary:#}");
    assert!(
        summary["canary_requests_failed"].as_u64().unwrap() > 0,
        "the bad canary answered some of its share with 500: {summary:#}"
    );
    assert!(
        summary["requests_total"].as_u64().unwrap() > 1000,
        "{summary:#}"
    );
    let releases: Vec<(String, String, String)> = summary["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["duration_ms"].as_u64().unwrap() > 0);
            (
                r["version"].as_str().unwrap().to_owned(),
                r["strategy"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("v1", "none", "SUCCEEDED"),
        ("v2", "redblack", "SUCCEEDED"),
        ("v3", "rollingredblack", "SUCCEEDED"),
        ("v4", "redblack", "TERMINAL"),
        ("v5", "canary", "TERMINAL"),
        ("v6", "canary", "SUCCEEDED"),
    ];
    assert_eq!(
        releases,
        expected
            .iter()
            .map(|(v, s, st)| (v.to_string(), s.to_string(), st.to_string()))
            .collect::<Vec<_>>()
    );
    let release = |version: &str| {
        summary["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == version)
            .unwrap()
            .clone()
    };
    for version in ["v1", "v2", "v3", "v4"] {
        assert!(
            release(version).get("canary_scores").is_none(),
            "{summary:#}"
        );
    }
    // The bad canary: its analysis stopped at a score at or below marginal, and the
    // rollback removed baseline and canary and gave v3's group the traffic back.
    let bad = release("v5");
    let scores = bad["canary_scores"].as_array().unwrap();
    assert!(!scores.is_empty(), "{bad:#}");
    assert!(
        scores.last().unwrap().as_f64().unwrap() <= MARGINAL,
        "{bad:#}"
    );
    let destroyed: Vec<&str> = bad["rollback"]["destroyedServerGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        destroyed,
        ["demo-web-baseline-v000", "demo-web-canary-v000"],
        "{bad:#}"
    );
    assert_eq!(
        bad["rollback"]["trafficRestoredTo"],
        json!(["demo-web-v002"])
    );
    // The good canary: every interval judged above marginal, the last at pass, and
    // promoted (no rollback, its version serves at the end).
    let good = release("v6");
    let scores: Vec<f64> = good["canary_scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 2, "two intervals: {good:#}");
    assert!(scores.iter().all(|s| *s > MARGINAL), "{good:#}");
    assert!(*scores.last().unwrap() >= PASS, "{good:#}");
    assert!(good.get("rollback").is_none(), "{good:#}");
    assert_eq!(summary["serving_version_at_end"], "v6");
    let served = &summary["served_by_version"];
    assert!(served["v5"].as_u64().unwrap() > 0, "{summary:#}");
    assert!(served["v6"].as_u64().unwrap() > 0, "{summary:#}");
    for line in [
        "Summary",
        "Load balancer:",
        "0 failed (",
        "(≤ marginal 50)",
        "canary scores: interval 1: ",
        "(≥ pass 70)",
        "rolled back: destroyed demo-web-baseline-v000, demo-web-canary-v000; serving again: demo-web-v002",
        "rolled back: destroyed demo-web-v003; serving again: demo-web-v002",
    ] {
        assert!(
            printed.contains(line),
            "the summary shows '{line}':\n{printed}"
        );
    }
    let data_dir = summary["data_dir"].as_str().unwrap();
    assert!(
        instances_of(data_dir).is_empty(),
        "every process the demo started is gone"
    );
}

/// `--keep`: the lines printed for "another shell" work when pasted into one, the token
/// file they name exists (mode 0600), and Ctrl-C then stops every process and removes the
/// data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_demo_is_usable_with_what_it_prints_until_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let _leftovers = KillInstances(dir.path());
    let mut demo = tokio::process::Command::new(BIN)
        .args(["demo", "--keep", "--rate", "50"])
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let mut instructions = Vec::new();
    let kept = tokio::time::timeout(DEMO_PATIENCE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if !instructions.is_empty() || line.starts_with("Left running (--keep)") {
                instructions.push(line.clone());
            }
            if line.starts_with("Or open the web UI") && !instructions.is_empty() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(kept, Ok(true)),
        "the demo did not print how to use the kept server:\n{printed}"
    );
    let data_dir = printed
        .lines()
        .find_map(|l| l.split("(data in ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_owned())
        .unwrap();
    assert!(data_dir.starts_with(&dir.path().display().to_string()));

    // The export line names a token file that exists and only its owner reads.
    let export = instructions
        .iter()
        .find(|l| l.trim_start().starts_with("export "))
        .unwrap_or_else(|| panic!("no export line:\n{printed}"));
    let token_file = export
        .split("$(cat ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no token file in: {export}"));
    let metadata = std::fs::metadata(token_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
        0o600
    );

    // Pasted into a shell, the printed lines reach the kept server as the admin.
    let script: Vec<&str> = instructions[1..instructions.len() - 1]
        .iter()
        .map(|l| l.trim())
        .collect();
    assert_eq!(
        script
            .iter()
            .filter(|l| l.starts_with("gennaker canary report "))
            .count(),
        2,
        "a report line per canary release: {script:?}"
    );
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = tokio::process::Command::new("sh")
        .args(["-ec", &script.join("\n")])
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env_remove("GENNAKER_URL")
        .env_remove("GENNAKER_TOKEN")
        .output()
        .await
        .unwrap();
    let answered = String::from_utf8_lossy(&shell.stdout).into_owned()
        + &String::from_utf8_lossy(&shell.stderr);
    assert!(
        shell.status.success(),
        "{script:?} failed:\n{answered}\ndemo:\n{printed}"
    );
    assert!(answered.contains("demo-web-v"), "{answered}");
    // The canary reports: v5's analysis failed on the error ratio, v6's passed.
    assert!(
        answered.contains("Canary analysis #1 (TERMINAL)"),
        "{answered}"
    );
    assert!(
        answered.contains("Canary analysis #1 (SUCCEEDED)"),
        "{answered}"
    );
    assert!(answered.contains("error ratio  High"), "{answered}");

    // The API itself, with the token from the file.
    let url = export
        .split("GENNAKER_URL=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let token = std::fs::read_to_string(token_file).unwrap();
    let groups: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/applications/demo/serverGroups"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 2, "{groups:#}");
    assert!(
        !instances_of(&data_dir).is_empty(),
        "the instances still run"
    );

    // The web UI it printed takes the same token at its sign-in form.
    let ui = printed
        .lines()
        .find_map(|l| l.strip_prefix("Web UI: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no web UI line:\n{printed}"));
    assert!(printed.contains(&format!("sign in with the admin token in {token_file}")));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser.get(format!("{ui}signin")).send().await.unwrap();
    let form_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = form.text().await.unwrap();
    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let signed_in = browser
        .post(format!("{ui}signin"))
        .header("cookie", form_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={}&csrf={csrf}&next=/applications/demo/executions",
            token.trim()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("gennaker_session="))
        .unwrap();
    let page = browser
        .get(format!("{ui}applications/demo/executions?pipeline=release"))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert_eq!(
        page.matches("badge st-SUCCEEDED").count(),
        3,
        "v1-v3 succeeded"
    );
    assert_eq!(page.matches("badge st-TERMINAL").count(), 1, "v4 did not");
    let page = browser
        .get(format!(
            "{ui}applications/demo/executions?pipeline=canary-release"
        ))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("badge st-SUCCEEDED").count(), 1, "v6 passed");
    assert_eq!(page.matches("badge st-TERMINAL").count(), 1, "v5 did not");

    // Ctrl-C: everything stops, the demo exits 0 and removes its data directory.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let drained = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stdout.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let status = tokio::time::timeout(CLEAN_UP_PATIENCE, demo.wait())
        .await
        .expect("the demo stops after Ctrl-C")
        .unwrap();
    let rest = drained.await.unwrap();
    assert!(status.success(), "the demo failed after Ctrl-C:\n{rest}");
    assert!(rest.contains("Cleaning up"), "{rest}");
    assert!(
        instances_of(&data_dir).is_empty(),
        "every process the demo started is gone"
    );
    assert!(
        !Path::new(&data_dir).exists(),
        "the data directory is removed"
    );
}
