//! Execution rows: inserts, optimistic updates, correlation ids and listing.

use gennaker_store::StoreError;

use super::*;

queue_test!(insert_then_get_and_enqueue_in_one_step, |store| {
    assert!(store.get_execution("e1").await.unwrap().is_none());
    let row = ExecutionRow {
        correlation_id: Some("corr-1".to_owned()),
        start_time: Some(150),
        ..pipeline_execution(
            "e1",
            "Shop",
            "cfg-1",
            "Deploy",
            ExecutionStatus::Running,
            100,
        )
    };
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![insert(row.clone())],
            enqueue: vec![message("e1", "start", 100), message("e1", "next", 200)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    let stored = store.get_execution("e1").await.unwrap().unwrap();
    assert_eq!(stored, row);
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    assert_eq!(
        partition_state(&store, "e1").await,
        [("start".to_owned(), 100, 0), ("next".to_owned(), 200, 0)]
    );
    // Inserting the same id again is refused and writes nothing.
    let again = store
        .commit_step(&StepCommit {
            executions: vec![insert(execution("e1", "shop", 999))],
            enqueue: vec![message("e1", "dup", 100)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert!(matches!(again, CommitOutcome::Stale(_)), "{again:?}");
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), row);
    assert_eq!(store.queue_depth().await.unwrap(), 2);
});

queue_test!(list_executions_filters_and_orders, |store| {
    insert_all(
        &store,
        vec![
            pipeline_execution(
                "a1",
                "Shop",
                "cfg-a",
                "Deploy",
                ExecutionStatus::Succeeded,
                100,
            ),
            pipeline_execution(
                "a2",
                "shop",
                "cfg-a",
                "Deploy",
                ExecutionStatus::Running,
                200,
            ),
            pipeline_execution(
                "a3",
                "SHOP",
                "cfg-b",
                "Rollback",
                ExecutionStatus::Terminal,
                300,
            ),
            pipeline_execution(
                "b1",
                "billing",
                "cfg-c",
                "Deploy",
                ExecutionStatus::Running,
                400,
            ),
            execution("o1", "shop", 500),
        ],
    )
    .await;

    let all = store.list_executions(&query(100)).await.unwrap();
    assert_eq!(ids_of(&all), ["o1", "b1", "a3", "a2", "a1"], "newest first");
    let oldest = store
        .list_executions(&ExecutionQuery {
            oldest_first: true,
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&oldest), ["a1", "a2", "a3", "b1", "o1"]);
    let limited = store.list_executions(&query(2)).await.unwrap();
    assert_eq!(ids_of(&limited), ["o1", "b1"]);
    let limited_oldest = store
        .list_executions(&ExecutionQuery {
            oldest_first: true,
            ..query(2)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&limited_oldest), ["a1", "a2"]);

    // The application matches whatever its case, and keeps its own spelling.
    let shop = store
        .list_executions(&ExecutionQuery {
            application: Some("sHoP".to_owned()),
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&shop), ["o1", "a3", "a2", "a1"]);
    assert_eq!(shop[3].application, "Shop");

    let by_config = store
        .list_executions(&ExecutionQuery {
            pipeline_config_id: Some("cfg-a".to_owned()),
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&by_config), ["a2", "a1"]);

    let by_name = store
        .list_executions(&ExecutionQuery {
            pipeline_name: Some("deploy".to_owned()),
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&by_name), ["b1", "a2", "a1"]);

    let running = store
        .list_executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Running],
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&running), ["b1", "a2"]);
    let done = store
        .list_executions(&ExecutionQuery {
            statuses: vec![ExecutionStatus::Succeeded, ExecutionStatus::Terminal],
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&done), ["a3", "a1"]);

    // Filters combine.
    let combined = store
        .list_executions(&ExecutionQuery {
            application: Some("SHOP".to_owned()),
            pipeline_name: Some("DEPLOY".to_owned()),
            statuses: vec![ExecutionStatus::Running],
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&combined), ["a2"]);
    let nothing = store
        .list_executions(&ExecutionQuery {
            application: Some("billing".to_owned()),
            pipeline_config_id: Some("cfg-a".to_owned()),
            ..query(100)
        })
        .await
        .unwrap();
    assert!(nothing.is_empty());
});

