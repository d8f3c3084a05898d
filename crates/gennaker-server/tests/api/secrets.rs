//! Secrets of a webhook stage (an `Authorization` header, a password in the URL, a
//! token parameter) reach the remote but never the database in clear, the API, the
//! event streams or the audit log; pipeline documents show them only to their editors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::authz_table::PERMS;
use crate::harness::*;

/// What must never be stored or shown in clear.
const SECRETS: &[&str] = &["s3cr3t", "pa55", "t0k3n", "dXNlcjpwYTU1"];

/// The marker secrets are shown as.
const REDACTED: &str = "***redacted***";

/// A remote on 127.0.0.1 that records the `Authorization` and `X-Api-Key` headers of
/// each call, by path, and answers `{"status": "SUCCESS"}`.
struct Remote {
    base: String,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Remote {
    async fn start() -> Remote {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let record = record.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    record.lock().unwrap().push((
                        uri.path().to_owned(),
                        header("authorization"),
                        header("x-api-key"),
                    ));
                    axum::Json(json!({ "status": "SUCCESS" }))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Remote { base, seen }
    }

    fn seen(&self, path: &str) -> Vec<(String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, auth, key)| (auth.clone(), key.clone()))
            .collect()
    }
}

fn pipeline(remote: &Remote) -> Value {
    json!({
        "application": "vault", "name": "hooks",
        "parameterConfig": [{ "name": "apiToken", "default": "t0k3n" }],
        "stages": [
            { "refId": "1", "type": "webhook", "name": "bearer", "url": format!("{}/bearer", remote.base),
              "customHeaders": { "Authorization": "Bearer s3cr3t", "X-Plain": "visible" } },
            { "refId": "2", "type": "webhook", "name": "basic", "requisiteStageRefIds": ["1"],
              "url": format!("{}/basic", remote.base).replace("http://", "http://user:pa55@"),
              "customHeaders": { "X-Api-Key": "${ parameters.apiToken }" },
              "waitForCompletion": true, "statusUrlResolution": "getMethod",
              "statusJsonPath": "$.status", "successStatuses": "SUCCESS" },
        ],
    })
}

#[track_caller]
fn assert_no_secret(what: &str, value: &impl std::fmt::Display) {
    let text = gennaker_store::testing::without_sealed_values(&value.to_string());
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} holds '{secret}': {text}");
    }
}

