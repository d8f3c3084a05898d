//! One behaviour suite, run against SQLite and PostgreSQL alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{
    AuditQuery, NewAuditEntry, NewToken, PipelineSave, SaveOutcome, SqlStore, Store, StoreError,
    redact_database_url,
};
use serde_json::json;

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a fresh store.
macro_rules! store_test {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: SqlStore) $body

            #[tokio::test]
            async fn sqlite() {
                let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
                run(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
                run(store.clone()).await;
                store.close().await;
            }
        }
    };
}

fn save(name: &str, config: serde_json::Value) -> PipelineSave {
    PipelineSave {
        id: config.get("id").and_then(|v| v.as_str()).map(str::to_owned),
        name: name.to_owned(),
        config,
    }
}

store_test!(applications_crud, |store| {
    let created = store
        .create_application("shop", &json!({"name": "shop", "email": "a@b.c"}), "alice")
        .await
        .unwrap();
    assert_eq!(created.name, "shop");
    let dup = store
        .create_application("SHOP", &json!({"name": "SHOP"}), "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Conflict(ref m) if m.contains("already exists")),
        "{dup}"
    );

    let got = store.get_application("Shop").await.unwrap().unwrap();
    assert_eq!(got.config["email"], "a@b.c");
    let updated = store
        .update_application(
            "shop",
            &json!({"name": "shop", "email": "x@y.z"}),
            "bob",
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.updated_by, "bob");
    assert_eq!(updated.created_at, created.created_at);
    assert!(matches!(
        store
            .update_application("nope", &json!({}), "bob", None)
            .await,
        Err(StoreError::NotFound { .. })
    ));

    store
        .create_application("api", &json!({"name": "api"}), "alice")
        .await
        .unwrap();
    let names: Vec<_> = store
        .list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["api", "shop"]);
    store.delete_application("api").await.unwrap();
    assert!(store.get_application("api").await.unwrap().is_none());
    assert!(matches!(
        store.delete_application("api").await,
        Err(StoreError::NotFound { .. })
    ));
});

store_test!(application_updates_check_the_version_atomically, |store| {
    let created = store
        .create_application("shop", &json!({"name": "shop"}), "alice")
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let second = store
        .update_application("shop", &json!({"name": "shop", "n": 2}), "bob", Some(1))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let unconditional = store
        .update_application("shop", &json!({"name": "shop", "n": 3}), "bob", None)
        .await
        .unwrap();
    assert_eq!(unconditional.version, 3);

    // A stale version is refused and changes nothing.
    let err = store
        .update_application("shop", &json!({"name": "shop", "n": 4}), "carol", Some(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("at version 3") && m.contains("you sent version 2")),
        "{err}"
    );
    let stored = store.get_application("shop").await.unwrap().unwrap();
    assert_eq!((stored.version, &stored.config["n"]), (3, &json!(3)));
    assert!(matches!(
        store
            .update_application("nope", &json!({}), "bob", Some(1))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Of several editors who read version 3, exactly one wins.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update_application("shop", &json!({"name": "shop", "editor": n}), "e", Some(3))
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(record) => {
                assert_eq!(record.version, 4);
                won += 1;
            }
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(won, 1);
});

store_test!(pipelines_keep_every_revision, |store| {
    store
        .create_application("shop", &json!({"name": "shop"}), "alice")
        .await
        .unwrap();
    let v1 =
        json!({"application": "shop", "name": "Deploy", "stages": [], "keepMe": {"b": 1, "a": 2}});
    let (first, outcome) = store
        .save_pipeline("shop", &save("Deploy", v1.clone()), "alice")
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Created);
    assert_eq!(first.revision, 1);
    assert_eq!(first.config["id"], json!(first.id));
    // Key order survives storage.
    let stored = store.get_pipeline("shop", "deploy").await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_string(&stored.config["keepMe"]).unwrap(),
        r#"{"b":1,"a":2}"#
    );

    let (same, outcome) = store
        .save_pipeline("shop", &save("Deploy", v1.clone()), "alice")
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Unchanged);
    assert_eq!(same.revision, 1);

    let mut v2 = v1.clone();
    v2["stages"] = json!([{"refId": "1", "type": "wait", "waitTime": 5}]);
    let (second, outcome) = store
        .save_pipeline("shop", &save("deploy", v2), "bob")
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Updated);
    assert_eq!(
        (second.id.as_str(), second.revision),
        (first.id.as_str(), 2)
    );

    let history = store.pipeline_history("shop", "Deploy").await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.revision).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(history[1].author, "alice");
    let old = store
        .pipeline_revision("shop", "Deploy", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.config["stages"], json!([]));

    let restored = store
        .restore_pipeline_revision("shop", "Deploy", 1, "carol")
        .await
        .unwrap();
    assert_eq!(restored.revision, 3);
    assert_eq!(restored.config["stages"], json!([]));
    let history = store.pipeline_history("shop", "Deploy").await.unwrap();
    assert_eq!(history[0].restored_from, Some(1));
    assert!(matches!(
        store
            .restore_pipeline_revision("shop", "Deploy", 9, "c")
            .await,
        Err(StoreError::NotFound { .. })
    ));
});

