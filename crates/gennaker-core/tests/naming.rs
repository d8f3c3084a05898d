//! Frigga-compatible monikers: parsing, building, sequence wrap, invalid characters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::naming::{
    Moniker, NamePart, NamingError, cluster_name, next_sequence, parse_name, server_group_name,
    validate_name_part,
};

/// Name, then its expected app, stack, detail and sequence.
type NameCase = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<u32>,
);

#[test]
#[rustfmt::skip]
fn parses_server_group_and_cluster_names() {
    let cases: [NameCase; 9] = [
        ("app", "app", None, None, None),
        ("app-v000", "app", None, None, Some(0)),
        ("app-prod-v007", "app", Some("prod"), None, Some(7)),
        ("app-prod-canary-v123", "app", Some("prod"), Some("canary"), Some(123)),
        ("app--canary-v001", "app", None, Some("canary"), Some(1)),
        ("app-prod-a-b-c", "app", Some("prod"), Some("a-b-c"), None),
        ("app-prod-v12", "app", Some("prod"), Some("v12"), None),
        ("app-prod-v1000", "app", Some("prod"), None, Some(1000)),
        ("my.app_1-stack_2", "my.app_1", Some("stack_2"), None, None),
    ];
    for (name, app, stack, detail, sequence) in cases {
        let m = parse_name(name);
        assert_eq!(m.app, app, "{name}");
        assert_eq!(m.stack.as_deref(), stack, "{name}");
        assert_eq!(m.detail.as_deref(), detail, "{name}");
        assert_eq!(m.sequence, sequence, "{name}");
    }
}

#[test]
fn builds_names_that_parse_back() {
    let m = Moniker::new("app", Some("prod"), Some("canary-eu"))
        .unwrap()
        .with_sequence(7);
    assert_eq!(m.cluster(), "app-prod-canary-eu");
    assert_eq!(m.name(), "app-prod-canary-eu-v007");
    assert_eq!(m.to_string(), "app-prod-canary-eu-v007");
    assert_eq!(parse_name(&m.name()), m);

    let no_stack = Moniker::new("app", Some(""), Some("canary")).unwrap();
    assert_eq!(no_stack.cluster(), "app--canary");
    assert_eq!(parse_name("app--canary"), no_stack);

    assert_eq!(cluster_name("app", None, None), "app");
    assert_eq!(server_group_name("app-prod", 42), "app-prod-v042");
}

#[test]
fn sequences_wrap_after_999() {
    assert_eq!(next_sequence(None), 0);
    assert_eq!(next_sequence(Some(0)), 1);
    assert_eq!(next_sequence(Some(41)), 42);
    assert_eq!(next_sequence(Some(998)), 999);
    assert_eq!(next_sequence(Some(999)), 0);
    let m = parse_name("app-prod-v999");
    assert_eq!(m.next().name(), "app-prod-v000");
    assert_eq!(parse_name("app-prod").next().name(), "app-prod-v000");
    assert_eq!(parse_name("app-prod-v005").next().name(), "app-prod-v006");
}

#[test]
fn rejects_characters_frigga_cannot_parse() {
    assert_eq!(Moniker::new("", None, None), Err(NamingError::EmptyApp));
    let err = Moniker::new("app", Some("blue-green"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stack 'blue-green' contains '-'; only letters, digits, '.' and '_' are allowed"
    );
    let err = Moniker::new("my app", None, None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("application 'my app' contains ' '"),
        "{err}"
    );
    let err = Moniker::new("app", None, Some("a/b")).unwrap_err();
    assert!(err.to_string().contains("and '-' are allowed"), "{err}");
    assert!(validate_name_part(NamePart::Detail, "canary-eu.1_x").is_ok());
    assert!(validate_name_part(NamePart::Stack, "prod.eu_1").is_ok());
    assert!(validate_name_part(NamePart::App, "app-x").is_err());
    assert!(validate_name_part(NamePart::Stack, "é").is_err());
}

#[test]
fn monikers_serialize_like_kork() {
    let m = parse_name("app-prod-v003");
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        serde_json::json!({"app": "app", "stack": "prod", "sequence": 3})
    );
}
