//! Canary configs on SQLite and PostgreSQL alike: ids, unique names, renames,
//! revisions and their cap, listings by application, optimistic writes and deletes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::{
    CanaryConfigSave, CanaryConfigStore, ExpectedVersion, MAX_CANARY_CONFIG_BYTES,
    MAX_CANARY_CONFIG_REVISIONS, SaveOutcome, StoreError,
};
use serde_json::{Value, json};

use gennaker_store::store_test as config_test;

fn save(id: Option<&str>, name: &str, apps: &[&str], config: Value) -> CanaryConfigSave {
    CanaryConfigSave {
        id: id.map(str::to_owned),
        name: name.to_owned(),
        applications: apps.iter().map(|a| (*a).to_owned()).collect(),
        config,
        expected: ExpectedVersion::Any,
    }
}

fn doc(name: &str, metric: &str) -> Value {
    json!({"name": name, "applications": ["shop"], "metrics": [{"name": metric}], "zeta": 1, "alpha": 2})
}

config_test!(create_read_and_stamps, |store| {
    let (created, outcome) = store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "p99")),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Created);
    assert_eq!(created.revision, 1);
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert_eq!(created.config["id"], json!(created.id));
    assert_eq!(created.config["lastModifiedBy"], "alice");
    assert_eq!(
        created.config["updatedTimestamp"],
        json!(created.updated_at)
    );
    assert!(
        created.config["createdTimestampIso"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let by_id = store.get_canary_config(&created.id).await.unwrap().unwrap();
    assert_eq!(by_id, created);
    // Key order survives storage.
    let text = serde_json::to_string(&by_id.config).unwrap();
    assert!(
        text.find("\"zeta\"").unwrap() < text.find("\"alpha\"").unwrap(),
        "{text}"
    );
    let by_name = store
        .get_canary_config_by_name("LATENCY")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, created.id);
    assert!(store.get_canary_config("nope").await.unwrap().is_none());
    assert!(
        store
            .get_canary_config_by_name("nope")
            .await
            .unwrap()
            .is_none()
    );

    // An id the document brings is kept (imports from Kayenta keep theirs).
    let (imported, _) = store
        .save_canary_config(
            &save(
                Some("kayenta-id-1"),
                "Errors",
                &["shop"],
                doc("Errors", "5xx"),
            ),
            "bob",
        )
        .await
        .unwrap();
    assert_eq!(imported.id, "kayenta-id-1");
});

config_test!(revisions_renames_and_unchanged_saves, |store| {
    let (first, _) = store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "p99")),
            "alice",
        )
        .await
        .unwrap();
    // The same document again, with other stamps, is no change.
    let mut again = doc("Latency", "p99");
    again["updatedTimestamp"] = json!(1);
    again["lastModifiedBy"] = json!("mallory");
    let (same, outcome) = store
        .save_canary_config(&save(Some(&first.id), "Latency", &["shop"], again), "bob")
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Unchanged);
    assert_eq!(same.revision, 1);
    assert_eq!(same.updated_by, "alice");

    // A rename by id keeps the id and frees the old name.
    let (renamed, outcome) = store
        .save_canary_config(
            &save(
                Some(&first.id),
                "Latency v2",
                &["shop", "cart"],
                doc("Latency v2", "p95"),
            ),
            "bob",
        )
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Updated);
    assert_eq!(
        (renamed.id.as_str(), renamed.revision),
        (first.id.as_str(), 2)
    );
    assert_eq!(renamed.created_at, first.created_at);
    assert_eq!(renamed.config["createdTimestamp"], json!(first.created_at));
    assert_eq!(renamed.applications, vec!["shop", "cart"]);
    assert!(
        store
            .get_canary_config_by_name("latency")
            .await
            .unwrap()
            .is_none()
    );

    let history = store.canary_config_history(&first.id).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.revision).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(history[1].name, "Latency");
    assert_eq!(history[1].applications, vec!["shop"]);
    assert_eq!(history[1].config["metrics"][0]["name"], "p99");
    assert_eq!(history[0].author, "bob");
    let one = store
        .canary_config_revision(&first.id, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, history[1]);
    assert!(
        store
            .canary_config_revision(&first.id, 9)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.canary_config_history("nope").await,
        Err(StoreError::NotFound { .. })
    ));
});

config_test!(names_are_unique, |store| {
    let (a, _) = store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "p99")),
            "alice",
        )
        .await
        .unwrap();
    let (b, _) = store
        .save_canary_config(
            &save(None, "Errors", &["shop"], doc("Errors", "5xx")),
            "alice",
        )
        .await
        .unwrap();
    // Creating another under a taken name (any case) names the holder.
    let err = store
        .save_canary_config(
            &save(None, "latency", &["cart"], doc("latency", "x")),
            "bob",
        )
        .await
        .unwrap_err();
    let StoreError::Conflict(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("'latency' already exists") && message.contains(&a.id),
        "{message}"
    );
    // So does renaming into it.
    let err = store
        .save_canary_config(
            &save(Some(&b.id), "LATENCY", &["shop"], doc("LATENCY", "5xx")),
            "bob",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // And a new id under a taken name.
    let err = store
        .save_canary_config(
            &save(Some("other-id"), "Errors", &["shop"], doc("Errors", "5xx")),
            "bob",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.list_canary_configs(None).await.unwrap().len(), 2);
});

