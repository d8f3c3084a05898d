//! Users, roles and tokens.

use gennaker_server::hash_token;
use gennaker_store::{NewToken, Store, now_millis};

use crate::harness::*;

api_test!(users_roles_and_tokens, |backend| {
    let server = Server::start(backend).await;
    let admin = server.admin.clone();

    let role = server
        .post(
            "/api/v1/roles",
            &admin,
            json!({ "name": "ops", "description": "operators" }),
        )
        .await
        .expect(201);
    assert_eq!(role["name"], "ops");
    server
        .post("/api/v1/roles", &admin, json!({ "name": "ops" }))
        .await
        .expect(409);
    server
        .post("/api/v1/roles", &admin, json!({ "name": "bad role" }))
        .await
        .expect(400);
    let user = server
        .post(
            "/api/v1/users",
            &admin,
            json!({ "name": "alice", "roles": ["ops"] }),
        )
        .await
        .expect(201);
    assert_eq!(user["roles"], json!(["ops"]));
    assert_eq!(user["admin"], false);
    server
        .post("/api/v1/users", &admin, json!({ "name": "alice" }))
        .await
        .expect(409);
    server
        .post("/api/v1/users", &admin, json!({ "name": "a b" }))
        .await
        .expect(400);

    let created = server
        .post(
            "/api/v1/tokens",
            &admin,
            json!({ "name": "laptop", "user": "alice" }),
        )
        .await
        .expect(201);
    let alice = created["token"].as_str().unwrap().to_owned();
    let alice_id = created["info"]["id"].as_str().unwrap().to_owned();
    assert!(alice.starts_with("gnk_"));
    assert_eq!(created["info"]["user"], "alice");
    assert_eq!(created["info"]["expiresAt"], Value::Null);

    let me = server.get("/api/v1/me", &alice).await.expect(200);
    assert_eq!(me["name"], "alice");
    assert_eq!(me["admin"], false);
    assert_eq!(me["roles"], json!(["ops"]));
    // A user may read themself, not others.
    server.get("/api/v1/users/alice", &alice).await.expect(200);
    server.get("/api/v1/users/admin", &alice).await.expect(403);
    let me = server.get("/api/v1/me", &admin).await.expect(200);
    assert_eq!(me["admin"], true);

    // Roles can be replaced; unknown roles are refused.
    server.ensure_role("dev").await;
    let changed = server
        .put(
            "/api/v1/users/alice/roles",
            &admin,
            json!({ "roles": ["dev", "ops"] }),
        )
        .await
        .expect(200);
    assert_eq!(changed["roles"], json!(["dev", "ops"]));
    let refused = server
        .put(
            "/api/v1/users/alice/roles",
            &admin,
            json!({ "roles": ["ghost"] }),
        )
        .await;
    assert!(matches!(refused.status, 400 | 404), "{refused:?}");
    assert_eq!(
        server.get("/api/v1/me", &alice).await.expect(200)["roles"],
        json!(["dev", "ops"])
    );

    // Self-service tokens: create, list (own only), revoke.
    let bob = server.user("bob", &[]).await;
    let (_, bob_token_id) = server.token_for("bob").await;
    let own = server
        .post(
            "/api/v1/tokens",
            &alice,
            json!({ "name": "ci", "expiresInDays": 1 }),
        )
        .await
        .expect(201);
    let second = own["token"].as_str().unwrap().to_owned();
    let second_id = own["info"]["id"].as_str().unwrap().to_owned();
    assert_eq!(own["info"]["user"], "alice");
    let expires = own["info"]["expiresAt"].as_i64().unwrap();
    let day = 86_400_000;
    assert!((expires - now_millis() - day).abs() < 60_000, "{own}");
    server.get("/api/v1/me", &second).await.expect(200);

    let listed = server.get("/api/v1/tokens", &alice).await.expect(200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|t| t["user"] == "alice"));
    assert!(
        listed
            .iter()
            .all(|t| t.get("token").is_none() && t.get("tokenHash").is_none()),
        "secrets must never be listed: {listed:?}"
    );
    server
        .post(
            "/api/v1/tokens",
            &alice,
            json!({ "name": "x", "user": "bob" }),
        )
        .await
        .expect(403);
    server
        .post("/api/v1/tokens", &alice, json!({ "name": " " }))
        .await
        .expect(400);
    // Someone else's token and a missing one get the same answer, so ids cannot be probed.
    let others = server
        .delete(&format!("/api/v1/tokens/{bob_token_id}"), &alice)
        .await
        .expect(404);
    server.get("/api/v1/me", &bob).await.expect(200);
    let missing = server
        .delete("/api/v1/tokens/no-such-token", &alice)
        .await
        .expect(404);
    assert_eq!(
        others["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&bob_token_id, "ID"),
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no-such-token", "ID")
    );

    let revoked = server
        .delete(&format!("/api/v1/tokens/{second_id}"), &alice)
        .await
        .expect(200);
    assert!(revoked["revokedAt"].is_i64(), "{revoked}");
    server.get("/api/v1/me", &second).await.expect(401);
    server.get("/api/v1/me", &alice).await.expect(200);

    // An admin revokes anyone's token.
    server
        .delete(&format!("/api/v1/tokens/{alice_id}"), &admin)
        .await
        .expect(200);
    let body = server.get("/api/v1/me", &alice).await.expect(401);
    assert_eq!(body["error"]["code"], "unauthorized");

    // Expired tokens do not work; the same kind of token in the future does.
    for (offset, status) in [(-1_000, 401), (3_600_000, 200)] {
        let secret = gennaker_server::generate_token();
        server
            .store
            .create_token(&NewToken {
                user: "bob".to_owned(),
                name: format!("t{}", uniq()),
                token_hash: hash_token(&secret),
                expires_at: Some(now_millis() + offset),
            })
            .await
            .unwrap();
        server.get("/api/v1/me", &secret).await.expect(status);
    }

    // Tokens are stored hashed: the secret is nowhere in the store's listing.
    let all = server.get("/api/v1/tokens", &admin).await.expect(200);
    assert!(!all.to_string().contains(&bob), "{all}");

    // Role names ignore case and are stored lower-case, everywhere they appear.
    let role = server
        .post("/api/v1/roles", &admin, json!({ "name": "QA" }))
        .await
        .expect(201);
    assert_eq!(role["name"], "qa");
    server
        .post("/api/v1/roles", &admin, json!({ "name": "qa" }))
        .await
        .expect(409);
    let carol = server
        .post(
            "/api/v1/users",
            &admin,
            json!({ "name": "carol", "roles": ["Qa", "qa", "OPS"] }),
        )
        .await
        .expect(201);
    assert_eq!(carol["roles"], json!(["ops", "qa"]));
    let carol = server
        .put(
            "/api/v1/users/carol/roles",
            &admin,
            json!({ "roles": ["QA", "Qa"] }),
        )
        .await
        .expect(200);
    assert_eq!(carol["roles"], json!(["qa"]));
    let carol_token = server.token_for("carol").await.0;
    server
        .app(json!({ "name": "qaapp", "permissions": { "READ": ["Qa"], "WRITE": ["QA"] } }))
        .await;
    server
        .get("/api/v1/applications/qaapp", &carol_token)
        .await
        .expect(200);
    server.delete("/api/v1/roles/Qa", &admin).await.expect(204);
    assert_eq!(
        server.get("/api/v1/users/carol", &admin).await.expect(200)["roles"],
        json!([])
    );

    // Deleting a user ends their tokens; an admin cannot delete themself.
    server.delete("/api/v1/users/bob", &admin).await.expect(204);
    server.get("/api/v1/me", &bob).await.expect(401);
    server.get("/api/v1/users/bob", &admin).await.expect(404);
    server
        .delete("/api/v1/users/admin", &admin)
        .await
        .expect(409);
    // Deleting a role takes it from its users.
    server.delete("/api/v1/roles/dev", &admin).await.expect(204);
    let alice_now = server.get("/api/v1/users/alice", &admin).await.expect(200);
    assert_eq!(alice_now["roles"], json!(["ops"]));
});
