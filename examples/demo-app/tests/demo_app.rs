//! The demo app as a real process: flags shape its answers, and SIGTERM lets a request
//! in flight finish before it exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct App {
    child: Child,
    port: u16,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Starts the app and waits (bounded) until it answers.
async fn start(args: &[&str]) -> App {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_demo-app"))
        .args(args)
        .env("PORT", port.to_string())
        .env("INSTANCE_ID", "demo-v000-0")
        .spawn()
        .unwrap();
    let app = App { child, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "demo-app did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app
}

#[tokio::test]
async fn reports_version_instance_and_port() {
    let app = start(&["--version", "v7"]).await;
    let body: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{}/", app.port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["version"], "v7");
    assert_eq!(body["instance"], "demo-v000-0");
    assert_eq!(body["port"], app.port);
    let health = client()
        .get(format!("http://127.0.0.1:{}/health", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn error_rate_and_unhealthy_flags() {
    let app = start(&["--error-rate", "0.5", "--unhealthy"]).await;
    let mut errors = 0;
    for _ in 0..10 {
        let status = client()
            .get(format!("http://127.0.0.1:{}/", app.port))
            .send()
            .await
            .unwrap()
            .status();
        if status == 500 {
            errors += 1;
        }
    }
    assert_eq!(errors, 5);
    let health = client()
        .get(format!("http://127.0.0.1:{}/health", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight() {
    let mut app = start(&["--latency-ms", "4000"]).await;
    let url = format!("http://127.0.0.1:{}/", app.port);
    let request = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Give the request ample time to arrive; its 4 s latency keeps it in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(
        Pid::from_raw(i32::try_from(app.child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(request.await.unwrap().unwrap(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = app.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo-app did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn metrics_count_requests_by_status_version_and_server_group() {
    let app = start(&[
        "--version",
        "v9",
        "--error-rate",
        "0.25",
        "--server-group",
        "shop-prod-v003",
    ])
    .await;
    for _ in 0..8 {
        client()
            .get(format!("http://127.0.0.1:{}/", app.port))
            .send()
            .await
            .unwrap();
    }
    let response = client()
        .get(format!("http://127.0.0.1:{}/metrics", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle} in {text}"))
            .to_owned()
    };
    assert!(
        line("demo_requests_total{status=\"200\",version=\"v9\",server_group=\"shop-prod-v003\"}")
            .ends_with(" 6")
    );
    assert!(
        line("demo_requests_total{status=\"500\",version=\"v9\",server_group=\"shop-prod-v003\"}")
            .ends_with(" 2")
    );
    assert!(
        line("demo_request_duration_seconds_count{version=\"v9\",server_group=\"shop-prod-v003\"}")
            .ends_with(" 8")
    );
}