queue_test!(list_executions_by_trigger_type_and_creation_time, |store| {
    let triggered = |id: &str, kind: &str, created_at: i64| ExecutionRow {
        document: format!(r#"{{"id":"{id}","trigger":{{"type":"{kind}","user":"x"}}}}"#),
        ..execution(id, "shop", created_at)
    };
    insert_all(
        &store,
        vec![
            triggered("m1", "manual", 100),
            triggered("c1", "cron", 200),
            triggered("w1", "webhook", 300),
            triggered("c2", "cron", 400),
            // A document without a trigger counts as manual.
            execution("o1", "shop", 500),
        ],
    )
    .await;
    let list = |query: ExecutionQuery| {
        let store = store.clone();
        async move { store.list_executions(&query).await.unwrap() }
    };
    let cron = list(ExecutionQuery {
        trigger_type: Some("cron".to_owned()),
        ..query(100)
    })
    .await;
    assert_eq!(ids_of(&cron), ["c2", "c1"]);
    let manual = list(ExecutionQuery {
        trigger_type: Some("manual".to_owned()),
        ..query(100)
    })
    .await;
    assert_eq!(ids_of(&manual), ["o1", "m1"]);
    let window = list(ExecutionQuery {
        created_after: Some(200),
        created_before: Some(400),
        ..query(100)
    })
    .await;
    assert_eq!(
        ids_of(&window),
        ["w1", "c1"],
        "from inclusive, to exclusive"
    );
    let combined = list(ExecutionQuery {
        trigger_type: Some("cron".to_owned()),
        created_after: Some(300),
        ..query(100)
    })
    .await;
    assert_eq!(ids_of(&combined), ["c2"]);
});

queue_test!(update_with_the_right_version_commits, |store| {
    let v1 = pipeline_execution(
        "e1",
        "shop",
        "cfg",
        "Deploy",
        ExecutionStatus::NotStarted,
        100,
    );
    insert_all(&store, vec![v1.clone()]).await;

    let v2 = ExecutionRow {
        status: ExecutionStatus::Running,
        start_time: Some(110),
        version: 2,
        document: r#"{"id":"e1","status":"RUNNING"}"#.to_owned(),
        ..v1.clone()
    };
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![update(v2.clone(), 1)],
            enqueue: vec![message("e1", "run", 110)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), v2);
    assert_eq!(
        payloads(&store.partition_messages("e1").await.unwrap()),
        ["run"]
    );

    let v3 = ExecutionRow {
        status: ExecutionStatus::Succeeded,
        end_time: Some(190),
        version: 3,
        ..v2.clone()
    };
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![update(v3.clone(), 2)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), v3);
});

