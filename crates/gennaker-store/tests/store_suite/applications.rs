//! Applications: creating, updating under a version check, deleting.

use super::*;

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
