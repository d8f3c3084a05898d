//! The concurrency guard that keeps a pipeline to its limit of active executions.

use gennaker_store::ConcurrencyGuard;

use super::*;

/// A step starting execution `id` of pipeline config `cfg`, allowed `max_active` others.
fn start_step(id: &str, cfg: &str, max_active: i64) -> StepCommit {
    StepCommit {
        executions: vec![insert(pipeline_execution(
            id,
            "shop",
            cfg,
            "Deploy",
            ExecutionStatus::Running,
            1_000,
        ))],
        enqueue: vec![message(id, "start", 1_000)],
        pipeline_lock: Some(cfg.to_owned()),
        concurrency: Some(ConcurrencyGuard {
            pipeline_config_id: cfg.to_owned(),
            execution_id: id.to_owned(),
            max_active,
        }),
        ..StepCommit::default()
    }
}

queue_test!(concurrency_guard_counts_active_executions, |store| {
    insert_all(
        &store,
        vec![
            pipeline_execution(
                "done1",
                "shop",
                "cfg",
                "Deploy",
                ExecutionStatus::Succeeded,
                1,
            ),
            pipeline_execution(
                "done2",
                "shop",
                "cfg",
                "Deploy",
                ExecutionStatus::Terminal,
                2,
            ),
            pipeline_execution(
                "elsewhere",
                "shop",
                "other-cfg",
                "Deploy",
                ExecutionStatus::Running,
                3,
            ),
        ],
    )
    .await;
    // Finished executions and other pipelines' don't count.
    assert_eq!(
        store
            .commit_step(&start_step("e1", "cfg", 1))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );

    // e1 is RUNNING: a second start is refused, and nothing of it is written.
    assert_eq!(
        store
            .commit_step(&start_step("e2", "cfg", 1))
            .await
            .unwrap(),
        CommitOutcome::ConcurrencyLimited
    );
    assert!(store.get_execution("e2").await.unwrap().is_none());
    assert!(store.partition_messages("e2").await.unwrap().is_empty());
    // With room for two, it starts.
    assert_eq!(
        store
            .commit_step(&start_step("e2", "cfg", 2))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );

    // A PAUSED execution counts; so does a SUSPENDED one.
    let e1 = store.get_execution("e1").await.unwrap().unwrap();
    let e2 = store.get_execution("e2").await.unwrap().unwrap();
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![
                update(
                    ExecutionRow {
                        status: ExecutionStatus::Paused,
                        version: 2,
                        ..e1.clone()
                    },
                    1,
                ),
                update(
                    ExecutionRow {
                        status: ExecutionStatus::Succeeded,
                        version: 2,
                        ..e2.clone()
                    },
                    1,
                ),
            ],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(
        store
            .commit_step(&start_step("e3", "cfg", 1))
            .await
            .unwrap(),
        CommitOutcome::ConcurrencyLimited
    );
    let e1 = store.get_execution("e1").await.unwrap().unwrap();
    let outcome = store
        .commit_step(&StepCommit {
            executions: vec![update(
                ExecutionRow {
                    status: ExecutionStatus::Suspended,
                    version: 3,
                    ..e1.clone()
                },
                2,
            )],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(
        store
            .commit_step(&start_step("e3", "cfg", 1))
            .await
            .unwrap(),
        CommitOutcome::ConcurrencyLimited
    );
    assert!(store.get_execution("e3").await.unwrap().is_none());

    // The execution being started is not counted against itself: e1 (SUSPENDED, so
    // active) may be moved on under a guard allowing one active execution…
    let e1 = store.get_execution("e1").await.unwrap().unwrap();
    let resume = StepCommit {
        executions: vec![update(
            ExecutionRow {
                status: ExecutionStatus::Running,
                version: 4,
                ..e1.clone()
            },
            3,
        )],
        concurrency: Some(ConcurrencyGuard {
            pipeline_config_id: "cfg".to_owned(),
            execution_id: "e1".to_owned(),
            max_active: 1,
        }),
        ..StepCommit::default()
    };
    assert_eq!(
        store.commit_step(&resume).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap().version, 4);
    // … but not when another one is active.
    let refused = StepCommit {
        concurrency: Some(ConcurrencyGuard {
            pipeline_config_id: "cfg".to_owned(),
            execution_id: "someone-else".to_owned(),
            max_active: 1,
        }),
        enqueue: vec![message("x", "x", 1)],
        ..StepCommit::default()
    };
    assert_eq!(
        store.commit_step(&refused).await.unwrap(),
        CommitOutcome::ConcurrencyLimited
    );
    assert!(store.partition_messages("x").await.unwrap().is_empty());
});

queue_test!(a_refused_start_keeps_its_acknowledged_messages, |store| {
    insert_all(
        &store,
        vec![pipeline_execution(
            "running",
            "shop",
            "cfg",
            "Deploy",
            ExecutionStatus::Running,
            1,
        )],
    )
    .await;
    enqueue(&store, vec![message("pipeline:cfg", "start e2", 10)]).await;
    let leased = store.claim_messages("w1", 10, 100, 1, 10).await.unwrap();
    let step = StepCommit {
        owner: "w1".to_owned(),
        acknowledged: vec![leased[0].id],
        ..start_step("e2", "cfg", 1)
    };
    assert_eq!(
        store.commit_step(&step).await.unwrap(),
        CommitOutcome::ConcurrencyLimited
    );
    assert_eq!(
        partition_state(&store, "pipeline:cfg").await,
        [("start e2".to_owned(), 10, 1)]
    );
    assert!(store.get_execution("e2").await.unwrap().is_none());
});

queue_test!(multi_thread racing_starts_respect_the_concurrency_limit, |store| {
    // Eight starts of one pipeline at once, each allowing no other active execution:
    // the pipeline lock serialises them, so exactly one starts.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit_step(&start_step(&format!("e{i}"), "cfg", 1))
                .await
                .unwrap()
        }));
    }
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            CommitOutcome::Committed => committed += 1,
            CommitOutcome::ConcurrencyLimited => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(committed, 1);
    let running = store
        .list_executions(&ExecutionQuery {
            pipeline_config_id: Some("cfg".to_owned()),
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(store.queue_depth().await.unwrap(), 1);
});
