//! Many workers draining one queue at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

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

/// A worker that behaves like the engine: each step extends its leases, then either
/// gives the messages back (every third step) or consumes them and sends the next
/// message of its partition plus one to the neighbouring partition, all in one commit.
async fn busy_worker(
    store: SqlStore,
    owner: String,
    observed: Arc<Mutex<Observed>>,
    tenant: String,
) {
    let mut steps = 0usize;
    loop {
        let claimed = store
            .claim_messages(&owner, 1_000, 1_000_000_000, 1, 4)
            .await
            .unwrap();
        if claimed.is_empty() {
            if store.queue_depth().await.unwrap() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let partition = claimed[0].partition.clone();
        if let Some(other) = observed
            .lock()
            .unwrap()
            .busy
            .insert(partition.clone(), owner.clone())
        {
            observed
                .lock()
                .unwrap()
                .overlaps
                .push(format!("{owner} got {partition} while {other} had it"));
        }
        let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        store
            .extend_leases(&owner, &ids, 2_000_000_000)
            .await
            .unwrap();
        steps += 1;
        observed.lock().unwrap().busy.remove(&partition);
        if steps.is_multiple_of(3) {
            store.release_messages(&owner, &ids, 1_000).await.unwrap();
            continue;
        }
        let mut enqueue = Vec::new();
        for m in &claimed {
            let (p, seq) = m.payload.rsplit_once(':').unwrap();
            let seq: usize = seq.parse().unwrap();
            // A partition's own chain under its name; forwarded ones under "forwarded".
            let key = if p == m.partition { p } else { "forwarded" };
            observed
                .lock()
                .unwrap()
                .processed
                .entry(key.to_owned())
                .or_default()
                .push(seq);
            // Chains run to 5 messages; forwarded ones ("x…") end where they land.
            if !p.starts_with('x') && seq < 4 {
                enqueue.push(tenant_message(
                    &tenant,
                    &m.partition,
                    &format!("{p}:{}", seq + 1),
                    10,
                ));
                let n: usize = m.partition[1..].parse().unwrap();
                let neighbour = format!("p{}", (n + 1) % PARTITIONS);
                enqueue.push(tenant_message(
                    &tenant,
                    &neighbour,
                    &format!("x{p}:{seq}"),
                    10,
                ));
            }
        }
        let outcome = store
            .commit_step(&StepCommit {
                owner: owner.clone(),
                acknowledged: ids,
                enqueue,
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed, "{owner}");
    }
}

queue_test!(multi_thread engine_like_workers_never_share_a_partition_or_deadlock, |store| {
    let messages = (0..PARTITIONS)
        .map(|p| tenant_message(&format!("user{}", p % 3), &format!("p{p}"), &format!("p{p}:0"), 0))
        .collect();
    enqueue(&store, messages).await;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS * 2 {
        tasks.push(tokio::spawn(busy_worker(
            store.clone(),
            format!("w{w}"),
            observed.clone(),
            format!("user{}", w % 3),
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
    assert_eq!(store.next_delivery().await.unwrap(), None);
    let observed = Arc::try_unwrap(observed)
        .ok()
        .expect("every worker has finished")
        .into_inner()
        .unwrap();
    assert!(observed.overlaps.is_empty(), "{:#?}", observed.overlaps);
    // Each partition's own chain ran 0..=4, once each and in order, and each of its
    // first four steps forwarded one message to the neighbour.
    let mut processed = observed.processed;
    let forwarded = processed.remove("forwarded").unwrap_or_default();
    assert_eq!(forwarded.len(), PARTITIONS * 4);
    assert_eq!(processed.len(), PARTITIONS);
    for (partition, seqs) in &processed {
        assert_eq!(seqs, &[0, 1, 2, 3, 4], "partition {partition}: once each, in order");
    }
});
