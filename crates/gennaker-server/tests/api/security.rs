//! Issue 17's attacks on the HTTP API, each a failing attempt that is now refused with
//! the message its user sees: slow and piled-up connections, invented methods, hidden
//! applications, revoked streams, hostile names, permission grabs and open files.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gennaker_store::Store;

use crate::harness::*;

/// How long a test waits for something the server must do within a second or two.
const BOUND: Duration = Duration::from_secs(15);

/// Reads until the server closes the connection (or `BOUND` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

fn http(seconds_header: u64, seconds_request: u64, max_connections: usize) -> HttpSettings {
    HttpSettings {
        header_read_timeout: Duration::from_secs(seconds_header),
        request_timeout: Duration::from_secs(seconds_request),
        max_connections,
        shutdown_deadline: Duration::from_secs(2),
    }
}

api_test!(
    a_slowloris_client_is_closed_after_the_header_timeout,
    |backend| {
        let server = Server::start_with(
            backend,
            Options {
                http: http(1, 60, 64),
                ..Options::default()
            },
        )
        .await;
        // Half a request line and a header, then nothing more: before, the connection
        // stayed open for as long as the client liked.
        let mut slow = TcpStream::connect(server.address).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow).await;
        assert!(
            answer.is_some(),
            "the server kept a client that never finished its headers"
        );
        // A connection that sends nothing at all is closed too.
        let mut silent = TcpStream::connect(server.address).await.unwrap();
        assert!(read_to_close(&mut silent).await.is_some());
        // Others are served as usual.
        server
            .call(Method::GET, "/healthz", None, Body::None)
            .await
            .expect(200);
    }
);

api_test!(connections_beyond_the_cap_are_answered_503, |backend| {
    let server = Server::start_with(
        backend,
        Options {
            http: http(60, 60, 2),
            ..Options::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.address).await.unwrap());
    }
    // The two held connections are served (their requests get answers)…
    for stream in &mut held {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    }
    // …and a third is refused with a reason.
    let mut third = TcpStream::connect(server.address).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut third).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body["error"]["message"],
        "the server has too many open connections (at most 2, [http] max_connections); try again later"
    );
    // Once one closes, new connections are served again.
    held.pop();
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let reply = server.call(Method::GET, "/healthz", None, Body::None).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});

api_test!(
    a_request_slower_than_the_timeout_gets_408_but_streams_run_on,
    |backend| {
        let server = Server::start_with(
            backend,
            Options {
                http: http(60, 1, 64),
                ..Options::default()
            },
        )
        .await;
        server.app(json!({ "name": "shop" })).await;
        // A body announced but never sent.
        let mut slow = TcpStream::connect(server.address).await.unwrap();
        let request = format!(
            "POST /api/v1/applications/shop/pipelines HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\"",
            server.admin
        );
        slow.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(BOUND, slow.read(&mut buffer))
            .await
            .expect("no answer to a request past its timeout")
            .unwrap();
        let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains(
                "the request took longer than 1 s ([http] request_timeout_seconds) and was stopped"
            ),
            "{answer}"
        );
        // An event stream is not a slow request: it outlives the timeout.
        let read = server
            .sse(
                "/api/v1/applications/shop/events",
                &server.admin,
                Duration::from_millis(2500),
                |_| false,
            )
            .await;
        assert!(!read.ended, "the request timeout cut an event stream");
    }
);

