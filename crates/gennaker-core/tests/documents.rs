//! JSON and YAML syntax: errors carry the right line and column; formats are detected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::{DocumentFormat, detect_format, parse_document, to_yaml_string};
use serde_json::json;

#[test]
#[rustfmt::skip]
fn json_syntax_errors_point_at_the_offending_character() {
    let cases = [
        ("{\"a\": 1,\n  \"b\": }", 2, 8, "expected value"),
        ("{\n  \"stages\": [\n    {\"refId\": \"1\",}\n  ]\n}", 3, 19, "trailing comma"),
        ("{\"a\": 1}\n{\"b\": 2}", 2, 1, "trailing characters"),
        ("{\"name\": \"unterminated\n}", 1, 23, "control character"),
        ("", 1, 1, "EOF while parsing"),
        ("{\"a\" 1}", 1, 6, "expected `:`"),
    ];
    for (text, line, column, fragment) in cases {
        let err = parse_document(text, DocumentFormat::Json).unwrap_err();
        assert_eq!((err.line, err.column), (line, column), "{text:?}: {err}");
        assert!(err.message.contains(fragment), "{text:?}: {err}");
        assert!(!err.message.contains(" at line "), "position repeated in {err}");
        assert_eq!(err.to_string(), format!("line {line}, column {column}: {}", err.message));
    }
}

#[test]
#[rustfmt::skip]
fn yaml_syntax_errors_point_at_the_offending_line() {
    let cases = [
        ("application: shop\nname: x\n  stages: []\n", 3, 9, "mapping values are not allowed"),
        ("application: shop\nstages: [1, 2\nname: x\n", 3, 5, ""),
        ("a: &x 1\nb: *y\n", 2, 4, "unknown anchor"),
        ("name: a\nname: b\n", 2, 1, "duplicate mapping key"),
        ("a: 1\n---\nb: 2\n", 2, 1, "more than one YAML document"),
        ("   \n", 1, 1, "empty"),
        ("key: \"open\n", 2, 1, ""),
    ];
    for (text, line, column, fragment) in cases {
        let err = parse_document(text, DocumentFormat::Yaml).unwrap_err();
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert_eq!(err.column, column, "{text:?}: {err}");
        assert!(err.message.contains(fragment), "{text:?}: {err}");
        assert!(!err.message.contains("DuplicateKeyPolicy"), "{err}");
    }
}

#[test]
fn yaml_budget_stops_billion_laughs_and_deep_nesting() {
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for name in 'b'..='k' {
        laughs.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        prev = name;
    }
    let err = parse_document(&laughs, DocumentFormat::Yaml).unwrap_err();
    assert!(
        err.message.contains("too large") || err.message.contains("aliases"),
        "{err}"
    );

    let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
    let err = parse_document(&deep, DocumentFormat::Yaml).unwrap_err();
    assert!(err.message.contains("nested"), "{err}");
    assert!(parse_document(&deep, DocumentFormat::Json).is_err());
}

#[test]
fn yaml_reads_the_same_model_as_json() {
    let yaml = r#"
application: shop
name: Deploy
limitConcurrent: true
stages:
  - refId: 1
    type: wait
    waitTime: 30
    requisiteStageRefIds: []
  - refId: "2"
    type: webhook
    url: https://hooks.example.com/x
    requisiteStageRefIds: [1]
    payload:
      text: |
        multi
        line
"#;
    let value = parse_document(yaml, DocumentFormat::Yaml).unwrap();
    assert_eq!(
        value,
        json!({
            "application": "shop", "name": "Deploy", "limitConcurrent": true,
            "stages": [
                {"refId": 1, "type": "wait", "waitTime": 30, "requisiteStageRefIds": []},
                {"refId": "2", "type": "webhook", "url": "https://hooks.example.com/x",
                 "requisiteStageRefIds": [1], "payload": {"text": "multi\nline\n"}}
            ]
        })
    );
}

#[test]
fn yaml_writer_quotes_what_would_change_type() {
    let value = json!({"a": "true", "b": "1.0", "c": "null", "d": "", "e": "yes", "f": "~",
        "g": "0x10", "h": "- x", "i": "#x", "j": "${ trigger.tag }", "k": [], "l": {}, "m": 1.5,
        "n": -3, "o": null, "p": "a: b", "q": "on", "r": "2024-01-01", "s": " padded "});
    let yaml = to_yaml_string(&value).unwrap();
    assert_eq!(
        parse_document(&yaml, DocumentFormat::Yaml).unwrap(),
        value,
        "{yaml}"
    );
}

#[test]
fn detects_formats() {
    assert_eq!(detect_format("p.json", "a: 1"), DocumentFormat::Json);
    assert_eq!(detect_format("p.YML", "{}"), DocumentFormat::Yaml);
    assert_eq!(detect_format("p.yaml", "{}"), DocumentFormat::Yaml);
    assert_eq!(detect_format("-", "  \n {\"a\": 1}"), DocumentFormat::Json);
    assert_eq!(detect_format("", "[1]"), DocumentFormat::Json);
    assert_eq!(
        detect_format("pipeline", "application: x"),
        DocumentFormat::Yaml
    );
    assert_eq!(detect_format("x", "\u{feff}{}"), DocumentFormat::Json);
}