store_test!(pipelines_rename_by_id_and_refuse_conflicts, |store| {
    store
        .create_application("shop", &json!({"name": "shop"}), "a")
        .await
        .unwrap();
    store
        .create_application("other", &json!({"name": "other"}), "a")
        .await
        .unwrap();
    let (a, _) = store
        .save_pipeline("shop", &save("A", json!({"name": "A"})), "a")
        .await
        .unwrap();
    store
        .save_pipeline("shop", &save("B", json!({"name": "B"})), "a")
        .await
        .unwrap();

    // Same id, new name: a rename that keeps the history.
    let renamed = json!({"id": a.id, "name": "A2"});
    let (r, outcome) = store
        .save_pipeline("shop", &save("A2", renamed), "a")
        .await
        .unwrap();
    assert_eq!(
        (outcome, r.revision, r.id.as_str()),
        (SaveOutcome::Updated, 2, a.id.as_str())
    );
    assert!(store.get_pipeline("shop", "A").await.unwrap().is_none());

    // Renaming onto an existing name is refused, and nothing changes.
    let err = store
        .save_pipeline("shop", &save("B", json!({"id": a.id, "name": "B"})), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("already has a pipeline")),
        "{err}"
    );
    assert_eq!(
        store
            .get_pipeline("shop", "A2")
            .await
            .unwrap()
            .unwrap()
            .revision,
        2
    );

    // An id from another application is refused, without naming that application.
    let err = store
        .save_pipeline("other", &save("X", json!({"id": a.id, "name": "X"})), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("cannot be used in application 'other'") && !m.contains("shop")),
        "{err}"
    );

    // A different id with an existing name is refused.
    let err = store
        .save_pipeline("shop", &save("B", json!({"id": "zzz", "name": "B"})), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    // Unknown application.
    assert!(matches!(
        store
            .save_pipeline("ghost", &save("A", json!({})), "a")
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // An application with pipelines cannot be deleted; deleting the pipelines frees it.
    let err = store.delete_application("shop").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("2 pipeline(s)")),
        "{err}"
    );
    let deleted = store.delete_pipeline("shop", "a2").await.unwrap();
    assert_eq!(deleted.id, a.id);
    store.delete_pipeline("shop", "B").await.unwrap();
    assert!(store.pipeline_history("shop", "A2").await.is_err());
    store.delete_application("shop").await.unwrap();
});

store_test!(concurrent_saves_never_lose_a_revision, |store| {
    store
        .create_application("shop", &json!({"name": "shop"}), "a")
        .await
        .unwrap();
    store
        .save_pipeline("shop", &save("P", json!({"name": "P", "n": 0})), "a")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 1..=16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .save_pipeline("shop", &save("P", json!({"name": "P", "n": n})), "a")
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let history = store.pipeline_history("shop", "P").await.unwrap();
    assert_eq!(history.len(), 17);
    assert_eq!(
        store
            .get_pipeline("shop", "P")
            .await
            .unwrap()
            .unwrap()
            .revision,
        17
    );
});

store_test!(concurrent_role_changes_replace_never_merge, |store| {
    for role in ["a", "b", "c", "d"] {
        store.create_role(role, "").await.unwrap();
    }
    let first = ["a".to_owned(), "b".to_owned()];
    let second = ["c".to_owned(), "d".to_owned()];
    for round in 0..20 {
        let user = format!("u{round}");
        store.create_user(&user, false, &[]).await.unwrap();
        let (one, two) = tokio::join!(
            store.set_user_roles(&user, &first),
            store.set_user_roles(&user, &second)
        );
        one.unwrap();
        two.unwrap();
        let roles = store.get_user(&user).await.unwrap().unwrap().roles;
        assert!(
            roles == first || roles == second,
            "round {round}: two replacements merged into {roles:?}"
        );
    }
    // A user deleted meanwhile is not found, never a database error.
    store.create_user("gone", false, &[]).await.unwrap();
    let (set, deleted) = tokio::join!(
        store.set_user_roles("gone", &first),
        store.delete_user("gone")
    );
    deleted.unwrap();
    assert!(
        matches!(set, Ok(_) | Err(StoreError::NotFound { .. })),
        "{set:?}"
    );
});

