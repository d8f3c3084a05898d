//! A headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/test.sh`) driven over WebDriver, for the web UI's browser tests: start it,
//! sign in, wait for the page to show something, save screenshots under
//! `target/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::BIN;

/// How long a page may take to show a change.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver on 127.0.0.1, killed when dropped, and Chromium's profile directory.
pub(crate) struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Starts chromedriver and a headless Chromium session on it.
pub(crate) async fn browser() -> (Driver, Client) {
    browser_with(&[]).await
}

/// [`browser`] with more Chromium flags.
pub(crate) async fn browser_with(extra: &[&str]) -> (Driver, Client) {
    let chromedriver = which("chromedriver").unwrap_or_else(|| {
        panic!("chromedriver is not installed: run scripts/test.sh, or `apt-get install chromium chromium-driver`")
    });
    let chromium = which("chromium").unwrap_or_else(|| {
        panic!("chromium is not installed: run scripts/test.sh, or `apt-get install chromium chromium-driver`")
    });
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
    ]
    .iter()
    .chain(extra)
    .map(|arg| (*arg).to_owned())
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": args,
        }),
    );
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot start a Chromium session: {err}"),
        }
    };
    // Elements are looked for until they appear (a click that submits a form returns
    // before the next page has loaded); checks that something is absent use `absent`.
    client
        .update_timeouts(TimeoutConfiguration::new(
            None,
            None,
            Some(Duration::from_secs(10)),
        ))
        .await
        .unwrap();
    (driver, client)
}

/// Waits until the browser is on a page whose path starts with `prefix`, and returns
/// that path.
pub(crate) async fn arrived_at(client: &Client, prefix: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let path = client.current_url().await.unwrap().path().to_owned();
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "the browser never arrived at {prefix}: it is on {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many elements match `css` now, without waiting for any to appear.
pub(crate) async fn count_now(client: &Client, css: &str) -> usize {
    client
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize
}

/// Where screenshots go: `target/ui-screenshots/`.
fn screenshot_dir() -> PathBuf {
    // BIN is target/<profile>/gennaker.
    let target = Path::new(BIN).parent().and_then(Path::parent).unwrap();
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves the page as `target/ui-screenshots/<name>.png`.
pub(crate) async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits until `check` holds on the page (it may reload it; bounded by [`PATIENCE`]).
pub(crate) async fn until<F, Fut>(client: &Client, what: &str, check: F)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check(client.clone()).await {
            return;
        }
        if Instant::now() > deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("the page never showed {what}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in to the UI at `base` (`http://127.0.0.1:port`) with `token` through the
/// sign-in form.
pub(crate) async fn sign_in_at(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/applications")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/signin");
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        arrived_at(client, "/applications").await,
        "/applications",
        "signed in"
    );
}

/// The text of the first element matching `css` (looked up again if the page replaced
/// it meanwhile).
pub(crate) async fn text_of(client: &Client, css: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match text {
            Ok(text) => return text,
            Err(err) if Instant::now() > deadline => panic!("no {css}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Clicks the first element matching `css` (a link or a form's button) and waits for
/// the page it leads to. The element is looked up again if the page's live part
/// replaced it meanwhile.
pub(crate) async fn click(client: &Client, css: &str) {
    client
        .execute("window.__beforeClick = true;", vec![])
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match clicked {
            Ok(()) => break,
            Err(err) if Instant::now() > deadline => panic!(
                "cannot click {css}: {err}\n{}",
                client.source().await.unwrap_or_default()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    until(client, "the next page", |c| async move {
        c.execute(
            "return window.__beforeClick === undefined && document.readyState === 'complete';",
            vec![],
        )
        .await
        .is_ok_and(|done| done == json!(true))
    })
    .await;
}

/// Confirms the action the page asks about, follows it to the task it opens and waits
/// for that task to succeed; returns the task as the API shows it, after checking it
/// is an orchestration run by the admin.
pub(crate) async fn confirm_task(client: &Client, api: &super::api::Api) -> serde_json::Value {
    click(client, "#confirm").await;
    let id = arrived_at(client, "/executions/")
        .await
        .strip_prefix("/executions/")
        .expect("the action opens its task")
        .to_owned();
    until(client, "the task SUCCEEDED", |c| async move {
        c.find(Locator::Css("[data-execution-status=SUCCEEDED]"))
            .await
            .is_ok()
    })
    .await;
    let task = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(task["type"], "ORCHESTRATION");
    assert_eq!(task["authentication"]["user"], "admin");
    task
}