api_test!(invented_methods_add_no_metric_series, |backend| {
    let server = Server::start(backend).await;
    let series = |text: &str| {
        text.lines()
            .filter(|line| line.starts_with("gennaker_http_requests_total{"))
            .count()
    };
    // One known method first, so its series exist before counting.
    server.get("/api/v1/applications", &server.admin).await;
    let before = server.get("/metrics", &server.admin).await.expect(200);
    let before = series(before.as_str().unwrap());
    for i in 0..500 {
        let method = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/api/v1/applications".to_owned()
        } else {
            format!("/nowhere/{i}")
        };
        server.call(method, &path, None, Body::None).await;
    }
    let after = server.get("/metrics", &server.admin).await.expect(200);
    let text = after.as_str().unwrap();
    // At most: other × (one route + unmatched) × the statuses they got, plus the
    // /metrics reads themselves.
    assert!(
        series(text) <= before + 6,
        "500 invented methods made {} new series:\n{text}",
        series(text) - before
    );
    assert!(text.contains(r#"method="other""#), "{text}");
    assert!(!text.contains("X499"), "{text}");
});

api_test!(metrics_access_is_a_setting, |backend| {
    // The default: a token is needed.
    let server = Server::start(backend).await;
    let anonymous = server.call(Method::GET, "/metrics", None, Body::None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(
        server
            .get("/metrics", &server.admin)
            .await
            .expect(200)
            .as_str()
            .unwrap()
            .contains("gennaker_build_info")
    );
    drop(server);

    let open = Server::start_with(
        backend,
        Options {
            metrics_access: MetricsAccess::Open,
            ..Options::default()
        },
    )
    .await;
    let text = open
        .call(Method::GET, "/metrics", None, Body::None)
        .await
        .expect(200);
    assert!(text.as_str().unwrap().contains("gennaker_build_info"));
    drop(open);

    let off = Server::start_with(
        backend,
        Options {
            metrics_access: MetricsAccess::Off,
            ..Options::default()
        },
    )
    .await;
    let gone = off.get("/metrics", &off.admin).await.expect(404);
    assert_eq!(gone["error"]["code"], "not_found");
});

api_test!(without_read_an_application_does_not_exist, |backend| {
    let server = Server::start(backend).await;
    let perms = json!({ "READ": ["readers"], "WRITE": ["writers"] });
    server
        .app(json!({ "name": "vault", "permissions": perms }))
        .await;
    let outsider = server.user("mallory", &["interns"]).await;
    let reader = server.user("rita", &["readers"]).await;

    let missing = server
        .get("/api/v1/applications/nosuchapp", &outsider)
        .await
        .expect(404);
    let hidden = server
        .get("/api/v1/applications/vault", &outsider)
        .await
        .expect(404);
    assert_eq!(
        hidden["error"]["message"],
        "application 'vault' not found; create it with `gennaker app save`"
    );
    assert_eq!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("nosuchapp", "vault"),
        hidden["error"]["message"].as_str().unwrap(),
        "a hidden application answers like a missing one"
    );
    let hidden = server
        .delete("/api/v1/applications/vault", &outsider)
        .await
        .expect(404);
    assert!(!hidden.to_string().contains("writers"), "{hidden}");

    // Nor can a PUT tell them apart: both are creation attempts.
    let on_hidden = server
        .put(
            "/api/v1/applications/vault",
            &outsider,
            json!({ "name": "vault" }),
        )
        .await
        .expect(403);
    let on_missing = server
        .put(
            "/api/v1/applications/nosuchapp",
            &outsider,
            json!({ "name": "nosuchapp" }),
        )
        .await
        .expect(403);
    assert_eq!(on_hidden, on_missing);

    // A reader knows it exists, and learns whom to ask for WRITE, not the roles of
    // other users.
    let refused = server
        .delete("/api/v1/applications/vault", &reader)
        .await
        .expect(403);
    assert_eq!(
        refused["error"]["message"],
        "user 'rita' lacks WRITE permission on application 'vault': it is granted to role(s) [writers]; an admin can grant a role with `gennaker user set-roles`"
    );
});

api_test!(event_streams_close_when_access_ends, |backend| {
    let server = Server::start(backend).await;
    let perms = json!({ "READ": ["readers"], "WRITE": ["readers"], "EXECUTE": ["readers"] });
    server
        .app(json!({ "name": "shop", "permissions": perms.clone() }))
        .await;
    server.user("rita", &["readers"]).await;
    let (token, token_id) = server.token_for("rita").await;

    // Revoking the token ends the stream opened with it.
    let stream = server.sse(
        "/api/v1/applications/shop/events",
        &token,
        BOUND,
        |events| events.iter().any(|e| e.event == "error"),
    );
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .delete(&format!("/api/v1/tokens/{token_id}"), &server.admin)
            .await
    };
    let (read, revoked) = tokio::join!(stream, revoke);
    assert!(
        revoked.status == 200 || revoked.status == 204,
        "{revoked:?}"
    );
    let error = read
        .events
        .iter()
        .find(|e| e.event == "error")
        .unwrap_or_else(|| panic!("the stream outlived its token: {:?}", read.events));
    assert_eq!(
        error.data["message"],
        "the token of this stream is no longer valid (revoked, expired, or its user was deleted); the stream is closed"
    );

    // Losing READ ends a per-execution stream.
    server
        .save("shop", &server.admin, wait_pipeline("shop", "hold", 60))
        .await
        .expect(201);
    let id = server.start_execution("shop", "hold", json!({})).await;
    let (token, _) = server.token_for("rita").await;
    let path = format!("/api/v1/executions/{id}/events");
    let stream = server.sse(&path, &token, BOUND, |events| {
        events.iter().any(|e| e.event == "error")
    });
    let narrow = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .put(
                "/api/v1/applications/shop",
                &server.admin,
                json!({ "name": "shop", "permissions": { "READ": ["admins-only"], "WRITE": ["admins-only"] } }),
            )
            .await
            .expect(200);
    };
    let (read, ()) = tokio::join!(stream, narrow);
    let error = read
        .events
        .iter()
        .find(|e| e.event == "error")
        .unwrap_or_else(|| panic!("the stream outlived the permission: {:?}", read.events));
    assert_eq!(
        error.data["message"],
        "user 'rita' may no longer read application 'shop' (or it was deleted); the stream is closed"
    );
    server
        .post(
            &format!("/api/v1/executions/{id}/cancel"),
            &server.admin,
            json!(null),
        )
        .await
        .expect(202);
});

