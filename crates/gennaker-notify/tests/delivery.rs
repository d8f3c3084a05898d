//! Notifications end to end on a real engine and database: planned from a run's status
//! changes, delivered to HTTP receivers on 127.0.0.1 (webhook and Slack) and to a real
//! SMTP server (Python's aiosmtpd), retried with backoff on the engine's clock, and
//! failing without touching the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gennaker_engine::testing::{Harness, TestBackend, TestDatabase, loopback, sealing_key};
use gennaker_engine::{ExecutionStatus, ManualClock};
use gennaker_notify::{
    Notifier, NotifySettings, Planner, RetryPolicy, SlackSettings, SmtpSettings,
};
use gennaker_outbound::OutboundPolicy;
use gennaker_store::{NewNotification, NotificationStatus, NotificationStore};
use serde_json::{Value, json};

/// What a receiver got: (path, Idempotency-Key, body).
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// An HTTP receiver on 127.0.0.1 answering `status` to every POST under `/`.
async fn receiver(status: StatusCode) -> (String, Received) {
    let received: Received = Arc::default();
    async fn take(
        State((received, status)): State<(Received, StatusCode)>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        received
            .lock()
            .unwrap()
            .push((path, key, serde_json::from_str(&body).unwrap()));
        status
    }
    let app = Router::new()
        .route("/{*path}", post(take))
        .with_state((received.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn notifier(harness: &Harness, settings: &NotifySettings) -> Notifier {
    Notifier::new(
        Arc::new(harness.store.clone()),
        Some(sealing_key()),
        settings,
        &loopback(),
        Arc::new(harness.clock.clone()),
    )
    .unwrap()
}

async fn deliver_all(notifier: &Notifier) -> usize {
    let mut total = 0;
    loop {
        let handled = notifier.deliver_due().await.unwrap();
        if handled == 0 {
            return total;
        }
        total += handled;
    }
}

async fn harness(backend: TestBackend) -> Harness {
    let planner = Arc::new(Planner::new(Some("https://gk.example.com/".into())));
    Harness::with_notifications(backend, loopback(), planner).await
}

macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(gennaker_engine::testing::TestBackend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(gennaker_engine::testing::TestBackend::Postgres).await;
            }
        }
    };
}

both_backends!(
    a_run_notifies_each_event_once,
    a_run_notifies_each_event_once_on
);

async fn a_run_notifies_each_event_once_on(backend: TestBackend) {
    let (url, received) = receiver(StatusCode::OK).await;
    let harness = harness(backend).await;
    let pipeline = json!({
        "notifications": [
            {"type": "webhook", "address": format!("{url}/hook"), "level": "pipeline",
             "when": ["pipeline.starting", "pipeline.complete", "pipeline.failed"],
             "message": {"pipeline.complete": {"text": "done for ${trigger.user} in ${execution.application}"}}},
            {"type": "slack", "address": "#deploys", "when": ["pipeline.complete"]},
            {"type": "sms", "address": "+15550100", "when": ["pipeline.complete"]}
        ],
        "stages": [
            {"refId": "1", "name": "vars", "type": "evaluateVariables",
             "variables": [{"key": "x", "value": "1"}],
             "sendNotifications": true,
             "notifications": [{"type": "webhook", "address": format!("{url}/stage"), "level": "stage",
                                "when": ["stage.starting", "stage.complete"]}]},
            {"refId": "2", "name": "quiet", "type": "evaluateVariables", "requisiteStageRefIds": ["1"],
             "variables": [{"key": "y", "value": "2"}],
             "notifications": [{"type": "webhook", "address": format!("{url}/quiet"), "when": ["stage.complete"]}]}
        ]
    });
    let execution = harness.run("notified", pipeline).await;
    let execution = harness.finished(&execution.id).await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded);

    let settings = NotifySettings {
        slack: Some(SlackSettings {
            webhook_url: format!("{url}/services/T0/B0/TOKEN"),
        }),
        ..NotifySettings::default()
    };
    let notifier = notifier(&harness, &settings);
    assert_eq!(deliver_all(&notifier).await, 5);
    assert_eq!(deliver_all(&notifier).await, 0, "nothing is sent twice");

    let received = received.lock().unwrap().clone();
    let mut seen: Vec<(String, String)> = received
        .iter()
        .map(|(path, _, body)| {
            (
                path.clone(),
                body["event"]
                    .as_str()
                    .unwrap_or_else(|| body["text"].as_str().unwrap())
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("hook".to_owned(), "pipeline.complete".to_owned()),
            ("hook".to_owned(), "pipeline.starting".to_owned()),
            ("services/T0/B0/TOKEN".to_owned(), "Pipeline 'notified' (shop) completed (SUCCEEDED) <https://gk.example.com/api/v1/executions/".to_owned() + &execution.id + "|view execution>"),
            ("stage".to_owned(), "stage.complete".to_owned()),
            ("stage".to_owned(), "stage.starting".to_owned()),
        ],
        "{received:#?}"
    );
    let complete = &received
        .iter()
        .find(|(_, _, b)| b["event"] == "pipeline.complete")
        .unwrap();
    assert_eq!(
        complete.2["message"],
        format!(
            "done for {} in shop",
            gennaker_engine::testing::requester().user
        )
    );
    assert_eq!(complete.2["executionId"], execution.id);
    assert_eq!(
        complete.2["link"],
        format!("https://gk.example.com/api/v1/executions/{}", execution.id)
    );
    assert!(
        complete.1.starts_with(&execution.id),
        "idempotency key {}",
        complete.1
    );
    let slack = &received
        .iter()
        .find(|(p, _, _)| p.starts_with("services"))
        .unwrap()
        .2;
    assert_eq!(slack["channel"], "#deploys");

    let stored = harness
        .store
        .execution_notifications(&execution.id)
        .await
        .unwrap();
    let statuses: Vec<(String, NotificationStatus)> =
        stored.iter().map(|n| (n.kind.clone(), n.status)).collect();
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    let sms = stored.iter().find(|n| n.kind == "sms").unwrap();
    assert_eq!(sms.status, NotificationStatus::Skipped);
    assert!(
        sms.last_error
            .as_deref()
            .unwrap()
            .contains("cannot send 'sms'")
    );
    assert!(
        stored
            .iter()
            .filter(|n| n.kind != "sms")
            .all(|n| n.status == NotificationStatus::Delivered)
    );
    harness.stop().await;
}