config_test!(listing_by_application, |store| {
    for (name, apps) in [
        ("b-shop", &["shop"][..]),
        ("a-both", &["Cart", "shop"]),
        ("c-cart", &["cart"]),
    ] {
        store
            .save_canary_config(&save(None, name, apps, doc(name, "m")), "alice")
            .await
            .unwrap();
    }
    let names = |records: Vec<gennaker_store::CanaryConfigRecord>| {
        records.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_canary_configs(None).await.unwrap()),
        ["a-both", "b-shop", "c-cart"]
    );
    assert_eq!(
        names(store.list_canary_configs(Some("SHOP")).await.unwrap()),
        ["a-both", "b-shop"]
    );
    assert_eq!(
        names(store.list_canary_configs(Some("cart")).await.unwrap()),
        ["a-both", "c-cart"]
    );
    assert!(
        store
            .list_canary_configs(Some("none"))
            .await
            .unwrap()
            .is_empty()
    );
    // Moving a config to other applications moves it in the listings.
    let moved = store
        .get_canary_config_by_name("b-shop")
        .await
        .unwrap()
        .unwrap();
    store
        .save_canary_config(
            &save(Some(&moved.id), "b-shop", &["cart"], doc("b-shop", "m")),
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(
        names(store.list_canary_configs(Some("shop")).await.unwrap()),
        ["a-both"]
    );
    assert_eq!(
        names(store.list_canary_configs(Some("cart")).await.unwrap()),
        ["a-both", "b-shop", "c-cart"]
    );
});

config_test!(optimistic_writes_and_deletes, |store| {
    let (first, _) = store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "p99")),
            "alice",
        )
        .await
        .unwrap();
    // Create-only on an existing id, and a stale revision, are refused.
    let mut stale = save(Some(&first.id), "Latency", &["shop"], doc("Latency", "p95"));
    stale.expected = ExpectedVersion::Absent;
    assert!(matches!(
        store.save_canary_config(&stale, "bob").await,
        Err(StoreError::Conflict(_))
    ));
    stale.expected = ExpectedVersion::Exactly(7);
    let err = store.save_canary_config(&stale, "bob").await.unwrap_err();
    assert!(err.to_string().contains("changed meanwhile"), "{err}");
    stale.expected = ExpectedVersion::Exactly(1);
    let (second, outcome) = store.save_canary_config(&stale, "bob").await.unwrap();
    assert_eq!((outcome, second.revision), (SaveOutcome::Updated, 2));
    // Updating what does not exist, expecting a revision, is refused too.
    let mut missing = save(Some("ghost"), "Ghost", &["shop"], doc("Ghost", "m"));
    missing.expected = ExpectedVersion::Exactly(1);
    assert!(matches!(
        store.save_canary_config(&missing, "bob").await,
        Err(StoreError::Conflict(_))
    ));

    assert!(matches!(
        store
            .delete_canary_config(&first.id, ExpectedVersion::Exactly(1))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let deleted = store
        .delete_canary_config(&first.id, ExpectedVersion::Exactly(2))
        .await
        .unwrap();
    assert_eq!(deleted.config["metrics"][0]["name"], "p95");
    assert!(store.get_canary_config(&first.id).await.unwrap().is_none());
    assert!(
        store
            .canary_config_revision(&first.id, 1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .list_canary_configs(Some("shop"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .delete_canary_config(&first.id, ExpectedVersion::Any)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // The name is free again.
    store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "p99")),
            "alice",
        )
        .await
        .unwrap();
});

config_test!(history_is_capped_and_documents_bounded, |store| {
    let (first, _) = store
        .save_canary_config(
            &save(None, "Latency", &["shop"], doc("Latency", "m0")),
            "alice",
        )
        .await
        .unwrap();
    let saves = MAX_CANARY_CONFIG_REVISIONS + 5;
    for n in 1..saves {
        store
            .save_canary_config(
                &save(
                    Some(&first.id),
                    "Latency",
                    &["shop"],
                    doc("Latency", &format!("m{n}")),
                ),
                "alice",
            )
            .await
            .unwrap();
    }
    let history = store.canary_config_history(&first.id).await.unwrap();
    assert_eq!(history.len() as i64, MAX_CANARY_CONFIG_REVISIONS);
    assert_eq!(history[0].revision, saves);
    assert_eq!(
        history.last().unwrap().revision,
        saves - MAX_CANARY_CONFIG_REVISIONS + 1
    );

    let huge = json!({"name": "Huge", "blob": "x".repeat(MAX_CANARY_CONFIG_BYTES)});
    let err = store
        .save_canary_config(&save(None, "Huge", &["shop"], huge), "alice")
        .await
        .unwrap_err();
    let StoreError::TooLarge(message) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("at most 1048576"), "{message}");
    assert!(
        store
            .get_canary_config_by_name("Huge")
            .await
            .unwrap()
            .is_none()
    );
});
