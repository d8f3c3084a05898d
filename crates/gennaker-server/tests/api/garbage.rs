//! Garbage bodies POSTed to the save route: always 400, never 500, nothing stored.

use crate::harness::*;

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

fn garbage_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bodies: Vec<(&'static str, Vec<u8>)> = Vec::new();
    // Random bytes and random printable text.
    for _ in 0..16 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
        bodies.push(("application/json", bytes));
        let text: Vec<u8> = (0..len)
            .map(|_| b" {}[]\":,0a-tn\\"[rng.below(14)])
            .collect();
        bodies.push(("application/json", text));
    }
    // Truncated fixtures (cut before the final brace, so never complete).
    for (_, text) in pipeline_fixtures() {
        let end = text.rfind('}').unwrap();
        for _ in 0..2 {
            let cut = rng.below(end);
            bodies.push(("application/json", text.as_bytes()[..cut].to_vec()));
        }
    }
    // Deep nesting, as the document and inside it.
    bodies.push(("application/json", "[".repeat(100_000).into_bytes()));
    bodies.push((
        "application/json",
        format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000)).into_bytes(),
    ));
    bodies.push((
        "application/json",
        format!("{}{{}}{}", "{\"a\":".repeat(300), "}".repeat(300)).into_bytes(),
    ));
    bodies.push((
        "application/json",
        format!(
            r#"{{"application": "fuzz", "name": "p", "stages": {}1{}}}"#,
            "[".repeat(60),
            "]".repeat(60)
        )
        .into_bytes(),
    ));
    bodies.push((
        "application/yaml",
        format!("{}1{}", "[".repeat(1_000), "]".repeat(1_000)).into_bytes(),
    ));
    // Well-formed JSON that is not a pipeline.
    for text in [
        "null",
        "1",
        "\"pipeline\"",
        "[]",
        "{}",
        r#"{"application": "fuzz", "name": "p", "stages": {"refId": "1"}}"#,
        r#"{"application": "fuzz", "name": "p", "stages": [1, "two", null]}"#,
        r#"{"application": "fuzz", "name": 7, "stages": []}"#,
        r#"{"application": "fuzz", "name": "p", "stages": [{"refId": "1", "type": "wait", "waitTime": 1, "requisiteStageRefIds": "1"}]}"#,
        r#"{"application": "fuzz", "name": "p", "stages": [{"refId": {}, "type": []}]}"#,
        r#"{"application": "fuzz", "name": "p", "stages": [], "triggers": 5}"#,
        "{\"a\": 1e999999}",
        "\u{feff}{}",
    ] {
        bodies.push(("application/json", text.as_bytes().to_vec()));
    }
    // YAML: broken, an alias bomb, and not a mapping.
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut previous = 'a';
    for name in 'b'..='k' {
        let refs = vec![format!("*{previous}"); 9].join(",");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    bodies.push(("application/yaml", laughs.into_bytes()));
    bodies.push(("application/yaml", b"name: [unclosed\n  - {".to_vec()));
    bodies.push(("application/yaml", b"- just\n- a list\n".to_vec()));
    bodies.push(("application/yaml", b"\x00\x01\x02".to_vec()));
    bodies
}

api_test!(garbage_is_always_400, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "fuzz" })).await;
    server
        .save("fuzz", &server.admin, wait_pipeline("fuzz", "p", 1))
        .await
        .expect(201);
    let before = server.pipeline_state("fuzz").await;
    let bodies = garbage_bodies();
    assert!(bodies.len() >= 64, "{}", bodies.len());
    for (content_type, bytes) in bodies {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
        let reply = server.save_raw("fuzz", content_type, bytes).await;
        assert_eq!(
            reply.status, 400,
            "{content_type} {shown:?} → {} {}",
            reply.status, reply.body
        );
        assert_eq!(reply.body["error"]["code"], "bad_request", "{shown:?}");
    }
    assert_eq!(server.pipeline_state("fuzz").await, before);
});

api_test!(malformed_requests_answer_in_the_error_format, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline("shop", "p", 1))
        .await
        .expect(201);
    let admin = Some(server.admin.as_str());
    let cases = [
        // JSON that does not fit the route's shape (axum: 422, plain text).
        (
            Method::POST,
            "/api/v1/users",
            Body::Json(json!({ "nam": "x" })),
            400,
        ),
        (
            Method::POST,
            "/api/v1/roles",
            Body::Json(json!({ "name": 7 })),
            400,
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Body::Raw("application/json", b"{".to_vec()),
            400,
        ),
        // Not JSON at all (axum: 415, plain text).
        (
            Method::POST,
            "/api/v1/roles",
            Body::Raw("text/plain", b"name=qa".to_vec()),
            400,
        ),
        (Method::PUT, "/api/v1/users/admin/roles", Body::None, 400),
        // A path or query parameter of the wrong type (axum: 400, plain text).
        (
            Method::GET,
            "/api/v1/applications/shop/pipelines/p/history/abc",
            Body::None,
            400,
        ),
        (
            Method::POST,
            "/api/v1/applications/shop/pipelines/p/history/1x/restore",
            Body::None,
            400,
        ),
        (Method::GET, "/api/v1/audit?limit=lots", Body::None, 400),
        // Beyond the body limit (axum: 413, plain text).
        (
            Method::POST,
            "/api/v1/applications/shop/pipelines",
            Body::Raw("application/json", vec![b' '; 16 * 1024 * 1024 + 1]),
            413,
        ),
    ];
    for (method, path, body, status) in cases {
        let reply = server.call(method.clone(), path, admin, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str();
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{method} {path}: not the API's error format: {}",
            reply.body
        );
        assert!(reply.body["error"]["code"].is_string(), "{}", reply.body);
    }
});