queue_test!(a_stale_step_writes_nothing, |store| {
    let e1 = execution("e1", "shop", 100);
    let e2 = execution("e2", "shop", 200);
    insert_all(&store, vec![e1.clone(), e2.clone()]).await;
    enqueue(&store, vec![message("e1", "m1", 10)]).await;
    let leased = store.claim_messages("w1", 50, 1_000, 10, 10).await.unwrap();
    assert_eq!(payloads(&leased), ["m1"]);

    // e2 is moved on by someone else, so the step below read a stale e2.
    let e2_v2 = ExecutionRow {
        status: ExecutionStatus::Running,
        version: 2,
        ..e2.clone()
    };
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![update(e2_v2.clone(), 1)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    // One step: acknowledge m1, write e1 (fresh), write e2 (stale), insert e3, enqueue,
    // wake. The stale write comes after the others, which must all be undone.
    enqueue(&store, vec![message("other", "sleeping", 5_000)]).await;
    let stale = store
        .commit_step(&StepCommit {
            owner: "w1".to_owned(),
            acknowledged: vec![leased[0].id],
            executions: vec![
                update(
                    ExecutionRow {
                        status: ExecutionStatus::Running,
                        version: 2,
                        ..e1.clone()
                    },
                    1,
                ),
                insert(execution("e3", "shop", 300)),
                update(
                    ExecutionRow {
                        status: ExecutionStatus::Succeeded,
                        version: 2,
                        ..e2.clone()
                    },
                    1,
                ),
            ],
            enqueue: vec![message("e1", "m2", 60), message("e3", "start", 60)],
            wake: vec!["other".to_owned()],
            wake_at: 60,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert!(
        matches!(&stale, CommitOutcome::Stale(m) if m.contains("e2")),
        "{stale:?}"
    );

    assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), e1);
    assert_eq!(store.get_execution("e2").await.unwrap().unwrap(), e2_v2);
    assert!(store.get_execution("e3").await.unwrap().is_none());
    // m1 is still there and still leased by w1 (so nobody else can take it yet) …
    assert_eq!(
        partition_state(&store, "e1").await,
        [("m1".to_owned(), 10, 1)]
    );
    assert!(partition_state(&store, "e3").await.is_empty());
    assert_eq!(
        partition_state(&store, "other").await,
        [("sleeping".to_owned(), 5_000, 0)]
    );
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    assert!(
        store
            .claim_messages("w2", 100, 2_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // … and w1 can redo the step from fresh state.
    assert_eq!(
        ack(&store, "w1", vec![leased[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.queue_depth().await.unwrap(), 1);
});

queue_test!(
    a_stale_update_of_a_missing_execution_writes_nothing,
    |store| {
        let outcome = store
            .commit_step(&StepCommit {
                executions: vec![update(execution("ghost", "shop", 1), 1)],
                enqueue: vec![message("ghost", "m", 1)],
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert!(matches!(outcome, CommitOutcome::Stale(_)), "{outcome:?}");
        assert!(store.get_execution("ghost").await.unwrap().is_none());
        assert_eq!(store.queue_depth().await.unwrap(), 0);
    }
);

queue_test!(correlation_ids_are_deduplicated, |store| {
    let first = ExecutionRow {
        correlation_id: Some("trigger-42".to_owned()),
        ..execution("e1", "shop", 100)
    };
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![insert(first.clone())],
            enqueue: vec![message("e1", "start", 100)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    // A second trigger with the same correlation id, in a step that also writes other
    // things: refused with the existing id, and nothing of it is written.
    enqueue(&store, vec![message("old", "m", 10)]).await;
    let leased = store.claim_messages("w1", 10, 1_000, 1, 1).await.unwrap();
    assert_eq!(payloads(&leased), ["m"]);
    let duplicate = store
        .commit_step(&StepCommit {
            owner: "w1".to_owned(),
            acknowledged: vec![leased[0].id],
            executions: vec![
                insert(execution("e0", "shop", 150)),
                insert(ExecutionRow {
                    correlation_id: Some("trigger-42".to_owned()),
                    ..execution("e2", "shop", 200)
                }),
            ],
            enqueue: vec![message("e2", "start", 200)],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(
        duplicate,
        CommitOutcome::DuplicateCorrelation("e1".to_owned())
    );
    assert!(store.get_execution("e0").await.unwrap().is_none());
    assert!(store.get_execution("e2").await.unwrap().is_none());
    assert!(store.partition_messages("e2").await.unwrap().is_empty());
    assert_eq!(
        partition_state(&store, "old").await,
        [("m".to_owned(), 10, 1)]
    );
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), first);

    // Two inserts with the same correlation id in one step: refused as well.
    let twice = store
        .commit_step(&StepCommit {
            executions: vec![
                insert(ExecutionRow {
                    correlation_id: Some("trigger-7".to_owned()),
                    ..execution("e3", "shop", 300)
                }),
                insert(ExecutionRow {
                    correlation_id: Some("trigger-7".to_owned()),
                    ..execution("e4", "shop", 300)
                }),
            ],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(twice, CommitOutcome::DuplicateCorrelation("e3".to_owned()));
    assert!(store.get_execution("e3").await.unwrap().is_none());

    // Executions without a correlation id never collide.
    insert_all(
        &store,
        vec![execution("n1", "shop", 1), execution("n2", "shop", 2)],
    )
    .await;
});

/// Stores `e1` with a status this version does not know, as a newer server might, and
/// expects reading it to fail with a typed error rather than a panic.
async fn reads_an_unknown_status_as_an_error(backend: TestBackend) {
    let (db, store) = TestDatabase::store(backend).await.unwrap();
    insert_all(&store, vec![execution("e1", "shop", 100)]).await;
    let rewrite = "UPDATE executions SET status = 'EXPLODED' WHERE id = 'e1'";
    let rewritten = match store.postgres_pool() {
        Some(pool) => sqlx::query(rewrite)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let done = sqlx::query(rewrite).execute(&pool).await.unwrap();
            pool.close().await;
            done.rows_affected()
        }
    };
    assert_eq!(rewritten, 1);

    let err = store.get_execution("e1").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownStatus { execution, status } if execution == "e1" && status == "EXPLODED"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "execution 'e1' has unknown status 'EXPLODED'"
    );
    let err = store.list_executions(&query(10)).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownStatus { .. }), "{err:?}");
    store.close().await;
}

mod unknown_status {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        reads_an_unknown_status_as_an_error(TestBackend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        reads_an_unknown_status_as_an_error(TestBackend::Postgres).await;
    }
}