api_test!(names_refuse_control_characters_and_length, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    let reply = server
        .save(
            "shop",
            &server.admin,
            wait_pipeline("shop", "deploy\u{1b}[2J\u{1b}[H", 1),
        )
        .await;
    let body = reply.clone().expect(400);
    assert_eq!(reply.problem_paths(), ["$.name"]);
    assert_eq!(
        body["error"]["problems"][0]["message"],
        "the pipeline name contains the control character U+001B; names may not contain control characters (newlines, tabs, escape sequences)"
    );
    let long = "a".repeat(257);
    let reply = server
        .save("shop", &server.admin, wait_pipeline("shop", &long, 1))
        .await;
    let body = reply.clone().expect(400);
    assert_eq!(
        body["error"]["problems"][0]["message"],
        "the pipeline name is 257 characters long; at most 256 are allowed"
    );
    server
        .save(
            "shop",
            &server.admin,
            wait_pipeline("shop", &"a".repeat(256), 1),
        )
        .await
        .expect(201);

    let token = server
        .post(
            "/api/v1/tokens",
            &server.admin,
            json!({ "name": "laptop\nci" }),
        )
        .await
        .expect(400);
    assert_eq!(
        token["error"]["message"],
        "the token name contains the control character U+000A; names may not contain control characters (newlines, tabs, escape sequences)"
    );
    let user = server
        .post(
            "/api/v1/users",
            &server.admin,
            json!({ "name": "eve\u{7}" }),
        )
        .await
        .expect(400);
    assert!(
        user["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is invalid"),
        "{user}"
    );
});

api_test!(
    a_stored_over_long_pipeline_name_stays_readable_and_deletable,
    |backend| {
        let server = Server::start(backend).await;
        server.app(json!({ "name": "shop" })).await;
        // Saved before names had limits (straight into the store, as an old version did).
        let name = "n".repeat(100_000);
        let saved = server
            .store
            .save_pipeline(
                "shop",
                &gennaker_store::PipelineSave {
                    id: None,
                    name: name.clone(),
                    config: wait_pipeline("shop", &name, 1),
                },
                "admin",
            )
            .await;
        let Ok((record, _)) = saved else {
            // PostgreSQL's index refuses such a name: it could never be stored there.
            assert_eq!(backend, TestBackend::Postgres, "{saved:?}");
            return;
        };
        let list = server
            .get("/api/v1/applications/shop/pipelines", &server.admin)
            .await
            .expect(200);
        assert_eq!(list[0]["id"], record.id.as_str());
        // By id, it can be read and run…
        let path = format!("/api/v1/applications/shop/pipelines/{}", record.id);
        let read = server.get(&path, &server.admin).await.expect(200);
        assert_eq!(read["name"].as_str().unwrap().len(), 100_000);
        let run = server
            .run("shop", &record.id, &server.admin, json!({}))
            .await
            .expect(202);
        let id = run["id"].as_str().unwrap().to_owned();
        server.wait_status(&id, "SUCCEEDED").await;
        // …and deleted.
        server.delete(&path, &server.admin).await.expect(204);
        let list = server
            .get("/api/v1/applications/shop/pipelines", &server.admin)
            .await
            .expect(200);
        assert_eq!(list, json!([]));
    }
);

