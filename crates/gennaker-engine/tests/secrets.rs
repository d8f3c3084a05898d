//! Secrets a webhook needs (an `Authorization` header, a password in its URL, a token
//! parameter) reach the remote, even after crashes and restarts, but are sealed in the
//! database and redacted in everything the engine shows; so is a copy an expression
//! makes under a secret's name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod remote;

use gennaker_core::redact::REDACTED;
use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{FaultRun, loopback, stage, succeeded, summary};
use gennaker_engine::{RunRequest, engine_test, fault_test};
use gennaker_store::ExecutionStore;
use remote::{Remote, answer};
use serde_json::{Value, json};

/// What must never be stored or shown in clear.
const SECRETS: &[&str] = &["s3cr3t", "pa55", "t0k3n", "dXNlcjpwYTU1"];

/// `Basic` credentials of `user:pa55`.
const BASIC: &str = "Basic dXNlcjpwYTU1";

/// Two webhooks that wait for completion (so the monitor task reads the secrets again
/// in a later step): one with an `Authorization` header, one with a password in its URL
/// and an API key from a parameter.
fn pipeline(remote: &Remote) -> Value {
    let with_password = remote.url("/basic").replace("http://", "http://user:pa55@");
    json!({
        "parameterConfig": [{"name": "apiToken", "default": "t0k3n"}],
        "stages": [
            {"refId": "1", "name": "bearer", "type": "webhook", "url": remote.url("/bearer"),
             "customHeaders": {"Authorization": "Bearer s3cr3t", "X-Plain": "visible"},
             "waitForCompletion": true, "statusJsonPath": "$.status", "successStatuses": "SUCCESS"},
            {"refId": "2", "name": "basic", "type": "webhook", "url": with_password,
             "requisiteStageRefIds": ["1"],
             "customHeaders": {"X-Api-Key": "${parameters.apiToken}"},
             "waitForCompletion": true, "statusJsonPath": "$.status", "successStatuses": "SUCCESS"},
            {"refId": "3", "name": "copy", "type": "evaluateVariables", "requisiteStageRefIds": ["2"],
             "variables": [{"key": "auth_token",
                            "value": "${#stage('bearer').context.customHeaders.Authorization}"}]},
        ]
    })
}

fn script(remote: &Remote) {
    for path in ["/bearer", "/basic"] {
        remote.on(
            "POST",
            path,
            vec![answer(202, json!({"status": "RUNNING"}))],
        );
        remote.on(
            "GET",
            path,
            vec![
                answer(200, json!({"status": "RUNNING"})),
                answer(200, json!({"status": "RUNNING"})),
                answer(200, json!({"status": "SUCCESS"})),
            ],
        );
    }
}

/// Every call carried the real secrets.
fn assert_remote_got_the_secrets(remote: &Remote) {
    for method in ["POST", "GET"] {
        let bearer = remote.seen(method, "/bearer");
        let basic = remote.seen(method, "/basic");
        assert!(
            !bearer.is_empty() && !basic.is_empty(),
            "{method} calls made"
        );
        for call in &bearer {
            assert_eq!(call.headers["authorization"], "Bearer s3cr3t", "{call:?}");
        }
        for call in &basic {
            assert_eq!(call.headers["authorization"], BASIC, "{call:?}");
            assert_eq!(call.headers["x-api-key"], "t0k3n", "{call:?}");
        }
    }
}

fn assert_no_secret_in(what: &str, text: &str) {
    let text = gennaker_store::testing::without_sealed_values(text);
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} holds '{secret}':\n{text}");
    }
}

