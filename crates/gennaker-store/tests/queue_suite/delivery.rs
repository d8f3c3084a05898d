//! Waking partitions, the next delivery time and the queue's depth.

use super::*;

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
