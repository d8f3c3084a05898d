//! A worker carries on with its partition: the commit that queues the partition's next
//! message leases it to the same worker, in the same transaction.

use super::*;
use gennaker_store::NextLease;

fn next(partition: &str, now: i64) -> NextLease {
    NextLease {
        partition: partition.to_owned(),
        now,
        lease_until: now + 5_000,
        limit: 64,
    }
}

queue_test!(a_commit_leases_its_partitions_next_due_message, |store| {
    enqueue(&store, vec![message("p", "first", 10)]).await;
    let held = store.claim_messages("w1", 10, 5_000, 1, 64).await.unwrap();
    assert_eq!(payloads(&held), ["first"]);

    let step = StepCommit {
        owner: "w1".to_owned(),
        acknowledged: vec![held[0].id],
        enqueue: vec![message("p", "second", 20), message("p", "later", 9_000)],
        ..StepCommit::default()
    };
    let (outcome, leased) = store
        .commit_step_and_lease(&step, &next("p", 20))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    // Only what is due now, leased like a claim would: another worker cannot take it.
    assert_eq!(payloads(&leased), ["second"]);
    assert_eq!(leased[0].attempts, 1);
    assert!(
        store
            .claim_messages("w2", 20, 5_000, 1, 64)
            .await
            .unwrap()
            .is_empty()
    );
    // Its acknowledgement frees the partition for the later message, due at 9,000.
    assert_eq!(
        ack(&store, "w1", vec![leased[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.next_delivery().await.unwrap(), Some(9_000));
    let later = store
        .claim_messages("w2", 9_000, 15_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(payloads(&later), ["later"]);
});

queue_test!(
    a_commit_leases_nothing_that_is_not_due_or_not_its_own,
    |store| {
        enqueue(&store, vec![message("p", "first", 10)]).await;
        let held = store.claim_messages("w1", 10, 5_000, 1, 64).await.unwrap();
        // Nothing due in p: the message for q is left to a claim.
        let step = StepCommit {
            owner: "w1".to_owned(),
            acknowledged: vec![held[0].id],
            enqueue: vec![message("p", "poll", 500), message("q", "other", 10)],
            ..StepCommit::default()
        };
        let (outcome, leased) = store
            .commit_step_and_lease(&step, &next("p", 20))
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
        assert!(leased.is_empty());
        let claimed = store.claim_messages("w2", 20, 5_000, 2, 64).await.unwrap();
        assert_eq!(payloads(&claimed), ["other"]);
        assert_eq!(
            partition_state(&store, "p").await,
            [("poll".to_owned(), 500, 0)]
        );
    }
);

queue_test!(a_refused_step_leases_nothing, |store| {
    enqueue(&store, vec![message("p", "first", 10)]).await;
    let held = store.claim_messages("w1", 10, 5_000, 1, 64).await.unwrap();
    // The lease was taken over (w1's expired): w1's step is stale and changes nothing.
    let taken = store
        .claim_messages("w2", 6_000, 11_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(payloads(&taken), ["first"]);
    let step = StepCommit {
        owner: "w1".to_owned(),
        acknowledged: vec![held[0].id],
        enqueue: vec![message("p", "second", 6_000)],
        ..StepCommit::default()
    };
    let (outcome, leased) = store
        .commit_step_and_lease(&step, &next("p", 6_000))
        .await
        .unwrap();
    assert!(matches!(outcome, CommitOutcome::Stale(_)), "{outcome:?}");
    assert!(leased.is_empty());
    assert_eq!(
        partition_state(&store, "p").await,
        [("first".to_owned(), 10, 2)]
    );
});

queue_test!(only_a_partition_the_step_held_is_carried_on, |store| {
    enqueue(&store, vec![message("p", "first", 10)]).await;
    let held = store.claim_messages("w1", 10, 5_000, 1, 64).await.unwrap();
    // q's message is due, but this step did not hold q: a claim takes it.
    let step = StepCommit {
        owner: "w1".to_owned(),
        acknowledged: vec![held[0].id],
        enqueue: vec![message("q", "other", 10)],
        ..StepCommit::default()
    };
    let (outcome, leased) = store
        .commit_step_and_lease(&step, &next("q", 20))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert!(leased.is_empty());
    let claimed = store.claim_messages("w2", 20, 5_000, 1, 64).await.unwrap();
    assert_eq!(payloads(&claimed), ["other"]);
    // p lost its last message and its row: nothing else is claimable.
    assert_eq!(store.next_delivery().await.unwrap(), Some(5_000));
});

// A commit goes as one batch (one multi-statement text on SQLite, one function call on
// PostgreSQL): one of more statements than sqlx streams back at once is whole, and one
// whose last check fails leaves nothing of its earlier statements.
queue_test!(
    a_step_of_many_statements_commits_whole_or_not_at_all,
    |store| {
        let first: Vec<NewMessage> = (0..120)
            .map(|i| message(&format!("p{}", i % 3), &format!("a{i}"), 10))
            .collect();
        enqueue(&store, first).await;
        let held = store.claim_messages("w1", 10, 5_000, 3, 64).await.unwrap();
        assert_eq!(held.len(), 120);
        let mut ids: Vec<i64> = held.iter().map(|m| m.id).collect();
        let step = StepCommit {
            owner: "w1".to_owned(),
            acknowledged: ids.clone(),
            enqueue: (0..120)
                .map(|i| message(&format!("p{}", i % 3), &format!("b{i}"), 20))
                .collect(),
            ..StepCommit::default()
        };
        // A message no one holds, acknowledged last: the step is stale, and none of it is
        // written.
        ids.push(i64::MAX);
        let stale = StepCommit {
            acknowledged: ids,
            ..step.clone()
        };
        let (outcome, leased) = store
            .commit_step_and_lease(&stale, &next("p1", 20))
            .await
            .unwrap();
        assert!(matches!(outcome, CommitOutcome::Stale(_)), "{outcome:?}");
        assert!(leased.is_empty());
        assert_eq!(store.queue_depth().await.unwrap(), 120);

        let (outcome, leased) = store
            .commit_step_and_lease(&step, &next("p1", 20))
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
        assert_eq!(leased.len(), 40);
        assert!(leased.iter().all(|m| m.partition == "p1"));
        assert_eq!(store.queue_depth().await.unwrap(), 120);
        // p1 is held by w1; the other two partitions' new messages are claimable.
        let others = store.claim_messages("w2", 20, 5_000, 3, 64).await.unwrap();
        assert_eq!(others.len(), 80);
        assert!(others.iter().all(|m| m.partition != "p1"));
    }
);

// A step larger than one PostgreSQL call may carry (its statements then go one by one):
// it commits and leases the same, and a stale one writes nothing.
queue_test!(a_large_step_commits_and_leases_like_a_small_one, |store| {
    enqueue(&store, vec![message("p", "a", 10)]).await;
    let held = store.claim_messages("w1", 10, 5_000, 1, 8).await.unwrap();
    assert_eq!(held.len(), 1);
    let big = "x".repeat(20 * 1024);
    let step = StepCommit {
        owner: "w1".to_owned(),
        acknowledged: vec![held[0].id],
        enqueue: vec![message("p", &big, 20), message("q", &big, 20)],
        ..StepCommit::default()
    };
    let stale = StepCommit {
        acknowledged: vec![held[0].id, i64::MAX],
        ..step.clone()
    };
    let (outcome, leased) = store
        .commit_step_and_lease(&stale, &next("p", 20))
        .await
        .unwrap();
    assert!(matches!(outcome, CommitOutcome::Stale(_)), "{outcome:?}");
    assert!(leased.is_empty());
    assert_eq!(store.queue_depth().await.unwrap(), 1);

    let (outcome, leased) = store
        .commit_step_and_lease(&step, &next("p", 20))
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].partition, "p");
    assert_eq!(leased[0].payload, big);
    assert_eq!(store.queue_depth().await.unwrap(), 2);
});
