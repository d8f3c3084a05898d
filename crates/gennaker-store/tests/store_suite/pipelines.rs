//! Pipelines: revisions, renames by id and the conflicts they meet.

use super::*;

store_test!(pipelines_keep_their_revisions, |store| {
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
    // Who saved it and when (as the server stamps every save) is no change either.
    let mut stamped = v1.clone();
    stamped["updateTs"] = json!("1700000000000");
    stamped["lastModifiedBy"] = json!("bob");
    let (same, outcome) = store
        .save_pipeline("shop", &save("Deploy", stamped), "bob")
        .await
        .unwrap();
    assert_eq!(outcome, SaveOutcome::Unchanged);
    assert_eq!((same.revision, same.updated_by.as_str()), (1, "alice"));

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

store_test!(pipeline_history_keeps_the_last_revisions_only, |store| {
    store
        .create_application("shop", &json!({"name": "shop"}), "alice")
        .await
        .unwrap();
    let saves = MAX_PIPELINE_REVISIONS + 5;
    for n in 0..saves {
        let doc = json!({"application": "shop", "name": "Loop", "stages": [], "n": n});
        store
            .save_pipeline("shop", &save("Loop", doc), "script")
            .await
            .unwrap();
    }
    let history = store.pipeline_history("shop", "Loop").await.unwrap();
    let kept: Vec<i64> = history.iter().map(|r| r.revision).collect();
    let expected: Vec<i64> = (6..=saves).rev().collect();
    assert_eq!(kept, expected);
    assert!(
        store
            .pipeline_revision("shop", "Loop", 5)
            .await
            .unwrap()
            .is_none(),
        "a dropped revision is gone"
    );
    // A restore is a save too: it keeps the cap.
    let restored = store
        .restore_pipeline_revision("shop", "Loop", 6, "carol")
        .await
        .unwrap();
    assert_eq!(restored.revision, saves + 1);
    let history = store.pipeline_history("shop", "Loop").await.unwrap();
    assert_eq!(
        history.len(),
        usize::try_from(MAX_PIPELINE_REVISIONS).unwrap()
    );
    assert_eq!(history.last().map(|r| r.revision), Some(7));
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

// A submission's one read: the application and its pipeline by name, else by id; a
// name wins over another pipeline's id, and another application's pipeline is not found
// by its id.
store_test!(application_and_pipeline_read_together, |store| {
    for app in ["shop", "other"] {
        store
            .create_application(app, &json!({"name": app}), "alice")
            .await
            .unwrap();
    }
    // "Deploy" has the id "bake", which is also the name of the pipeline "Bake".
    let (deploy, _) = store
        .save_pipeline(
            "shop",
            &save(
                "Deploy",
                json!({"id": "bake", "name": "Deploy", "stages": []}),
            ),
            "alice",
        )
        .await
        .unwrap();
    let (bake, _) = store
        .save_pipeline(
            "shop",
            &save("Bake", json!({"name": "Bake", "stages": []})),
            "alice",
        )
        .await
        .unwrap();
    let (elsewhere, _) = store
        .save_pipeline(
            "other",
            &save("Ship", json!({"name": "Ship", "stages": []})),
            "alice",
        )
        .await
        .unwrap();

    let (application, pipeline) = store
        .get_application_pipeline("SHOP", "deploy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        application,
        store.get_application("shop").await.unwrap().unwrap()
    );
    assert_eq!(pipeline, Some(deploy.clone()));
    let (_, by_name) = store
        .get_application_pipeline("shop", "bake")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name, Some(bake.clone()));
    let (_, by_id) = store
        .get_application_pipeline("shop", &bake.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id, Some(bake));
    let (_, not_here) = store
        .get_application_pipeline("shop", &elsewhere.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(not_here, None);
    let (_, missing) = store
        .get_application_pipeline("shop", "nothing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(
        store
            .get_application_pipeline("nowhere", "deploy")
            .await
            .unwrap(),
        None
    );
});
