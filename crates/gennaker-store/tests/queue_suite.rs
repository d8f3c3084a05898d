//! The execution store and the engine's durable queue, run against SQLite and PostgreSQL
//! alike. Time is never read from a clock here: every `now`, `deliver_at` and
//! `lease_until` is a plain number chosen by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{
    CommitOutcome, ConcurrencyGuard, ExecutionQuery, ExecutionRow, ExecutionStore, ExecutionWrite,
    LeasedMessage, NewMessage, SqlStore, StepCommit,
};

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a fresh store.
/// `multi_thread` runs the body on a multi-threaded runtime (for tests that race tasks).
macro_rules! queue_test {
    ($name:ident, |$store:ident| $body:block) => {
        queue_test!(@define $name, "current_thread", |$store| $body);
    };
    (multi_thread $name:ident, |$store:ident| $body:block) => {
        queue_test!(@define $name, "multi_thread", |$store| $body);
    };
    (@define $name:ident, $flavor:literal, |$store:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: SqlStore) $body

            #[tokio::test(flavor = $flavor)]
            async fn sqlite() {
                let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
                run(store).await;
            }

            #[tokio::test(flavor = $flavor)]
            async fn postgres() {
                let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
                run(store.clone()).await;
                store.close().await;
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A new execution row at version 1.
fn execution(id: &str, application: &str, created_at: i64) -> ExecutionRow {
    ExecutionRow {
        id: id.to_owned(),
        application: application.to_owned(),
        pipeline_config_id: None,
        pipeline_name: None,
        status: "NOT_STARTED".to_owned(),
        created_at,
        start_time: None,
        end_time: None,
        correlation_id: None,
        version: 1,
        document: format!(r#"{{"id":"{id}"}}"#),
    }
}

/// A new execution of pipeline config `config` named `name`, with `status`.
fn pipeline_execution(
    id: &str,
    application: &str,
    config: &str,
    name: &str,
    status: &str,
    created_at: i64,
) -> ExecutionRow {
    ExecutionRow {
        pipeline_config_id: Some(config.to_owned()),
        pipeline_name: Some(name.to_owned()),
        status: status.to_owned(),
        ..execution(id, application, created_at)
    }
}

fn insert(row: ExecutionRow) -> ExecutionWrite {
    ExecutionWrite {
        row,
        expected_version: None,
    }
}

/// Writes `row` (whose `version` is the new one) over `expected`.
fn update(row: ExecutionRow, expected: i64) -> ExecutionWrite {
    ExecutionWrite {
        row,
        expected_version: Some(expected),
    }
}

fn message(partition: &str, payload: &str, deliver_at: i64) -> NewMessage {
    NewMessage {
        partition: partition.to_owned(),
        payload: payload.to_owned(),
        deliver_at,
        replace_key: None,
    }
}

/// Commits a step that only enqueues `messages`.
async fn enqueue(store: &SqlStore, messages: Vec<NewMessage>) {
    let outcome = store
        .commit_step(&StepCommit {
            enqueue: messages,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// Inserts executions (no messages) and expects the step to commit.
async fn insert_all(store: &SqlStore, rows: Vec<ExecutionRow>) {
    let outcome = store
        .commit_step(&StepCommit {
            executions: rows.into_iter().map(insert).collect(),
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
}

/// Acknowledges `ids` as `owner` and nothing else.
async fn ack(store: &SqlStore, owner: &str, ids: Vec<i64>) -> CommitOutcome {
    store
        .commit_step(&StepCommit {
            owner: owner.to_owned(),
            acknowledged: ids,
            ..StepCommit::default()
        })
        .await
        .unwrap()
}

fn payloads(messages: &[LeasedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.payload.as_str()).collect()
}

fn ids_of(rows: &[ExecutionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn query(limit: i64) -> ExecutionQuery {
    ExecutionQuery {
        limit,
        ..ExecutionQuery::default()
    }
}

/// Every message of `partition` as `(payload, deliver_at, attempts)`.
async fn partition_state(store: &SqlStore, partition: &str) -> Vec<(String, i64, i32)> {
    store
        .partition_messages(partition)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.payload, m.deliver_at, m.attempts))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Executions
// ---------------------------------------------------------------------------------------

queue_test!(insert_then_get_and_enqueue_in_one_step, |store| {
    assert!(store.get_execution("e1").await.unwrap().is_none());
    let row = ExecutionRow {
        correlation_id: Some("corr-1".to_owned()),
        start_time: Some(150),
        ..pipeline_execution("e1", "Shop", "cfg-1", "Deploy", "RUNNING", 100)
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
            pipeline_execution("a1", "Shop", "cfg-a", "Deploy", "SUCCEEDED", 100),
            pipeline_execution("a2", "shop", "cfg-a", "Deploy", "RUNNING", 200),
            pipeline_execution("a3", "SHOP", "cfg-b", "Rollback", "TERMINAL", 300),
            pipeline_execution("b1", "billing", "cfg-c", "Deploy", "RUNNING", 400),
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
            statuses: vec!["RUNNING".to_owned()],
            ..query(100)
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&running), ["b1", "a2"]);
    let done = store
        .list_executions(&ExecutionQuery {
            statuses: vec!["SUCCEEDED".to_owned(), "TERMINAL".to_owned()],
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
            statuses: vec!["RUNNING".to_owned()],
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

queue_test!(update_with_the_right_version_commits, |store| {
    let v1 = pipeline_execution("e1", "shop", "cfg", "Deploy", "NOT_STARTED", 100);
    insert_all(&store, vec![v1.clone()]).await;

    let v2 = ExecutionRow {
        status: "RUNNING".to_owned(),
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
        status: "SUCCEEDED".to_owned(),
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
        status: "RUNNING".to_owned(),
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
                        status: "RUNNING".to_owned(),
                        version: 2,
                        ..e1.clone()
                    },
                    1,
                ),
                insert(execution("e3", "shop", 300)),
                update(
                    ExecutionRow {
                        status: "SUCCEEDED".to_owned(),
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

// ---------------------------------------------------------------------------------------
// Claiming
// ---------------------------------------------------------------------------------------

queue_test!(claims_only_due_messages_in_due_order, |store| {
    enqueue(
        &store,
        vec![
            message("a", "a-late", 300),
            message("b", "b-early", 100),
            message("c", "c-future", 10_000),
            message("a", "a-early", 50),
            message("b", "b-same-time", 100),
        ],
    )
    .await;
    assert!(
        store
            .claim_messages("w1", 49, 1_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // deliver_at <= now is due.
    let claimed = store
        .claim_messages("w1", 100, 1_000, 10, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&claimed), ["a-early", "b-early", "b-same-time"]);
    assert!(claimed.iter().all(|m| m.attempts == 1));
    assert_eq!(
        claimed.iter().map(|m| m.deliver_at).collect::<Vec<_>>(),
        [50, 100, 100]
    );
    assert_eq!(claimed[0].partition, "a");
    assert_eq!(claimed[1].partition, "b");
    // Nothing else is due for anyone yet (a and b are leased, c is in the future).
    assert!(
        store
            .claim_messages("w2", 200, 1_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
});

queue_test!(
    leased_messages_and_their_partitions_wait_for_the_lease,
    |store| {
        enqueue(
            &store,
            vec![
                message("a", "a1", 10),
                message("a", "a2", 50),
                message("b", "b1", 60),
            ],
        )
        .await;
        let first = store.claim_messages("w1", 20, 100, 10, 10).await.unwrap();
        assert_eq!(payloads(&first), ["a1"]);

        // a2 is due, but a1's lease is live: partition a is out of bounds for everyone,
        // including w1 itself; b is free.
        let second = store.claim_messages("w2", 60, 200, 10, 10).await.unwrap();
        assert_eq!(payloads(&second), ["b1"]);
        assert!(
            store
                .claim_messages("w1", 60, 200, 10, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Still live just before lease_until.
        assert!(
            store
                .claim_messages("w3", 99, 300, 10, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Once the lease has run out, another worker takes the whole partition over.
        let taken = store.claim_messages("w3", 100, 300, 10, 10).await.unwrap();
        assert_eq!(payloads(&taken), ["a1", "a2"]);
        assert_eq!(
            taken.iter().map(|m| m.attempts).collect::<Vec<_>>(),
            [2, 1],
            "a1 is delivered for the second time"
        );
        assert_eq!(taken[0].id, first[0].id);
        // b1's lease (until 200) is still live.
        assert!(
            store
                .claim_messages("w4", 150, 400, 10, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

queue_test!(claims_respect_partition_and_per_partition_limits, |store| {
    enqueue(
        &store,
        vec![
            message("a", "a1", 1),
            message("a", "a2", 2),
            message("a", "a3", 3),
            message("b", "b1", 4),
            message("b", "b2", 5),
            message("c", "c1", 6),
        ],
    )
    .await;
    let first = store.claim_messages("w1", 10, 100, 2, 2).await.unwrap();
    assert_eq!(payloads(&first), ["a1", "a2", "b1", "b2"]);
    // c is the only partition left that nobody holds.
    let second = store.claim_messages("w2", 10, 100, 2, 2).await.unwrap();
    assert_eq!(payloads(&second), ["c1"]);
    assert!(
        store
            .claim_messages("w3", 10, 100, 2, 2)
            .await
            .unwrap()
            .is_empty()
    );
    // w1 finishes a1 and a2; a3 waits no longer (b is still held by w1).
    let a_ids = first
        .iter()
        .filter(|m| m.partition == "a")
        .map(|m| m.id)
        .collect();
    assert_eq!(ack(&store, "w1", a_ids).await, CommitOutcome::Committed);
    let third = store.claim_messages("w3", 10, 100, 2, 2).await.unwrap();
    assert_eq!(payloads(&third), ["a3"]);
});

queue_test!(a_busy_partition_does_not_crowd_out_the_others, |store| {
    // Partition a has a backlog older than anything else; a worker asking for several
    // partitions must still get the others, not only a's first messages.
    let mut backlog: Vec<NewMessage> = (0..10).map(|i| message("a", &format!("a{i}"), i)).collect();
    backlog.push(message("b", "b0", 100));
    backlog.push(message("c", "c0", 101));
    enqueue(&store, backlog).await;

    let claimed = store
        .claim_messages("w1", 1_000, 2_000, 3, 1)
        .await
        .unwrap();
    assert_eq!(payloads(&claimed), ["a0", "b0", "c0"]);
    let claimed = store
        .claim_messages("w2", 1_000, 2_000, 1, 1)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
});

queue_test!(
    acknowledging_a_lost_lease_is_stale_and_writes_nothing,
    |store| {
        let e1 = execution("e1", "shop", 1);
        insert_all(&store, vec![e1.clone()]).await;
        enqueue(&store, vec![message("e1", "m", 10)]).await;
        let mine = store.claim_messages("w1", 10, 100, 1, 10).await.unwrap();
        assert_eq!(payloads(&mine), ["m"]);
        // w1 stalls; its lease runs out and w2 takes the message over.
        let theirs = store.claim_messages("w2", 200, 300, 1, 10).await.unwrap();
        assert_eq!(theirs[0].id, mine[0].id);
        assert_eq!(theirs[0].attempts, 2);

        let late = store
            .commit_step(&StepCommit {
                owner: "w1".to_owned(),
                acknowledged: vec![mine[0].id],
                executions: vec![update(
                    ExecutionRow {
                        status: "RUNNING".to_owned(),
                        version: 2,
                        ..e1.clone()
                    },
                    1,
                )],
                enqueue: vec![message("e1", "from-w1", 210)],
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert!(matches!(late, CommitOutcome::Stale(_)), "{late:?}");
        assert_eq!(store.get_execution("e1").await.unwrap().unwrap(), e1);
        assert_eq!(
            partition_state(&store, "e1").await,
            [("m".to_owned(), 10, 2)]
        );

        // w1 cannot release or extend what it no longer holds either.
        store
            .release_messages("w1", &[mine[0].id], 0)
            .await
            .unwrap();
        store
            .extend_leases("w1", &[mine[0].id], 10_000)
            .await
            .unwrap();
        assert!(
            store
                .claim_messages("w3", 250, 400, 1, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // w2, the holder, acknowledges it.
        assert_eq!(
            ack(&store, "w2", vec![theirs[0].id]).await,
            CommitOutcome::Committed
        );
        assert_eq!(store.queue_depth().await.unwrap(), 0);
    }
);

queue_test!(
    an_expired_lease_nobody_took_can_still_be_acknowledged,
    |store| {
        enqueue(&store, vec![message("p", "m", 10)]).await;
        let mine = store.claim_messages("w1", 10, 100, 1, 1).await.unwrap();
        // The lease has run out, but nobody claimed the message meanwhile.
        assert_eq!(
            ack(&store, "w1", vec![mine[0].id]).await,
            CommitOutcome::Committed
        );
        assert_eq!(store.queue_depth().await.unwrap(), 0);
    }
);

queue_test!(extended_leases_keep_the_partition, |store| {
    enqueue(&store, vec![message("p", "m", 10)]).await;
    let mine = store.claim_messages("w1", 10, 100, 1, 1).await.unwrap();
    store.extend_leases("w1", &[mine[0].id], 500).await.unwrap();
    assert!(
        store
            .claim_messages("w2", 499, 600, 1, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store.claim_messages("w2", 500, 600, 1, 1).await.unwrap();
    assert_eq!(taken[0].id, mine[0].id);
});

queue_test!(claiming_at_next_delivery_finds_a_message, |store| {
    // next_delivery is what an idle worker sleeps until: claiming then must succeed,
    // whether it waited for a due time or for a lease to run out.
    enqueue(&store, vec![message("p", "m", 100)]).await;
    let at = store.next_delivery().await.unwrap().unwrap();
    assert_eq!(at, 100);
    let first = store.claim_messages("w1", at, 500, 1, 1).await.unwrap();
    assert_eq!(payloads(&first), ["m"]);

    let at = store.next_delivery().await.unwrap().unwrap();
    assert_eq!(at, 500);
    assert!(
        store
            .claim_messages("w2", at - 1, 900, 1, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let second = store.claim_messages("w2", at, 900, 1, 1).await.unwrap();
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].attempts, 2);
});

queue_test!(released_messages_come_back_at_the_given_time, |store| {
    enqueue(
        &store,
        vec![
            message("p", "p1", 10),
            message("p", "p2", 20),
            message("q", "q1", 10),
        ],
    )
    .await;
    let claimed = store.claim_messages("w1", 30, 1_000, 10, 10).await.unwrap();
    assert_eq!(payloads(&claimed), ["p1", "q1", "p2"]);
    let p_ids: Vec<i64> = claimed
        .iter()
        .filter(|m| m.partition == "p")
        .map(|m| m.id)
        .collect();

    // Someone else's release changes nothing.
    store.release_messages("w2", &p_ids, 40).await.unwrap();
    assert!(
        store
            .claim_messages("w2", 50, 1_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );

    store.release_messages("w1", &p_ids, 500).await.unwrap();
    assert_eq!(
        partition_state(&store, "p").await,
        [("p1".to_owned(), 500, 1), ("p2".to_owned(), 500, 1)]
    );
    // Not before 500, although the old lease (until 1000) would still be live.
    assert!(
        store
            .claim_messages("w2", 499, 2_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_messages("w2", 500, 2_000, 10, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&again), ["p1", "p2"]);
    assert!(again.iter().all(|m| m.attempts == 2));
    // q1 stays leased by w1 throughout.
    assert_eq!(
        partition_state(&store, "q").await,
        [("q1".to_owned(), 10, 1)]
    );
});

queue_test!(release_all_leases_frees_everything, |store| {
    enqueue(
        &store,
        vec![
            message("p", "p1", 10),
            message("q", "q1", 10),
            message("r", "r1", 10),
            message("s", "s-future", 5_000),
        ],
    )
    .await;
    let w1 = store.claim_messages("w1", 10, 1_000, 2, 10).await.unwrap();
    let w2 = store.claim_messages("w2", 10, 1_000, 2, 10).await.unwrap();
    assert_eq!(w1.len() + w2.len(), 3);
    assert!(
        store
            .claim_messages("w3", 10, 1_000, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.release_all_leases().await.unwrap(), 3);
    assert_eq!(store.release_all_leases().await.unwrap(), 0);
    // Everything due is claimable at once, keeping its due time; the future one is not.
    let all = store.claim_messages("w3", 10, 1_000, 10, 10).await.unwrap();
    assert_eq!(payloads(&all), ["p1", "q1", "r1"]);
    assert!(all.iter().all(|m| m.attempts == 2 && m.deliver_at == 10));
    // The old owners have lost them.
    assert!(matches!(
        ack(&store, "w1", w1.iter().map(|m| m.id).collect()).await,
        CommitOutcome::Stale(_)
    ));
});

// ---------------------------------------------------------------------------------------
// Wake, next delivery, depth
// ---------------------------------------------------------------------------------------

queue_test!(wake_makes_waiting_messages_of_a_partition_due, |store| {
    enqueue(
        &store,
        vec![
            message("p", "p-leased", 10),
            message("p", "p-poll", 10_000),
            message("p", "p-early", 50),
            message("q", "q-poll", 10_000),
            message("r", "r-leased", 10),
        ],
    )
    .await;
    // w1 holds p-leased (in p) and r-leased.
    let held = store.claim_messages("w1", 10, 5_000, 10, 10).await.unwrap();
    assert_eq!(payloads(&held), ["p-leased", "r-leased"]);

    let outcome = store
        .commit_step(&StepCommit {
            wake: vec!["p".to_owned(), "r".to_owned(), "empty".to_owned()],
            wake_at: 100,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    // p-poll is now due at 100; p-early was due sooner and keeps its time; the leased
    // message keeps its own; q is untouched.
    assert_eq!(
        partition_state(&store, "p").await,
        [
            ("p-leased".to_owned(), 10, 1),
            ("p-early".to_owned(), 50, 0),
            ("p-poll".to_owned(), 100, 0),
        ]
    );
    assert_eq!(
        partition_state(&store, "q").await,
        [("q-poll".to_owned(), 10_000, 0)]
    );
    assert_eq!(
        partition_state(&store, "r").await,
        [("r-leased".to_owned(), 10, 1)]
    );

    // Once w1 is done with p, the woken message is delivered at 100.
    let p_leased = held.iter().find(|m| m.partition == "p").unwrap().id;
    assert_eq!(
        ack(&store, "w1", vec![p_leased]).await,
        CommitOutcome::Committed
    );
    let next = store
        .claim_messages("w2", 100, 5_000, 10, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&next), ["p-early", "p-poll"]);
});

queue_test!(wake_in_the_same_step_as_acknowledging, |store| {
    // The usual shape: a finished child wakes its parent's partition in the step that
    // consumes the child's message.
    enqueue(
        &store,
        vec![
            message("child", "done", 10),
            message("parent", "poll", 9_000),
        ],
    )
    .await;
    let child = store.claim_messages("w1", 10, 1_000, 1, 10).await.unwrap();
    let outcome = store
        .commit_step(&StepCommit {
            owner: "w1".to_owned(),
            acknowledged: vec![child[0].id],
            wake: vec!["parent".to_owned()],
            wake_at: 20,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(store.next_delivery().await.unwrap(), Some(20));
    let parent = store.claim_messages("w1", 20, 1_000, 1, 10).await.unwrap();
    assert_eq!(payloads(&parent), ["poll"]);
});

queue_test!(next_delivery_accounts_for_due_times_and_leases, |store| {
    assert_eq!(store.next_delivery().await.unwrap(), None);
    enqueue(
        &store,
        vec![
            message("p", "p1", 300),
            message("q", "q1", 200),
            message("q", "q2", 250),
            message("r", "r1", 2_000),
        ],
    )
    .await;
    assert_eq!(store.next_delivery().await.unwrap(), Some(200));

    // q is leased until 1000: q2 (due at 250) must wait for that lease, and so must q1
    // should its worker die, so p1 is next.
    let q = store.claim_messages("w1", 200, 1_000, 1, 1).await.unwrap();
    assert_eq!(payloads(&q), ["q1"]);
    assert_eq!(store.next_delivery().await.unwrap(), Some(300));

    let p = store.claim_messages("w1", 300, 1_500, 1, 1).await.unwrap();
    assert_eq!(payloads(&p), ["p1"]);
    // Now the earliest is q's lease ending (1000), not its due times.
    assert_eq!(store.next_delivery().await.unwrap(), Some(1_000));

    // A message due after the lease ends keeps its own time.
    assert_eq!(
        ack(&store, "w1", vec![q[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.next_delivery().await.unwrap(), Some(250));
    assert_eq!(
        ack(&store, "w1", vec![p[0].id]).await,
        CommitOutcome::Committed
    );
    let q2 = store.claim_messages("w1", 400, 5_000, 1, 1).await.unwrap();
    assert_eq!(payloads(&q2), ["q2"]);
    assert_eq!(store.next_delivery().await.unwrap(), Some(2_000));
    assert_eq!(
        ack(&store, "w1", vec![q2[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.next_delivery().await.unwrap(), Some(2_000));
    let r = store
        .claim_messages("w1", 2_000, 3_000, 1, 1)
        .await
        .unwrap();
    assert_eq!(store.next_delivery().await.unwrap(), Some(3_000));
    assert_eq!(
        ack(&store, "w1", vec![r[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.next_delivery().await.unwrap(), None);
});

queue_test!(queue_depth_and_partition_messages, |store| {
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    assert!(store.partition_messages("p").await.unwrap().is_empty());
    enqueue(
        &store,
        vec![
            message("p", "p-second", 20),
            message("q", "q1", 5),
            message("p", "p-first", 10),
            message("p", "p-third", 20),
        ],
    )
    .await;
    assert_eq!(store.queue_depth().await.unwrap(), 4);
    let p = store.partition_messages("p").await.unwrap();
    assert_eq!(payloads(&p), ["p-first", "p-second", "p-third"]);
    assert!(p.iter().all(|m| m.partition == "p" && m.attempts == 0));

    let claimed = store.claim_messages("w1", 20, 100, 1, 10).await.unwrap();
    assert_eq!(payloads(&claimed), ["q1"]);
    // Leased messages are still queued until acknowledged.
    assert_eq!(store.queue_depth().await.unwrap(), 4);
    assert_eq!(
        partition_state(&store, "q").await,
        [("q1".to_owned(), 5, 1)]
    );
    assert_eq!(
        ack(&store, "w1", vec![claimed[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.queue_depth().await.unwrap(), 3);
    assert!(store.partition_messages("q").await.unwrap().is_empty());
});

// ---------------------------------------------------------------------------------------
// Concurrency guard
// ---------------------------------------------------------------------------------------

/// A step starting execution `id` of pipeline config `cfg`, allowed `max_active` others.
fn start_step(id: &str, cfg: &str, max_active: i64) -> StepCommit {
    StepCommit {
        executions: vec![insert(pipeline_execution(
            id, "shop", cfg, "Deploy", "RUNNING", 1_000,
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
            pipeline_execution("done1", "shop", "cfg", "Deploy", "SUCCEEDED", 1),
            pipeline_execution("done2", "shop", "cfg", "Deploy", "TERMINAL", 2),
            pipeline_execution("elsewhere", "shop", "other-cfg", "Deploy", "RUNNING", 3),
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
                        status: "PAUSED".to_owned(),
                        version: 2,
                        ..e1.clone()
                    },
                    1,
                ),
                update(
                    ExecutionRow {
                        status: "SUCCEEDED".to_owned(),
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
                    status: "SUSPENDED".to_owned(),
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
                status: "RUNNING".to_owned(),
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
            "running", "shop", "cfg", "Deploy", "RUNNING", 1,
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

// ---------------------------------------------------------------------------------------
// Notifications (PostgreSQL only)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn postgres_notifies_listeners_when_a_commit_enqueues() {
    let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
    let mut listener = store.queue_listener().await.unwrap().expect("a listener");
    enqueue(&store, vec![message("p", "m", 1)]).await;
    // The bound only keeps a broken build from hanging; it is not a speed requirement.
    tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("no notification arrived")
        .unwrap();

    // A wake notifies as well (it makes messages due sooner).
    let outcome = store
        .commit_step(&StepCommit {
            wake: vec!["p".to_owned()],
            wake_at: 0,
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("no notification arrived")
        .unwrap();
    drop(listener);
    store.close().await;
}

#[tokio::test]
async fn sqlite_has_no_queue_listener() {
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    assert!(store.queue_listener().await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Many workers
// ---------------------------------------------------------------------------------------

const PARTITIONS: usize = 20;
const PER_PARTITION: usize = 10;
const WORKERS: usize = 4;

#[derive(Default)]
struct Observed {
    /// Partition → the worker processing it right now.
    busy: HashMap<String, String>,
    /// Times a worker got a partition another worker was processing.
    overlaps: Vec<String>,
    /// Partition → the sequence numbers processed, in processing order.
    processed: BTreeMap<String, Vec<usize>>,
}

/// Claims and acknowledges until the queue is empty, recording what it sees.
async fn worker(store: SqlStore, owner: String, observed: Arc<Mutex<Observed>>) {
    loop {
        // Leases far in the future: nothing is ever redelivered, so every message must
        // be processed exactly once.
        let claimed = store
            .claim_messages(&owner, 1_000, 1_000_000_000, 2, 3)
            .await
            .unwrap();
        if claimed.is_empty() {
            if store.queue_depth().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let mut partitions: Vec<&str> = claimed.iter().map(|m| m.partition.as_str()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        {
            let mut seen = observed.lock().unwrap();
            for partition in &partitions {
                if let Some(other) = seen.busy.insert((*partition).to_owned(), owner.clone()) {
                    seen.overlaps
                        .push(format!("{owner} got {partition} while {other} had it"));
                }
            }
            for m in &claimed {
                let seq = m.payload.rsplit_once(':').unwrap().1.parse().unwrap();
                seen.processed
                    .entry(m.partition.clone())
                    .or_default()
                    .push(seq);
            }
        }
        // "Work", giving the other workers time to claim what they should not.
        tokio::time::sleep(Duration::from_millis(2)).await;
        {
            // Done with the partitions before the commit: until it lands our leases keep
            // everybody else out, so a claim right after it is legitimate.
            let mut seen = observed.lock().unwrap();
            for partition in &partitions {
                seen.busy.remove(*partition);
            }
        }
        let outcome = ack(&store, &owner, claimed.iter().map(|m| m.id).collect()).await;
        assert_eq!(outcome, CommitOutcome::Committed, "{owner}");
    }
}

queue_test!(multi_thread workers_never_share_a_partition_and_process_each_message_once, |store| {
    let mut messages = Vec::new();
    for seq in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            // All due, in sequence order within each partition.
            messages.push(message(&format!("p{p}"), &format!("p{p}:{seq}"), seq as i64));
        }
    }
    enqueue(&store, messages).await;
    assert_eq!(
        store.queue_depth().await.unwrap(),
        (PARTITIONS * PER_PARTITION) as i64
    );

    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        tasks.push(tokio::spawn(worker(
            store.clone(),
            format!("w{w}"),
            observed.clone(),
        )));
    }
    // A bound against a hang, not a speed requirement.
    tokio::time::timeout(Duration::from_secs(120), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("the workers did not drain the queue");

    assert_eq!(store.queue_depth().await.unwrap(), 0);
    let observed = Arc::try_unwrap(observed)
        .ok()
        .expect("every worker has finished")
        .into_inner()
        .unwrap();
    assert!(observed.overlaps.is_empty(), "{:#?}", observed.overlaps);
    assert_eq!(observed.processed.len(), PARTITIONS);
    let in_order: Vec<usize> = (0..PER_PARTITION).collect();
    for (partition, seqs) in &observed.processed {
        assert_eq!(seqs, &in_order, "partition {partition}: once each, in order");
    }
});
