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
async fn postgres_sends_a_steps_notices_when_it_commits_and_only_then() {
    let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
    let mut listener = store.queue_listener().await.unwrap().expect("a listener");
    let too_long = "x".repeat(gennaker_store::MAX_NOTICE_BYTES + 1);
    // A step that does not commit (a stale lease) announces nothing.
    let stale = store
        .commit_step(&StepCommit {
            owner: "w1".to_owned(),
            acknowledged: vec![123_456],
            notices: vec!["never".to_owned()],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert!(matches!(stale, CommitOutcome::Stale(_)), "{stale:?}");
    let outcome = store
        .commit_step(&StepCommit {
            notices: vec!["first".to_owned(), too_long, "second".to_owned()],
            ..StepCommit::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("no notification arrived")
            .unwrap();
        heard.push(notification);
    }
    assert_eq!(
        heard,
        [
            gennaker_store::Notification::Notice("first".to_owned()),
            gennaker_store::Notification::Notice("second".to_owned())
        ],
        "in order; the stale step's and the over-long one are not sent"
    );
    drop(listener);
    store.close().await;
}

#[tokio::test]
async fn a_listener_hears_that_its_store_closed() {
    let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
    let mut listener = store.queue_listener().await.unwrap().expect("a listener");
    let closing = tokio::spawn({
        let store = store.clone();
        async move { store.close().await }
    });
    // Bounded against a hang: the close waits for the listener's connection.
    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("the listener heard nothing")
        .unwrap();
    assert_eq!(heard, gennaker_store::Notification::Closed);
    drop(listener);
    tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .expect("the store did not close")
        .unwrap();
}

#[tokio::test]
async fn sqlite_has_no_queue_listener() {
    let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    assert!(store.queue_listener().await.unwrap().is_none());
}
