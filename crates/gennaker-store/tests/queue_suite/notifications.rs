//! Queue notifications, which exist on PostgreSQL only.

use std::time::Duration;

use super::*;

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
