//! Infrastructure records on SQLite and PostgreSQL alike: versions, optimistic
//! concurrency, prefix listings and deletes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_store::{ExpectedVersion, ResourceStore, StoreError};
use serde_json::json;

use gennaker_store::store_test as resource_test;

resource_test!(put_get_and_versions, |store| {
    assert!(
        store
            .get_resource("local", "serverGroup", "a")
            .await
            .unwrap()
            .is_none()
    );
    let first = store
        .put_resource(
            "local",
            "serverGroup",
            "a",
            &json!({"n": 1}),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.document, json!({"n": 1}));
    let second = store
        .put_resource(
            "local",
            "serverGroup",
            "a",
            &json!({"n": 2}),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let read = store
        .get_resource("local", "serverGroup", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.document, json!({"n": 2}));
    assert_eq!(read.version, 2);
    assert_eq!(
        (
            read.provider.as_str(),
            read.kind.as_str(),
            read.key.as_str()
        ),
        ("local", "serverGroup", "a")
    );
    // The same key under another kind or provider is another record.
    assert!(
        store
            .get_resource("local", "loadBalancer", "a")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_resource("kubernetes", "serverGroup", "a")
            .await
            .unwrap()
            .is_none()
    );
});

resource_test!(expected_versions_conflict, |store| {
    let created = store
        .put_resource("local", "lb", "x", &json!(1), ExpectedVersion::Absent)
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let again = store
        .put_resource("local", "lb", "x", &json!(2), ExpectedVersion::Absent)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");

    let updated = store
        .put_resource("local", "lb", "x", &json!(3), ExpectedVersion::Exactly(1))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    let stale = store
        .put_resource("local", "lb", "x", &json!(4), ExpectedVersion::Exactly(1))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    let missing = store
        .put_resource(
            "local",
            "lb",
            "nope",
            &json!(4),
            ExpectedVersion::Exactly(1),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::Conflict(_))),
        "{missing:?}"
    );
    // Refused writes changed nothing.
    let read = store
        .get_resource("local", "lb", "x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.document, read.version), (json!(3), 2));
    assert!(
        store
            .get_resource("local", "lb", "nope")
            .await
            .unwrap()
            .is_none()
    );
});

resource_test!(list_by_prefix_in_key_order, |store| {
    for key in ["b/2", "a/1", "a/10", "a_x", "a%y", "c"] {
        store
            .put_resource(
                "local",
                "serverGroup",
                key,
                &json!({"key": key}),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }
    store
        .put_resource(
            "local",
            "loadBalancer",
            "a/lb",
            &json!({}),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    let keys =
        |rows: Vec<gennaker_store::Resource>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
    let all = store
        .list_resources("local", "serverGroup", "")
        .await
        .unwrap();
    assert_eq!(keys(all), ["a%y", "a/1", "a/10", "a_x", "b/2", "c"]);
    let a = store
        .list_resources("local", "serverGroup", "a/")
        .await
        .unwrap();
    assert_eq!(keys(a), ["a/1", "a/10"]);
    // Wildcard characters in the prefix are literal.
    let percent = store
        .list_resources("local", "serverGroup", "a%")
        .await
        .unwrap();
    assert_eq!(keys(percent), ["a%y"]);
    let underscore = store
        .list_resources("local", "serverGroup", "a_")
        .await
        .unwrap();
    assert_eq!(keys(underscore), ["a_x"]);
    assert!(
        store
            .list_resources("local", "serverGroup", "zz")
            .await
            .unwrap()
            .is_empty()
    );
});

resource_test!(delete_is_idempotent, |store| {
    store
        .put_resource(
            "local",
            "serverGroup",
            "k",
            &json!({}),
            ExpectedVersion::Any,
        )
        .await
        .unwrap();
    assert!(
        store
            .delete_resource("local", "serverGroup", "k")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_resource("local", "serverGroup", "k")
            .await
            .unwrap()
    );
    assert!(
        store
            .get_resource("local", "serverGroup", "k")
            .await
            .unwrap()
            .is_none()
    );
    // Gone means it may be created again from scratch.
    let recreated = store
        .put_resource(
            "local",
            "serverGroup",
            "k",
            &json!({}),
            ExpectedVersion::Absent,
        )
        .await
        .unwrap();
    assert_eq!(recreated.version, 1);
});