api_test!(
    only_admins_create_applications_unless_configured,
    |backend| {
        let server = Server::start(backend).await;
        let dev = server.user("dev", &["devs"]).await;
        let refused = server
            .post("/api/v1/applications", &dev, json!({ "name": "mine" }))
            .await
            .expect(403);
        assert_eq!(
            refused["error"]["message"],
            "only admins may create applications on this server; ask an admin to create it (the server's `[auth] application_creators` setting decides who may)"
        );
        let refused = server
            .put("/api/v1/applications/mine", &dev, json!({ "name": "mine" }))
            .await
            .expect(403);
        assert_eq!(refused["error"]["code"], "forbidden");
        drop(server);

        let open = Server::start_with(
            backend,
            Options {
                application_creators: vec!["*".to_owned()],
                ..Options::default()
            },
        )
        .await;
        let dev = open.user("dev", &["devs"]).await;
        open.post("/api/v1/applications", &dev, json!({ "name": "mine" }))
            .await
            .expect(201);
    }
);

api_test!(a_write_user_cannot_rewrite_permissions, |backend| {
    let server = Server::start(backend).await;
    let perms = json!({ "READ": ["devs"], "WRITE": ["devs"], "EXECUTE": ["devs"] });
    server
        .app(json!({ "name": "shop", "email": "a@example.com", "permissions": perms.clone() }))
        .await;
    let dev = server.user("dev", &["devs", "interns"]).await;
    // Granting another role of theirs everything: refused.
    let grab = json!({ "name": "shop", "permissions": { "READ": ["devs", "interns"], "WRITE": ["devs", "interns"] } });
    let refused = server
        .put("/api/v1/applications/shop", &dev, grab)
        .await
        .expect(403);
    assert_eq!(
        refused["error"]["message"],
        "only admins may change the permissions of application 'shop'; send the document with its current 'permissions' (as GET returns them), or ask an admin"
    );
    // Dropping them (opening the application to everyone): refused.
    server
        .put("/api/v1/applications/shop", &dev, json!({ "name": "shop" }))
        .await
        .expect(403);
    // Other fields, with the permissions as they are: allowed.
    server
        .put(
            "/api/v1/applications/shop",
            &dev,
            json!({ "name": "shop", "email": "b@example.com", "permissions": perms.clone() }),
        )
        .await
        .expect(200);
    let stored = server
        .get("/api/v1/applications/shop", &server.admin)
        .await
        .expect(200);
    assert_eq!(stored["config"]["permissions"], perms);
});

api_test!(every_error_answer_is_json, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    for (method, path, code) in [
        (Method::PATCH, "/api/v1/applications", "method_not_allowed"),
        (Method::GET, "/api/v1/executions?limit=many", "bad_request"),
    ] {
        let reply = server
            .call(method.clone(), path, Some(&server.admin), Body::None)
            .await;
        assert!(reply.status >= 400, "{method} {path}: {reply:?}");
        assert_eq!(
            reply.body["error"]["code"], code,
            "{method} {path}: {reply:?}"
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: {reply:?}"
        );
    }
    let reply = server
        .call(
            Method::PATCH,
            "/api/v1/applications",
            Some(&server.admin),
            Body::None,
        )
        .await;
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("this method is not allowed on this route")
            && message.ends_with("/api/openapi.json lists each route's methods"),
        "{message}"
    );
});

#[tokio::test]
async fn data_files_are_private_to_the_server_user() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // An existing data directory that others may read, with a token file to match.
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        data_dir.clone(),
        format!("sqlite://{}/gennaker.db", data_dir.display()),
    );
    let open = gennaker_server::open(&config).await.unwrap();
    // A write, so the write-ahead log exists.
    open.store
        .create_application("shop", &json!({ "name": "shop" }), "admin")
        .await
        .unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700, "the data directory");
    let mut checked = Vec::new();
    for name in [
        "gennaker.db",
        "gennaker.db-wal",
        "gennaker.db-shm",
        "admin-token",
    ] {
        let path = data_dir.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
            checked.push(name);
        }
    }
    assert!(
        checked.contains(&"gennaker.db") && checked.contains(&"admin-token"),
        "{checked:?}"
    );
    open.store.close().await;
    // The server is gone: its hold on the SQLite file goes with it.
    drop(open);

    // A later start narrows files an operator (or an old version) left open.
    let token = data_dir.join("admin-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        data_dir.join("gennaker.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = gennaker_server::open(&config).await.unwrap();
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&token), 0o600);
    assert_eq!(mode(&data_dir.join("gennaker.db")), 0o600);
    again.store.close().await;
    drop(again);

    // The search bits alone (the local provider's, for instances running as another
    // user) let nobody list the directory: they stay.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let searchable = gennaker_server::open(&config).await.unwrap();
    assert_eq!(mode(&data_dir), 0o711);
    searchable.store.close().await;
}
