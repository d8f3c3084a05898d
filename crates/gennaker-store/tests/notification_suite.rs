//! Notifications on SQLite and PostgreSQL alike: queued once per dedupe key (also
//! inside an engine step's commit, and not at all when the step is stale), claimed
//! under a lease by one worker at a time, finished only by the lease holder, retried
//! when due.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::ExecutionStatus;
use gennaker_store::{
    CommitOutcome, DeliveryOutcome, ExecutionRow, ExecutionStore, ExecutionWrite, NewNotification,
    NotificationStatus, NotificationStore, StepCommit,
};

use gennaker_store::store_test as notification_test;

fn notification(key: &str, execution: &str, at: i64) -> NewNotification {
    NewNotification {
        dedupe_key: key.to_owned(),
        execution_id: execution.to_owned(),
        stage_id: None,
        event: "pipeline.complete".to_owned(),
        kind: "webhook".to_owned(),
        document: format!("{{\"key\":\"{key}\"}}"),
        deliver_at: at,
        skipped: None,
    }
}

fn execution_row(id: &str, version: i64) -> ExecutionRow {
    ExecutionRow {
        id: id.to_owned(),
        application: "app".to_owned(),
        pipeline_config_id: None,
        pipeline_name: Some("p".to_owned()),
        status: ExecutionStatus::Running,
        created_at: 1,
        start_time: None,
        end_time: None,
        correlation_id: None,
        version,
        document: "{}".to_owned(),
    }
}

notification_test!(queued_once_per_key_and_skipped_ones_are_final, |store| {
    let mut skipped = notification("e1/3", "e1", 10);
    skipped.kind = "sms".to_owned();
    skipped.skipped = Some("Gennaker cannot send sms notifications".to_owned());
    let added = store
        .enqueue_notifications(&[
            notification("e1/1", "e1", 10),
            notification("e1/2", "e1", 10),
            skipped,
        ])
        .await
        .unwrap();
    assert_eq!(added, 3);
    let again = store
        .enqueue_notifications(&[notification("e1/1", "e1", 10)])
        .await
        .unwrap();
    assert_eq!(again, 0, "a known dedupe key is not queued twice");
    let listed = store.execution_notifications("e1").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].status, NotificationStatus::Skipped);
    assert_eq!(
        listed[2].last_error.as_deref(),
        Some("Gennaker cannot send sms notifications")
    );
    assert!(listed[2].finished_at.is_some());
    // Only the two pending ones are ever claimed.
    let claimed = store.claim_notifications("w", 10, 100, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        store
            .execution_notifications("other")
            .await
            .unwrap()
            .is_empty()
    );
});

notification_test!(a_lease_keeps_others_off_until_it_ends, |store| {
    store
        .enqueue_notifications(&[notification("k", "e", 100)])
        .await
        .unwrap();
    assert!(
        store
            .claim_notifications("a", 99, 200, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    assert_eq!(store.next_notification_due().await.unwrap(), Some(100));
    let claimed = store.claim_notifications("a", 100, 200, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store
            .claim_notifications("b", 150, 300, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    assert_eq!(store.next_notification_due().await.unwrap(), Some(200));
    // The lease ended (its holder died): another worker takes it over, and the first
    // can no longer record an outcome.
    let taken = store.claim_notifications("b", 200, 300, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempts, 2);
    let id = taken[0].id;
    assert!(
        !store
            .finish_notification(id, "a", 201, &DeliveryOutcome::Delivered)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_notification(id, "b", 201, &DeliveryOutcome::Delivered)
            .await
            .unwrap()
    );
    let stored = &store.execution_notifications("e").await.unwrap()[0];
    assert_eq!(stored.status, NotificationStatus::Delivered);
    assert_eq!(stored.finished_at, Some(201));
    assert!(
        store
            .claim_notifications("b", 10_000, 20_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "delivered is final"
    );
    assert_eq!(store.next_notification_due().await.unwrap(), None);
});

notification_test!(retries_wait_for_their_time_and_failures_are_kept, |store| {
    store
        .enqueue_notifications(&[notification("k", "e", 0)])
        .await
        .unwrap();
    let id = store.claim_notifications("w", 0, 50, 1).await.unwrap()[0].id;
    let retry = DeliveryOutcome::Retry {
        at: 1_000,
        error: "HTTP 503".to_owned(),
    };
    assert!(store.finish_notification(id, "w", 1, &retry).await.unwrap());
    assert!(
        store
            .claim_notifications("w", 999, 2_000, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = &store.execution_notifications("e").await.unwrap()[0];
    assert_eq!(
        (stored.status, stored.last_error.as_deref()),
        (NotificationStatus::Pending, Some("HTTP 503"))
    );
    let again = store
        .claim_notifications("w", 1_000, 2_000, 1)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2);
    let failed = DeliveryOutcome::Failed {
        error: "HTTP 404".to_owned(),
    };
    assert!(
        store
            .finish_notification(id, "w", 1_001, &failed)
            .await
            .unwrap()
    );
    let stored = &store.execution_notifications("e").await.unwrap()[0];
    assert_eq!(
        (stored.status, stored.last_error.as_deref()),
        (NotificationStatus::Failed, Some("HTTP 404"))
    );
    assert!(
        !store
            .finish_notification(id, "w", 1_002, &DeliveryOutcome::Delivered)
            .await
            .unwrap(),
        "a finished one stays"
    );
});

notification_test!(a_step_commits_its_notifications_with_it, |store| {
    let insert = StepCommit {
        executions: vec![ExecutionWrite {
            row: execution_row("x", 1),
            expected_version: None,
        }],
        ..StepCommit::default()
    };
    assert_eq!(
        store.commit_step(&insert).await.unwrap(),
        CommitOutcome::Committed
    );
    let step = StepCommit {
        executions: vec![ExecutionWrite {
            row: execution_row("x", 2),
            expected_version: Some(1),
        }],
        notifications: vec![notification("x/2/a", "x", 5), notification("x/2/b", "x", 5)],
        ..StepCommit::default()
    };
    assert_eq!(
        store.commit_step(&step).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.execution_notifications("x").await.unwrap().len(), 2);
    // The same step again is stale: nothing of it is written, its notifications neither.
    let stale = StepCommit {
        notifications: vec![notification("x/2/c", "x", 5)],
        ..step.clone()
    };
    assert!(matches!(
        store.commit_step(&stale).await.unwrap(),
        CommitOutcome::Stale(_)
    ));
    let keys: Vec<String> = store
        .execution_notifications("x")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.dedupe_key)
        .collect();
    assert_eq!(keys, ["x/2/a", "x/2/b"]);
});
