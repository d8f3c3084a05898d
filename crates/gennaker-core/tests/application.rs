//! Applications: Front50's JSON (both cloudProviders forms), Fiat permissions, validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::{
    Access, Application, CloudProviders, Permissions, Severity, validate_application_value,
};
use serde_json::{Value, json};

fn front50_app() -> Value {
    json!({
        "name": "checkout",
        "description": "Checkout service",
        "email": "checkout-team@example.com",
        "cloudProviders": "kubernetes,local",
        "trafficGuards": [],
        "instancePort": 80,
        "createTs": "1700000000000",
        "updateTs": "1714000000000",
        "lastModifiedBy": "alice",
        "user": "alice",
        "dataSources": {"disabled": [], "enabled": ["canaryConfigs"]},
        "permissions": {"READ": ["checkout-dev", "sre"], "WRITE": ["checkout-dev"]}
    })
}

#[test]
fn round_trips_front50_json() {
    let value = front50_app();
    let app = Application::from_value(value.clone()).unwrap();
    assert_eq!(app.name, "checkout");
    assert_eq!(app.cloud_provider_names(), ["kubernetes", "local"]);
    assert!(matches!(app.cloud_providers, Some(CloudProviders::Csv(_))));
    assert_eq!(app.to_value(), value);
    assert_eq!(
        serde_json::to_string(&app.to_value()).unwrap(),
        serde_json::to_string(&value).unwrap()
    );

    let mut listed = value;
    listed["cloudProviders"] = json!(["kubernetes", " local "]);
    let app = Application::from_value(listed.clone()).unwrap();
    assert_eq!(app.cloud_provider_names(), ["kubernetes", "local"]);
    assert_eq!(app.to_value(), listed);
}

#[test]
fn fiat_permission_semantics() {
    let app = Application::from_value(front50_app()).unwrap();
    let p = &app.permissions;
    assert_eq!(p.roles_for(Access::Read), ["checkout-dev", "sre"]);
    // No EXECUTE: the READ roles may execute (Fiat's executeFallback).
    assert_eq!(p.roles_for(Access::Execute), ["checkout-dev", "sre"]);
    assert!(p.allows(Access::Execute, &["SRE"]));
    assert!(!p.allows(Access::Write, &["sre"]));
    assert!(p.allows(Access::Write, &["checkout-dev"]));
    assert!(!p.allows(Access::Read, &["other"]));

    let open = Permissions::default();
    assert!(open.is_unrestricted());
    assert!(open.allows(Access::Write, &[] as &[&str]));

    let explicit: Permissions =
        serde_json::from_value(json!({"READ": ["a"], "EXECUTE": []})).unwrap();
    // Fiat treats an empty list like an absent one: EXECUTE falls back to READ.
    assert_eq!(explicit.roles_for(Access::Execute), ["a"]);
    assert!(explicit.allows(Access::Execute, &["a"]));
    assert_eq!(
        serde_json::to_value(&explicit).unwrap(),
        json!({"READ": ["a"], "EXECUTE": []})
    );
}

#[test]
#[rustfmt::skip]
fn validation_rules() {
    let cases: Vec<(Value, Severity, &str, &str)> = vec![
        (json!([]), Severity::Error, "$", "must be a JSON object"),
        (json!({}), Severity::Error, "$.name", "has no name"),
        (json!({"name": ""}), Severity::Error, "$.name", "name is empty"),
        (json!({"name": "check out"}), Severity::Error, "$.name", "contains ' '"),
        (json!({"name": "check/out"}), Severity::Error, "$.name", "contains '/'"),
        (json!({"name": "x".repeat(251)}), Severity::Error, "$.name", "longer than 250"),
        (json!({"name": "check-out"}), Severity::Warning, "$.name", "contains '-'"),
        (json!({"name": 5}), Severity::Error, "$.name", "must be a string"),
        (json!({"name": "a", "email": "nobody"}), Severity::Error, "$.email", "not an email address"),
        (json!({"name": "a", "email": "a@b"}), Severity::Error, "$.email", "not an email address"),
        (json!({"name": "a", "email": 3}), Severity::Error, "$.email", "must be a string"),
        (json!({"name": "a", "cloudProviders": 1}), Severity::Error, "$.cloudProviders", "comma-separated"),
        (json!({"name": "a", "cloudProviders": ["k8s", 2]}), Severity::Error, "$.cloudProviders[1]", "must be a string"),
        (json!({"name": "a", "permissions": ["READ"]}), Severity::Error, "$.permissions", "must be an object"),
        (json!({"name": "a", "permissions": {"read": ["x"]}}), Severity::Error, "$.permissions.read", "unknown permission 'read'"),
        (json!({"name": "a", "permissions": {"READ": "x"}}), Severity::Error, "$.permissions.READ", "must be a list of role names"),
        (json!({"name": "a", "permissions": {"WRITE": [""]}}), Severity::Error, "$.permissions.WRITE[0]", "non-empty string"),
    ];
    for (doc, severity, path, fragment) in cases {
        let report = validate_application_value(&doc);
        assert!(
            report.problems.iter().any(|p| p.severity == severity && p.path == path && p.message.contains(fragment)),
            "{doc}: expected {severity} at {path} with {fragment:?}, got:\n{report}"
        );
        if report.is_valid() {
            assert_eq!(Application::from_value(doc.clone()).unwrap().to_value(), doc);
        }
    }
    assert!(validate_application_value(&front50_app()).problems.is_empty());
}