both_backends!(
    a_failing_receiver_is_retried_then_failed,
    a_failing_receiver_is_retried_then_failed_on
);

async fn a_failing_receiver_is_retried_then_failed_on(backend: TestBackend) {
    let (url, received) = receiver(StatusCode::SERVICE_UNAVAILABLE).await;
    let harness = harness(backend).await;
    let pipeline = json!({
        "notifications": [{"type": "webhook", "address": format!("{url}/down"), "when": ["pipeline.complete"]}],
        "stages": [{"refId": "1", "name": "vars", "type": "evaluateVariables", "variables": [{"key": "x", "value": "1"}]}]
    });
    let execution = harness.run("retried", pipeline).await;
    let execution = harness.finished(&execution.id).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "a notification never fails the pipeline"
    );
    let settings = NotifySettings {
        retry: RetryPolicy {
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(3),
            max_attempts: 4,
        },
        ..NotifySettings::default()
    };
    let notifier = notifier(&harness, &settings);
    // Waits of 1 s, 2 s, then the 3 s cap; each send happens exactly when due.
    for (attempt, wait) in [(1, 1000), (2, 2000), (3, 3000)] {
        assert_eq!(
            notifier.deliver_due().await.unwrap(),
            1,
            "attempt {attempt}"
        );
        assert_eq!(received.lock().unwrap().len(), attempt);
        harness.clock.advance(Duration::from_millis(wait - 1));
        assert_eq!(
            notifier.deliver_due().await.unwrap(),
            0,
            "not due before its backoff"
        );
        let pending = &harness
            .store
            .execution_notifications(&execution.id)
            .await
            .unwrap()[0];
        assert_eq!(pending.status, NotificationStatus::Pending);
        assert!(pending.last_error.as_deref().unwrap().contains("HTTP 503"));
        harness.clock.advance(Duration::from_millis(1));
    }
    assert_eq!(notifier.deliver_due().await.unwrap(), 1);
    let failed = &harness
        .store
        .execution_notifications(&execution.id)
        .await
        .unwrap()[0];
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.attempts, 4);
    let error = failed.last_error.as_deref().unwrap();
    assert!(
        error.contains("gave up after 4 attempts") && error.contains("answered HTTP 503"),
        "{error}"
    );
    harness.clock.advance(Duration::from_secs(3600));
    assert_eq!(notifier.deliver_due().await.unwrap(), 0);
    assert_eq!(received.lock().unwrap().len(), 4);
    let still = harness
        .engine
        .execution(&execution.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, ExecutionStatus::Succeeded);
    harness.stop().await;
}

fn queued(kind: &str, document: Value) -> NewNotification {
    NewNotification {
        dedupe_key: format!("x/1/-/{kind}"),
        execution_id: "x".into(),
        stage_id: None,
        event: "pipeline.failed".into(),
        kind: kind.into(),
        document: document.to_string(),
        deliver_at: 0,
        skipped: None,
    }
}

fn event(kind: &str, address: &str) -> Value {
    json!({"type": kind, "address": address, "event": "pipeline.failed", "level": "pipeline",
           "executionId": "x", "application": "shop", "pipeline": "deploy",
           "status": "TERMINAL", "time": 0, "link": "https://gk.example.com/api/v1/executions/x",
           "message": "see the canary report", "subject": null})
}