store_test!(deleting_an_application_while_a_pipeline_is_saved, |store| {
    for round in 0..20 {
        let app = format!("app{round}");
        store
            .create_application(&app, &json!({ "name": app }), "a")
            .await
            .unwrap();
        let pipeline = save("P", json!({"name": "P"}));
        let (saved, deleted) = tokio::join!(
            store.save_pipeline(&app, &pipeline, "a"),
            store.delete_application(&app)
        );
        match (&saved, &deleted) {
            // The save came first: the application keeps its pipeline.
            (Ok(_), Err(StoreError::Conflict(_))) => {
                assert!(store.get_pipeline(&app, "P").await.unwrap().is_some());
            }
            // The delete came first: the save finds no application.
            (Err(StoreError::NotFound { .. }), Ok(_)) => {
                assert!(store.get_application(&app).await.unwrap().is_none());
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
});

store_test!(authenticating_while_the_user_is_deleted, |store| {
    for round in 0..30 {
        let user = format!("u{round}");
        let hash = format!("hash{round}");
        store.create_user(&user, false, &[]).await.unwrap();
        store
            .create_token(&NewToken {
                user: user.clone(),
                name: "t".into(),
                token_hash: hash.clone(),
                expires_at: None,
            })
            .await
            .unwrap();
        let checker = {
            let store = store.clone();
            tokio::spawn(async move {
                // Until the deletion shows: found, or not found, but never an error.
                loop {
                    match store.authenticate(&hash, 0).await {
                        Ok(Some(_)) => tokio::task::yield_now().await,
                        Ok(None) => return Ok(()),
                        Err(err) => return Err(err),
                    }
                }
            })
        };
        tokio::task::yield_now().await;
        store.delete_user(&user).await.unwrap();
        checker.await.unwrap().unwrap();
    }
});

store_test!(users_roles_and_tokens, |store| {
    assert_eq!(store.count_users().await.unwrap(), 0);
    store.create_role("dev", "developers").await.unwrap();
    store.create_role("ops", "operators").await.unwrap();
    assert!(matches!(
        store.create_role("dev", "again").await,
        Err(StoreError::Conflict(_))
    ));
    let err = store
        .create_user("eve", false, &["nope".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "role", .. }),
        "{err}"
    );
    assert!(
        store.get_user("eve").await.unwrap().is_none(),
        "a failed create leaves nothing behind"
    );

    let alice = store
        .create_user("Alice", false, &["ops".to_owned(), "dev".to_owned()])
        .await
        .unwrap();
    assert_eq!(alice.roles, ["dev", "ops"]);
    assert!(matches!(
        store.create_user("alice", true, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let alice = store
        .set_user_roles("alice", &["dev".to_owned()])
        .await
        .unwrap();
    assert_eq!(alice.roles, ["dev"]);

    let token = store
        .create_token(&NewToken {
            user: "alice".into(),
            name: "laptop".into(),
            token_hash: "h1".into(),
            expires_at: None,
        })
        .await
        .unwrap();
    assert_eq!(token.user, "Alice");
    let (found, user) = store.authenticate("h1", 0).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), user.name.as_str()),
        (token.id.as_str(), "Alice")
    );
    assert!(store.authenticate("h2", 0).await.unwrap().is_none());

    let expiring = store
        .create_token(&NewToken {
            user: "alice".into(),
            name: "ci".into(),
            token_hash: "h3".into(),
            expires_at: Some(1000),
        })
        .await
        .unwrap();
    assert!(store.authenticate("h3", 999).await.unwrap().is_some());
    assert!(store.authenticate("h3", 1000).await.unwrap().is_none());
    assert_eq!(store.list_tokens(Some("ALICE")).await.unwrap().len(), 2);

    let revoked = store.revoke_token(&token.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(store.authenticate("h1", 0).await.unwrap().is_none());
    assert!(matches!(
        store.revoke_token("missing").await,
        Err(StoreError::NotFound { .. })
    ));

    store.delete_role("dev").await.unwrap();
    assert!(
        store
            .get_user("alice")
            .await
            .unwrap()
            .unwrap()
            .roles
            .is_empty()
    );
    store.delete_user("alice").await.unwrap();
    assert!(
        store.get_token(&expiring.id).await.unwrap().is_none(),
        "tokens go with their user"
    );
    assert_eq!(store.list_users().await.unwrap().len(), 0);
});

store_test!(role_names_ignore_case_and_are_stored_lower_case, |store| {
    let role = store.create_role("Dev", "developers").await.unwrap();
    assert_eq!(role.name, "dev");
    let err = store.create_role("DEV", "again").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    store.create_role("ops", "operators").await.unwrap();

    // The same role twice, in any spelling, is granted once (it used to be a 500).
    let user = store
        .create_user(
            "u",
            false,
            &["DEV".to_owned(), "dev".to_owned(), "Ops".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(user.roles, ["dev", "ops"]);
    assert_eq!(
        store.get_user("u").await.unwrap().unwrap().roles,
        ["dev", "ops"]
    );
    let user = store
        .set_user_roles("u", &["OPS".to_owned(), "ops".to_owned()])
        .await
        .unwrap();
    assert_eq!(user.roles, ["ops"]);

    store.delete_role("OPS").await.unwrap();
    assert!(store.get_user("u").await.unwrap().unwrap().roles.is_empty());
    let names: Vec<_> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["dev"]);
});

store_test!(the_first_admin_comes_with_its_token_once, |store| {
    let token = |hash: &str| NewToken {
        user: "admin".into(),
        name: "bootstrap".into(),
        token_hash: hash.into(),
        expires_at: None,
    };
    // Several servers starting at once on one database: exactly one bootstraps.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        let token = token(&format!("h{n}"));
        tasks.push(tokio::spawn(async move {
            store.create_first_admin(&token).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.count_users().await.unwrap(), 1);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 1);
    let mut winner = None;
    for n in 0..8 {
        if let Some((token, user)) = store.authenticate(&format!("h{n}"), 0).await.unwrap() {
            assert!(user.admin);
            assert!(winner.replace((n, token)).is_none(), "two tokens work");
        }
    }
    let (n, winner) = winner.expect("the admin's token works");
    assert!(!store.create_first_admin(&token("later")).await.unwrap());
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 1);

    // A secret stored already, even revoked, is a conflict rather than a database error.
    store.revoke_token(&winner.id).await.unwrap();
    let err = store
        .create_token(&NewToken {
            name: "again".into(),
            ..token(&format!("h{n}"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if !m.contains(&format!("h{n}"))),
        "{err}"
    );
});

store_test!(audit_log_pages_newest_first, |store| {
    for n in 0..5 {
        store
            .append_audit(&NewAuditEntry {
                actor: if n % 2 == 0 {
                    "alice".into()
                } else {
                    "bob".into()
                },
                action: "POST /api/v1/applications".into(),
                target: format!("application:app{n}"),
                outcome: "success".into(),
                status: 201,
                detail: json!({"n": n}),
            })
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    let page = store
        .list_audit(&AuditQuery {
            limit: 2,
            before_id: Some(all[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let bob = store
        .list_audit(&AuditQuery {
            limit: 10,
            actor: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 2);
    let one = store
        .list_audit(&AuditQuery {
            limit: 10,
            target_prefix: Some("application:app3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
});

#[tokio::test]
async fn rejects_unknown_database_urls() {
    let err = SqlStore::connect("mysql://localhost/x").await.unwrap_err();
    assert!(
        err.to_string().contains("use sqlite://PATH or postgres://"),
        "{err}"
    );
    // The URL is repeated, its passwords are not.
    let err = SqlStore::connect("mysql://me:hunter2@localhost/x?password=hunter3")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mysql://me:***@localhost/x?password=***"),
        "{err}"
    );
    assert!(!err.contains("hunter"), "{err}");
}

#[test]
fn database_urls_are_redacted() {
    for (url, redacted) in [
        ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
        ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        (
            "postgres://u@h/db?sslmode=require&password=secret",
            "postgres://u@h/db?sslmode=require&password=***",
        ),
        (
            "postgresql://h/db?PASSWORD=a&sslpassword=b&application_name=x",
            "postgresql://h/db?PASSWORD=***&sslpassword=***&application_name=x",
        ),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ("sqlite::memory:", "sqlite::memory:"),
    ] {
        assert_eq!(redact_database_url(url), redacted, "{url}");
    }
}

#[tokio::test]
async fn reopening_a_sqlite_file_keeps_data_and_migrations_are_idempotent() {
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let store = SqlStore::connect(&db.url).await.unwrap();
    store
        .create_application("keep", &json!({"name": "keep"}), "a")
        .await
        .unwrap();
    store.close().await;
    let again = SqlStore::connect(&db.url).await.unwrap();
    assert!(again.get_application("keep").await.unwrap().is_some());
}

/// Roles and grants as a database from before role names were lower-cased might hold them.
const MIXED_CASE_ROLES: &[&str] = &[
    "INSERT INTO users (name_key, name, admin, created_at) VALUES ('u', 'u', FALSE, 0)",
    "INSERT INTO users (name_key, name, admin, created_at) VALUES ('v', 'v', FALSE, 0)",
    "INSERT INTO roles (name, description, created_at) VALUES ('Dev', 'mixed', 1), ('dev', 'lower', 2), ('OPS', 'upper', 3), ('Qa', 'a', 4), ('QA', 'b', 5)",
    "INSERT INTO user_roles (user_key, role) VALUES ('u', 'Dev'), ('u', 'dev'), ('u', 'OPS'), ('v', 'Qa'), ('v', 'QA')",
];

/// After the lower-casing migration, every role exists once, lower-case, and every user
/// keeps what they were granted.
async fn assert_roles_merged(store: &SqlStore) {
    let roles: Vec<_> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.description))
        .collect();
    assert_eq!(
        roles,
        [
            ("dev".to_owned(), "lower".to_owned()),
            ("ops".to_owned(), "upper".to_owned()),
            ("qa".to_owned(), "a".to_owned()),
        ]
    );
    assert_eq!(
        store.get_user("u").await.unwrap().unwrap().roles,
        ["dev", "ops"]
    );
    assert_eq!(store.get_user("v").await.unwrap().unwrap().roles, ["qa"]);
}

#[tokio::test]
async fn migration_merges_mixed_case_roles_sqlite() {
    use std::str::FromStr;
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate!("./migrations/sqlite")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in MIXED_CASE_ROLES {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_roles_merged(&store).await;
}

#[tokio::test]
async fn migration_merges_mixed_case_roles_postgres() {
    let db = TestDatabase::create(TestBackend::Postgres).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::migrate!("./migrations/postgres")
        .run_to(2, &pool)
        .await
        .unwrap();
    for sql in MIXED_CASE_ROLES {
        sqlx::query(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_roles_merged(&store).await;
    store.close().await;
}

/// Names whose order differs between byte order and natural-language collations, which
/// ignore punctuation at first: byte order puts `a-c` first, `en-US` puts `a_b` first.
const COLLATION_PROBES: [&str; 5] = ["ab", "b", "a_b", "a.d", "a-c"];
const BYTE_ORDER: [&str; 5] = ["a-c", "a.d", "a_b", "ab", "b"];

/// Every listing comes back in byte order of the (lower-cased) names.
async fn assert_listings_in_byte_order(store: &SqlStore) {
    store
        .create_application("shop", &json!({"name": "shop"}), "a")
        .await
        .unwrap();
    for name in COLLATION_PROBES {
        store
            .create_application(name, &json!({ "name": name }), "a")
            .await
            .unwrap();
        store
            .save_pipeline("shop", &save(name, json!({ "name": name })), "a")
            .await
            .unwrap();
        store.create_user(name, false, &[]).await.unwrap();
        store.create_role(name, "").await.unwrap();
    }
    store
        .set_user_roles("b", &COLLATION_PROBES.map(str::to_owned))
        .await
        .unwrap();
    let applications: Vec<_> = store
        .list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .filter(|name| name != "shop")
        .collect();
    assert_eq!(applications, BYTE_ORDER);
    let pipelines: Vec<_> = store
        .list_pipelines("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(pipelines, BYTE_ORDER);
    let users: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(users, BYTE_ORDER);
    let roles: Vec<_> = store
        .list_roles()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(roles, BYTE_ORDER);
    assert_eq!(
        store.get_user("b").await.unwrap().unwrap().roles,
        BYTE_ORDER
    );
}

#[tokio::test]
async fn listings_are_in_byte_order_on_sqlite() {
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    assert_listings_in_byte_order(&store).await;
}

#[tokio::test]
async fn listings_are_in_byte_order_on_postgres_with_a_language_collation() {
    // The test server's default collation may be C already; en-US (ICU) is not.
    let db = TestDatabase::create_postgres_with(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    )
    .await
    .unwrap();
    let store = SqlStore::connect(&db.url).await.unwrap();
    assert_listings_in_byte_order(&store).await;
    store.close().await;
}
