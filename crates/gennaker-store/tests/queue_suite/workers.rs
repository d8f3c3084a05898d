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
