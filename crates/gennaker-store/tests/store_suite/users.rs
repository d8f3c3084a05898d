//! Users, roles and API tokens, and the first admin.

use super::*;

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
    assert_eq!(user.roles, ["dev"]);
    // The user's roles come with the token, sorted, whether there are several or none.
    for roles in [vec!["ops", "dev"], vec![], vec!["dev"]] {
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        store.set_user_roles("alice", &roles).await.unwrap();
        let (found, user) = store.authenticate("h1", 0).await.unwrap().unwrap();
        let mut sorted = roles.clone();
        sorted.sort();
        assert_eq!((found.id.as_str(), user.roles), (token.id.as_str(), sorted));
    }
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

store_test!(user_passwords_are_set_read_and_removed, |store| {
    store.create_user("Pat", false, &[]).await.unwrap();
    assert!(
        store.user_password("pat").await.unwrap().is_none(),
        "no password yet"
    );
    store
        .set_user_password("PAT", Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"))
        .await
        .unwrap();
    let (user, hash) = store.user_password("pat").await.unwrap().unwrap();
    assert_eq!(user.name, "Pat");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    store.set_user_password("pat", None).await.unwrap();
    assert!(store.user_password("pat").await.unwrap().is_none());
    assert!(matches!(
        store.set_user_password("nobody", Some("x")).await,
        Err(StoreError::NotFound { kind: "user", .. })
    ));
    assert!(store.user_password("nobody").await.unwrap().is_none());
});
