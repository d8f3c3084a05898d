//! Changes racing each other: saves, role replacements, deletions and authentication.

use super::*;

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