api_test!(
    secrets_are_sent_but_never_stored_in_clear_or_shown,
    |backend| {
        let server = Server::start(backend).await;
        let remote = Remote::start().await;
        let perms: Value = serde_json::from_str(PERMS).unwrap();
        server
            .app(json!({ "name": "vault", "permissions": perms }))
            .await;
        let reader = server.user("reader", &["readers"]).await;
        let writer = server.user("writer", &["writers"]).await;
        server
            .save("vault", &writer, pipeline(&remote))
            .await
            .expect(201);

        let started = server
            .run(
                "vault",
                "hooks",
                &writer,
                json!({ "parameters": { "apiToken": "t0k3n" } }),
            )
            .await
            .expect(202);
        assert_no_secret("the run's answer", &started);
        let id = started["id"].as_str().unwrap().to_owned();
        let events = server
            .sse(
                &format!("/api/v1/executions/{id}/events"),
                &reader,
                Duration::from_secs(30),
                |_| false,
            )
            .await;
        assert!(
            events.ended,
            "the stream ends with the execution: {events:?}"
        );
        for event in &events.events {
            assert_no_secret("an event", &event.data);
        }
        let done = server.wait_status(&id, "SUCCEEDED").await;

        // The remote got the real secrets, the monitor's poll included.
        assert_eq!(remote.seen("/bearer")[0].0, "Bearer s3cr3t");
        let basic = remote.seen("/basic");
        assert!(basic.len() >= 2, "the call and its status poll: {basic:?}");
        for (authorization, key) in &basic {
            assert_eq!(authorization, "Basic dXNlcjpwYTU1");
            assert_eq!(key, "t0k3n");
        }

        // Nothing in clear in the database.
        let stored = server.store.stored_execution_text().await.unwrap();
        assert_no_secret("the database", &stored);
        assert!(stored.contains("gnk-sealed:v1:"), "{stored}");

        // Readers see the execution with the secrets redacted.
        let read = server
            .get(&format!("/api/v1/executions/{id}"), &reader)
            .await
            .expect(200);
        assert_no_secret("GET execution", &read);
        assert_no_secret("GET execution (admin)", &done);
        let bearer = stage(&read, "1");
        assert_eq!(
            bearer["context"]["customHeaders"]["Authorization"],
            REDACTED
        );
        assert_eq!(bearer["context"]["customHeaders"]["X-Plain"], "visible");
        let url = stage(&read, "2")["context"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(url.starts_with("http://user:***@127.0.0.1:"), "{url}");
        assert_eq!(read["trigger"]["parameters"]["apiToken"], REDACTED);
        let listed = server
            .get("/api/v1/executions?application=vault", &reader)
            .await
            .expect(200);
        assert_no_secret("the execution list", &listed);
        let evaluated = server
        .post(
            &format!("/api/v1/executions/{id}/evaluate"),
            &reader,
            json!({ "expression": "${ #stage('bearer').context.customHeaders.Authorization }" }),
        )
        .await
        .expect(200);
        assert_no_secret("an evaluation", &evaluated);

        // Pipeline documents: redacted for READ alone, as saved for those who edit them.
        for path in [
            "/api/v1/applications/vault/pipelines/hooks",
            "/api/v1/applications/vault/pipelines",
            "/api/v1/applications/vault/pipelines/hooks/history",
            "/api/v1/applications/vault/pipelines/hooks/history/1",
        ] {
            let shown = server.get(path, &reader).await.expect(200);
            assert_no_secret(path, &shown);
            assert!(shown.to_string().contains(REDACTED), "{path}: {shown}");
            let edited = server.get(path, &writer).await.expect(200);
            assert!(
                edited.to_string().contains("Bearer s3cr3t"),
                "{path}: {edited}"
            );
        }

        // The audit log keeps what a deletion removed, without its secrets.
        server
            .delete("/api/v1/applications/vault/pipelines/hooks", &writer)
            .await
            .expect(204);
        let audit = server.get("/api/v1/audit", &server.admin).await.expect(200);
        let deleted = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "DELETE /api/v1/applications/vault/pipelines/hooks")
            .unwrap_or_else(|| panic!("no deletion in {audit:#}"));
        assert_eq!(
            deleted["detail"]["deleted"]["stages"][0]["customHeaders"]["Authorization"],
            REDACTED
        );
        assert_no_secret("the audit log", &audit);
    }
);

api_test!(
    the_sealing_key_is_created_once_private_or_named_when_unusable,
    |backend| {
        let (db, _store) = gennaker_store::testing::TestDatabase::store(backend)
            .await
            .unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = gennaker_server::ServerConfig {
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            ..gennaker_server::ServerConfig::new(
                "127.0.0.1:0".parse().unwrap(),
                data_dir.path().to_owned(),
                db.url.clone(),
            )
        };
        let opened = gennaker_server::open(&config).await.unwrap();
        opened.store.close().await;
        drop(opened);
        let path = data_dir.path().join("secrets.key");
        let key = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let opened = gennaker_server::open(&config).await.unwrap();
        opened.store.close().await;
        drop(opened);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            key,
            "the key is kept"
        );

        let shared = data_dir.path().join("shared.key");
        std::fs::write(&shared, "not a key").unwrap();
        config.secrets_key_file = Some(shared);
        let refused = gennaker_server::open(&config)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("shared.key")
                && refused.contains("64 hex digits")
                && refused.contains("[secrets] key_file"),
            "{refused}"
        );
    }
);