#[tokio::test]
async fn refused_and_rejected_addresses_fail_at_once_without_secrets() {
    let (url, received) = receiver(StatusCode::NOT_FOUND).await;
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    let clock = ManualClock::new(0);
    store
        .enqueue_notifications(&[
            // The default policy refuses private networks: nothing is sent.
            queued("webhook", event("webhook", "http://10.1.2.3/hook/SECRET")),
            queued("slack", event("slack", "#deploys")),
        ])
        .await
        .unwrap();
    let notifier = Notifier::new(
        Arc::new(store.clone()),
        None,
        &NotifySettings::default(),
        &OutboundPolicy::default(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(notifier.deliver_due().await.unwrap(), 2);
    let stored = store.execution_notifications("x").await.unwrap();
    assert!(
        stored
            .iter()
            .all(|n| n.status == NotificationStatus::Failed),
        "{stored:?}"
    );
    let refused = stored[0].last_error.as_deref().unwrap();
    assert!(
        refused.contains("10.1.2.3") && !refused.contains("SECRET"),
        "{refused}"
    );
    assert!(
        stored[1]
            .last_error
            .as_deref()
            .unwrap()
            .contains("[notifications.slack] webhook_url")
    );

    // A 4xx is permanent too: one POST, no retry.
    store
        .enqueue_notifications(&[NewNotification {
            dedupe_key: "y".into(),
            execution_id: "y".into(),
            ..queued("webhook", event("webhook", &format!("{url}/gone")))
        }])
        .await
        .unwrap();
    let loopback = Notifier::new(
        Arc::new(store.clone()),
        None,
        &NotifySettings::default(),
        &loopback(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(loopback.deliver_due().await.unwrap(), 1);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(loopback.deliver_due().await.unwrap(), 0);
    assert_eq!(received.lock().unwrap().len(), 1);
    let gone = &store.execution_notifications("y").await.unwrap()[0];
    assert_eq!(gone.status, NotificationStatus::Failed);
    assert!(gone.last_error.as_deref().unwrap().contains("HTTP 404"));
}

/// A real SMTP server: Python's aiosmtpd writing every message it accepts into a
/// Maildir (installed by scripts/test.sh).
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let maildir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        // Owned before the wait, so a failure below still stops it.
        let server = SmtpServer {
            child,
            port,
            maildir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("aiosmtpd did not listen on {port}");
    }

    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail/new")) else {
            return Vec::new();
        };
        entries
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn email_goes_through_a_real_smtp_server() {
    let smtp = SmtpServer::start().await;
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    let clock = ManualClock::new(0);
    let mut email = event("email", "ops@example.com, lead@example.com");
    email["cc"] = json!(["audit@example.com"]);
    store
        .enqueue_notifications(&[queued("email", email)])
        .await
        .unwrap();
    let settings = NotifySettings {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp.port,
            from: "Gennaker <gennaker@example.com>".into(),
            username: None,
            password: None,
            starttls: false,
        }),
        ..NotifySettings::default()
    };
    let notifier = Notifier::new(
        Arc::new(store.clone()),
        None,
        &settings,
        &OutboundPolicy::default(),
        Arc::new(clock),
    )
    .unwrap();
    assert_eq!(notifier.deliver_due().await.unwrap(), 1);
    let stored = &store.execution_notifications("x").await.unwrap()[0];
    assert_eq!(
        stored.status,
        NotificationStatus::Delivered,
        "{:?}",
        stored.last_error
    );
    assert_eq!(notifier.deliver_due().await.unwrap(), 0);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one message for both recipients");
    let mail = &messages[0];
    assert!(
        mail.contains("Subject: [Gennaker] Pipeline 'deploy' (shop) failed (TERMINAL)"),
        "{mail}"
    );
    assert!(
        mail.contains("To: ops@example.com, lead@example.com"),
        "{mail}"
    );
    assert!(mail.contains("Cc: audit@example.com"), "{mail}");
    assert!(mail.contains("see the canary report"), "{mail}");
    assert!(
        mail.contains("https://gk.example.com/api/v1/executions/x"),
        "{mail}"
    );
}

#[tokio::test]
async fn an_smtp_server_that_is_down_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    let clock = ManualClock::new(0);
    store
        .enqueue_notifications(&[queued("email", event("email", "ops@example.com"))])
        .await
        .unwrap();
    let settings = NotifySettings {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            from: "gennaker@example.com".into(),
            username: Some("gk".into()),
            password: Some("hunter2".into()),
            starttls: false,
        }),
        ..NotifySettings::default()
    };
    let notifier = Notifier::new(
        Arc::new(store.clone()),
        None,
        &settings,
        &OutboundPolicy::default(),
        Arc::new(clock),
    )
    .unwrap();
    assert_eq!(notifier.deliver_due().await.unwrap(), 1);
    let stored = &store.execution_notifications("x").await.unwrap()[0];
    assert_eq!(stored.status, NotificationStatus::Pending);
    let error = stored.last_error.as_deref().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && !error.contains("hunter2"),
        "{error}"
    );
    assert_eq!(stored.next_attempt_at, 5_000, "the default first wait");
}
