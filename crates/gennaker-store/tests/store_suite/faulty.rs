//! [`FaultyStore`]: every call reaches the real store unless the faults refuse it.

use std::sync::Arc;

use gennaker_store::testing::{FaultyStore, StoreFaults};

use super::*;

/// Refuses audit writes and lets everything else through.
#[derive(Debug)]
struct RefuseAudit;

#[async_trait::async_trait]
impl StoreFaults for RefuseAudit {
    async fn before(&self, method: &'static str) -> gennaker_store::Result<()> {
        match method {
            "append_audit" => Err(StoreError::Conflict("injected".to_owned())),
            _ => Ok(()),
        }
    }
}

store_test!(faulty_store_passes_calls_on_unless_refused, |store| {
    let faulty = FaultyStore::new(store.clone(), Arc::new(RefuseAudit));
    assert_eq!(faulty.backend(), store.backend());
    faulty
        .create_application("shop", &json!({ "name": "shop" }), "alice")
        .await
        .unwrap();
    let stored = store.get_application("shop").await.unwrap().unwrap();
    assert_eq!(stored.updated_by, "alice");
    assert_eq!(faulty.list_applications().await.unwrap(), vec![stored]);

    let refused = faulty
        .append_audit(&NewAuditEntry {
            actor: "alice".into(),
            action: "POST /api/v1/applications".into(),
            target: "application:shop".into(),
            outcome: "success".into(),
            status: 201,
            detail: json!({}),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(message) if message == "injected"),
        "{refused:?}"
    );
    let audit = store
        .list_audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.is_empty(), "{audit:?}");
});
