//! Claiming messages: leases, partitions kept to one worker, acknowledgement and release.

use super::*;

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
                        status: ExecutionStatus::Running,
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