engine_test!(
    webhook_secrets_are_sent_sealed_at_rest_and_redacted,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        script(&remote);
        let started = h.run("secret-hooks", pipeline(&remote)).await;
        assert_no_secret_in(
            "the started execution",
            &serde_json::to_string(&started).unwrap(),
        );
        let done = h.finish(&started.id).await;
        succeeded(&done);
        assert_remote_got_the_secrets(&remote);

        let stored = h.store.stored_execution_text().await.unwrap();
        assert_no_secret_in("the database", &stored);
        assert!(stored.contains("gnk-sealed:v1:"), "{stored}");
        assert!(stored.contains("visible"), "only secrets are sealed");

        let shown = serde_json::to_string(&done).unwrap();
        assert_no_secret_in("the execution as read", &shown);
        let bearer = stage(&done, "bearer");
        assert_eq!(bearer.context["customHeaders"]["Authorization"], REDACTED);
        assert_eq!(bearer.context["customHeaders"]["X-Plain"], "visible");
        let basic = stage(&done, "basic");
        let url = basic.context["url"].as_str().unwrap();
        assert!(url.starts_with("http://user:***@127.0.0.1:"), "{url}");
        assert_eq!(basic.context["customHeaders"]["X-Api-Key"], REDACTED);
        assert_eq!(done.trigger["parameters"]["apiToken"], REDACTED);
        assert_eq!(
            stage(&done, "copy").outputs["auth_token"],
            REDACTED,
            "an expression's copy under a secret's name is a secret too"
        );
        let listed = h
            .engine
            .executions(&gennaker_store::ExecutionQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_no_secret_in(
            "the execution list",
            &serde_json::to_string(&listed).unwrap(),
        );

        let evaluated = h
            .engine
            .evaluate(
                &done.id,
                "${#stage('bearer').context.customHeaders.Authorization}",
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            evaluated.value,
            json!(REDACTED),
            "the API cannot evaluate a secret out"
        );
        h.stop().await;
    }
);

engine_test!(
    only_the_key_that_sealed_a_row_opens_it,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        script(&remote);
        let started = h.run("secret-hooks", pipeline(&remote)).await;
        let done = h.finish(&started.id).await;
        succeeded(&done);
        let row = h.store.get_execution(&done.id).await.unwrap().unwrap();
        let other = gennaker_store::SealingKey::from_bytes(&[1; gennaker_store::KEY_LEN]).unwrap();
        let wrong = other.open_document(&row.document, &row.id).unwrap_err();
        assert!(
            wrong.to_string().contains("sealed with another key")
                && wrong.to_string().contains("[secrets] key_file"),
            "{wrong}"
        );
        h.stop().await;
    }
);

fault_test!(
    /// Killed after every commit (or every step repeated), the engine still reads the
    /// sealed secrets back and sends them; nothing is ever stored in clear.
    webhook_secrets_survive_restarts,
    |backend, fault| {
        let remote = Remote::start().await;
        script(&remote);
        let outcome = FaultRun::new(backend, fault, pipeline(&remote))
            .with_outbound(loopback())
            .run()
            .await;
        outcome.assert_clean();
        succeeded(&outcome.execution);
        assert_eq!(
            stage(&outcome.execution, "bearer").status,
            Succeeded,
            "{}",
            summary(&outcome.execution)
        );
        assert_remote_got_the_secrets(&remote);
        for row in &outcome.executions {
            assert_no_secret_in("a stored execution", &row.document);
        }
        assert_no_secret_in(
            "the execution as read",
            &serde_json::to_string(&outcome.execution).unwrap(),
        );
    }
);

engine_test!(
    a_run_request_parameter_named_like_a_secret_is_sealed,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        script(&remote);
        let mut parameters = serde_json::Map::new();
        parameters.insert("apiToken".into(), json!("t0k3n"));
        let started = h
            .run_with(
                "secret-hooks",
                pipeline(&remote),
                RunRequest {
                    parameters,
                    ..RunRequest::default()
                },
            )
            .await;
        let done = h.finish(&started.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        assert_remote_got_the_secrets(&remote);
        assert_no_secret_in(
            "the database",
            &h.store.stored_execution_text().await.unwrap(),
        );
        h.stop().await;
    }
);
