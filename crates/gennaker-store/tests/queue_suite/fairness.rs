//! Tenants (the users who started executions) take turns: one user's backlog cannot
//! hold up another user's work, and a huge queue does not slow a claim down.

use super::*;

queue_test!(a_flooding_tenant_does_not_delay_another, |store| {
    // Alice has 500 executions queued, all due long before Bob's one.
    let flood: Vec<NewMessage> = (0..500)
        .map(|i| tenant_message("alice", &format!("a{i:03}"), "start", i))
        .collect();
    enqueue(&store, flood).await;
    let first = store
        .claim_messages("w1", 1_000, 9_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(first[0].partition, "a000");

    enqueue(&store, vec![tenant_message("bob", "b", "start", 999)]).await;
    // Bob has never been served: his partition is next, though Alice's 499 are older.
    let second = store
        .claim_messages("w2", 1_000, 9_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(second[0].partition, "b");
    // Then Alice again, in her own order.
    let third = store
        .claim_messages("w3", 1_000, 9_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(third[0].partition, "a001");
});

queue_test!(tenants_alternate_while_both_have_work, |store| {
    let mut messages: Vec<NewMessage> = (0..4)
        .map(|i| tenant_message("alice", &format!("a{i}"), "start", i))
        .collect();
    messages.extend((0..2).map(|i| tenant_message("bob", &format!("b{i}"), "start", 100 + i)));
    enqueue(&store, messages).await;
    let mut order = Vec::new();
    for worker in 0..6 {
        let claimed = store
            .claim_messages(&format!("w{worker}"), 1_000, 9_000, 1, 64)
            .await
            .unwrap();
        order.push(claimed[0].partition.clone());
    }
    // Ties between never-served tenants go by name; then each waits its turn.
    assert_eq!(order, ["a0", "b0", "a1", "b1", "a2", "a3"]);
    assert!(
        store
            .claim_messages("w9", 1_000, 9_000, 1, 64)
            .await
            .unwrap()
            .is_empty()
    );
});

queue_test!(
    a_claim_for_several_partitions_takes_one_per_tenant_first,
    |store| {
        let mut messages: Vec<NewMessage> = (0..3)
            .map(|i| tenant_message("alice", &format!("a{i}"), &format!("a{i}"), i))
            .collect();
        messages.push(tenant_message("bob", "b0", "b0", 50));
        messages.push(tenant_message("carol", "c0", "c0", 60));
        enqueue(&store, messages).await;
        let claimed = store
            .claim_messages("w1", 1_000, 9_000, 3, 64)
            .await
            .unwrap();
        assert_eq!(payloads(&claimed), ["a0", "b0", "c0"]);
        // Only Alice has work left: the claim fills up from her.
        let claimed = store
            .claim_messages("w2", 1_000, 9_000, 3, 64)
            .await
            .unwrap();
        assert_eq!(payloads(&claimed), ["a1", "a2"]);
    }
);

queue_test!(a_partition_keeps_the_tenant_that_created_it, |store| {
    // Later messages of a partition (a child pipeline's messages sent by its parent,
    // an operator's cancel) do not move the partition to another tenant.
    enqueue(&store, vec![tenant_message("alice", "e1", "start", 1)]).await;
    enqueue(&store, vec![tenant_message("mallory", "e1", "cancel", 2)]).await;
    enqueue(&store, vec![tenant_message("bob", "e2", "start", 3)]).await;
    let first = store.claim_messages("w1", 10, 100, 1, 64).await.unwrap();
    assert_eq!(payloads(&first), ["start", "cancel"]);
    let second = store.claim_messages("w2", 10, 100, 1, 64).await.unwrap();
    assert_eq!(second[0].partition, "e2");
    // Mallory never had work of her own, so nothing is claimed for her.
    assert!(
        store
            .claim_messages("w3", 10, 100, 1, 64)
            .await
            .unwrap()
            .is_empty()
    );
});

queue_test!(an_emptied_partition_can_start_again, |store| {
    enqueue(&store, vec![tenant_message("alice", "e1", "first", 1)]).await;
    let first = store.claim_messages("w1", 10, 100, 1, 64).await.unwrap();
    assert_eq!(
        ack(&store, "w1", vec![first[0].id]).await,
        CommitOutcome::Committed
    );
    assert_eq!(store.next_delivery().await.unwrap(), None);
    // The partition row went with its last message; a new message brings it back.
    enqueue(&store, vec![tenant_message("alice", "e1", "second", 20)]).await;
    assert_eq!(store.next_delivery().await.unwrap(), Some(20));
    let second = store.claim_messages("w1", 20, 100, 1, 64).await.unwrap();
    assert_eq!(payloads(&second), ["second"]);
    assert_eq!(second[0].attempts, 1);
});

queue_test!(a_huge_future_backlog_leaves_claims_correct, |store| {
    // 100,000 messages due far in the future, over 1,000 partitions of one tenant, in
    // steps of 5,000 (one transaction each, as a flood of submissions would be).
    for chunk in 0..20 {
        let messages: Vec<NewMessage> = (0..5_000)
            .map(|i| {
                let n = chunk * 5_000 + i;
                tenant_message(
                    "flood",
                    &format!("f{:04}", n % 1_000),
                    "later",
                    1_000_000 + n,
                )
            })
            .collect();
        enqueue(&store, messages).await;
    }
    assert_eq!(store.queue_depth().await.unwrap(), 100_000);
    assert_eq!(store.next_delivery().await.unwrap(), Some(1_000_000));
    assert!(
        store
            .claim_messages("w1", 500, 900, 4, 64)
            .await
            .unwrap()
            .is_empty()
    );

    enqueue(&store, vec![tenant_message("bob", "now", "due", 100)]).await;
    let claimed = store.claim_messages("w1", 500, 900, 4, 64).await.unwrap();
    assert_eq!(payloads(&claimed), ["due"]);
    assert_eq!(store.next_delivery().await.unwrap(), Some(900));
    // When the flood is due, a claim takes its oldest partition's first 64 messages.
    let flood = store
        .claim_messages("w1", 2_000_000, 3_000_000, 1, 64)
        .await
        .unwrap();
    assert_eq!(flood.len(), 64);
    assert!(flood.iter().all(|m| m.partition == "f0000"));
    assert_eq!(flood[0].deliver_at, 1_000_000);
    assert_eq!(flood[1].deliver_at, 1_001_000);
});
