//! `SealedExecutions`: secrets are encrypted in the stored row, opened on reads with the
//! same key; with another key a read of the execution is refused by name and a list
//! shows the secrets redacted.

use std::sync::Arc;

use gennaker_store::{KEY_LEN, SealedExecutions, SealingKey};

use super::*;

fn sealed(store: &SqlStore, byte: u8) -> SealedExecutions {
    SealedExecutions::new(
        Arc::new(store.clone()),
        SealingKey::from_bytes(&[byte; KEY_LEN]).unwrap(),
    )
}

queue_test!(
    secrets_are_sealed_in_the_row_and_opened_with_the_key,
    |store| {
        let document = r#"{"id":"e1","context":{"customHeaders":{"Authorization":"Bearer s3cr3t"},"url":"http://u:pa55@h/","name":"visible"}}"#;
        let row = ExecutionRow {
            document: document.to_owned(),
            ..execution("e1", "shop", 100)
        };
        let mine = sealed(&store, 1);
        let outcome = mine
            .commit_step(&StepCommit {
                executions: vec![insert(row.clone())],
                ..StepCommit::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);

        let stored = store.stored_execution_text().await.unwrap();
        let clear = gennaker_store::testing::without_sealed_values(&stored);
        assert!(
            !clear.contains("s3cr3t") && !clear.contains("pa55"),
            "{stored}"
        );
        assert!(stored.contains("visible"), "{stored}");
        assert_eq!(mine.get_execution("e1").await.unwrap().unwrap(), row);
        let listed = mine
            .list_executions(&ExecutionQuery {
                limit: 10,
                ..ExecutionQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, vec![row]);

        let theirs = sealed(&store, 2);
        let refused = theirs.get_execution("e1").await.unwrap_err().to_string();
        assert!(
            refused.contains("execution 'e1' holds secrets sealed with another key")
                && refused.contains("[secrets] key_file"),
            "{refused}"
        );
        let listed = theirs
            .list_executions(&ExecutionQuery {
                limit: 10,
                ..ExecutionQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            listed[0].document.contains("***redacted***")
                && !listed[0].document.contains("gnk-sealed:")
                && listed[0].document.contains("visible"),
            "{}",
            listed[0].document
        );
    }
);
