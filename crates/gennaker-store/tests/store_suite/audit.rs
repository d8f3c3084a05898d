//! The audit log.

use super::*;

store_test!(audit_log_pages_newest_first, |store| {
    for n in 0..5 {
        store
            .append_audit(&NewAuditEntry {
                actor: if n % 2 == 0 {
                    "alice".into()
                } else {
                    "bob".into()
                },
                action: "POST /api/v1/applications".into(),
                target: format!("application:app{n}"),
                outcome: "success".into(),
                status: 201,
                detail: json!({"n": n}),
            })
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    let page = store
        .list_audit(&AuditQuery {
            limit: 2,
            before_id: Some(all[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.detail["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
    let bob = store
        .list_audit(&AuditQuery {
            limit: 10,
            actor: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 2);
    let one = store
        .list_audit(&AuditQuery {
            limit: 10,
            target_prefix: Some("application:app3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
});
