//! Property tests over parse + evaluate, and a replay of checked-in nasty inputs.
//!
//! cargo-fuzz needs a nightly toolchain (sanitizers), which this project does not use;
//! these run in every `cargo test` instead: arbitrary text, token soup, and
//! expressions generated from the grammar must never panic and always finish within
//! the limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use gennaker_expr::{
    Expression, FunctionRegistry, KnownFunctions, Limits, Template, check_templates,
    transform_value,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Generous for a debug build on a busy shared machine; a hang would not finish.
const QUICK: Duration = Duration::from_secs(20);

static CONTEXT: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/contexts/execution.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
});

static FUNCTIONS: LazyLock<FunctionRegistry> = LazyLock::new(|| {
    let mut registry = FunctionRegistry::default();
    registry
        .register("stage", |args, ctx| {
            let name = args.first().cloned().unwrap_or(Value::Null);
            Ok(ctx.root()["execution"]["stages"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == name))
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed))
        })
        .set_variable("region", json!("us-east-1"));
    registry
});

fn small_limits() -> Limits {
    Limits {
        max_steps: 20_000,
        ..Limits::default()
    }
}

/// Parses and evaluates `text` both ways, checking errors are well formed.
fn exercise(text: &str, limits: &Limits) {
    let started = Instant::now();
    match Template::parse(text, limits) {
        Ok(template) => {
            let _ = template.function_calls();
            let _ = template.summary_key();
            match template.evaluate(&CONTEXT, &FUNCTIONS, limits) {
                Ok(evaluation) => {
                    for warning in &evaluation.warnings {
                        assert!(warning.offset <= text.len());
                    }
                }
                Err(error) => check_error(text, &error),
            }
        }
        Err(error) => check_error(text, &error),
    }
    if let Err(error) =
        Expression::parse(text, limits).and_then(|e| e.evaluate(&CONTEXT, &FUNCTIONS, limits))
    {
        check_error(text, &error);
    }
    let _ = check_templates(&json!({ "s": text, text: 1 }), &KnownFunctions::spinnaker());
    let _ = transform_value(&json!([text]), &CONTEXT, &FUNCTIONS, limits);
    assert!(
        started.elapsed() < QUICK,
        "{text:.100} took {:?}",
        started.elapsed()
    );
}

fn check_error(text: &str, error: &gennaker_expr::ExprError) {
    assert_eq!(error.expression, text);
    assert!(error.offset <= text.len(), "{error:?}");
    assert!(text.is_char_boundary(error.offset));
    assert!(error.line >= 1 && error.column >= 1);
    assert!(!error.message.is_empty());
    let _ = error.to_string();
    let _ = serde_json::to_string(error).unwrap();
    let _ = error.summary_entry("$.x", 0);
}

const TOKENS: &[&str] = &[
    "${",
    "}",
    "{",
    "[",
    "]",
    "(",
    ")",
    "'",
    "\"",
    "'a'",
    "\"b\"",
    ".",
    "?.",
    ".?[",
    ".![",
    ".^[",
    ".$[",
    "#this",
    "#root",
    "#stage(",
    "#toJson(",
    "#region",
    "#nope(",
    "trigger",
    "tag",
    "parameters",
    "execution",
    "stages",
    "name",
    "env",
    "1",
    "0",
    "-1",
    "2.5",
    "1e3",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "!",
    "?",
    ":",
    "?:",
    ",",
    " ",
    "matches",
    "'.*'",
    "true",
    "null",
    "size()",
    "length()",
    "substring(",
    "split(','",
    "toUpperCase()",
    "T(",
    "new ",
    "@",
    "=",
    "é",
    "\n",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

const NAMES: &[&str] = &[
    "trigger",
    "parameters",
    "execution",
    "stages",
    "tag",
    "env",
    "name",
    "type",
    "context",
    "artifacts",
    "key",
    "value",
    "missing",
];
const METHODS: &[(&str, usize)] = &[
    ("toUpperCase", 0),
    ("toLowerCase", 0),
    ("length", 0),
    ("size", 0),
    ("isEmpty", 0),
    ("trim", 0),
    ("toString", 0),
    ("keySet", 0),
    ("values", 0),
    ("contains", 1),
    ("startsWith", 1),
    ("substring", 1),
    ("substring", 2),
    ("indexOf", 1),
    ("split", 1),
    ("replace", 2),
    ("replaceAll", 2),
    ("get", 1),
    ("containsKey", 1),
    ("equals", 1),
    ("matches", 1),
    ("concat", 1),
    ("charAt", 1),
];
const OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or", "&&", "||", "matches",
    "eq", "div",
];

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| format!("({i})")),
        (-1000.0f64..1000.0).prop_map(|f| format!("({f:?})")),
        "[a-z ,.*]{0,6}".prop_map(|s| format!("'{s}'")),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("#this".to_owned()),
        Just("#root".to_owned()),
        Just("#region".to_owned()),
        prop::sample::select(NAMES).prop_map(str::to_owned),
    ]
}

/// Expressions generated from the grammar; every one must parse.
fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(NAMES)).prop_map(|(a, n)| format!("({a}).{n}")),
            (inner.clone(), prop::sample::select(NAMES)).prop_map(|(a, n)| format!("({a})?.{n}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a})[{b}]")),
            (
                inner.clone(),
                inner.clone(),
                prop::sample::select(&[".?[", ".![", ".^[", ".$["][..])
            )
                .prop_map(|(a, b, s)| format!("({a}){s}{b}]")),
            (inner.clone(), prop::sample::select(OPS), inner.clone())
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a}) ? ({b}) : ({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) ?: ({b})")),
            (
                inner.clone(),
                prop::sample::select(METHODS),
                prop::collection::vec(inner.clone(), 2)
            )
                .prop_map(|(a, (m, n), args)| format!("({a}).{m}({})", args[..n].join(", "))),
            (
                prop::sample::select(
                    &[
                        "toJson",
                        "readJson",
                        "toInt",
                        "alphanumerical",
                        "stage",
                        "toBoolean"
                    ][..]
                ),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("#{f}({a})")),
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("{{{}}}", v.join(", "))),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{{'k': {a}, v: {b}}}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text, &small_limits());
        exercise(&format!("${{{text}}}"), &small_limits());
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        exercise(&text, &small_limits());
        exercise(&format!("${{{text}}}"), &small_limits());
    }

    #[test]
    fn generated_expressions_parse_and_evaluate_within_limits(expr in expression()) {
        let limits = small_limits();
        let text = format!("${{{expr}}}");
        let template = Template::parse(&text, &limits);
        prop_assert!(template.is_ok(), "{text}: {}", template.unwrap_err());
        exercise(&text, &limits);
        let once = template.as_ref().unwrap().evaluate(&CONTEXT, &FUNCTIONS, &limits);
        let twice = template.unwrap().evaluate(&CONTEXT, &FUNCTIONS, &limits);
        prop_assert_eq!(once, twice);
    }
}

#[test]
fn nasty_inputs_replay() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nasty.json");
    let inputs: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(inputs.len() > 100);
    for text in &inputs {
        exercise(text, &Limits::default());
    }
}
