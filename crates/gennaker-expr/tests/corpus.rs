//! Runs every case of `tests/corpus/*.json` and reports all failures at once.
//!
//! A file holds `{description, context?, cases: [...]}`; a case holds `template`, an
//! optional `context` (a JSON value, or `"@name"` for `tests/corpus/contexts/name.json`),
//! and either `expect` (the value) or `error` (`kind`, and optionally a `message`
//! fragment, a 1-based `line` and `column`, and a `hint` fragment). `warning` asserts a fragment
//! of some warning; `expression: true` parses the text as a bare expression.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

use gennaker_expr::{
    CallContext, Expression, FunctionError, FunctionRegistry, FunctionResult, Limits, Template,
};
use serde_json::{Value, json};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn resolve_context(value: Option<&Value>) -> Value {
    match value {
        None => json!({}),
        Some(Value::String(name)) if name.starts_with('@') => {
            let path = corpus_dir()
                .join("contexts")
                .join(format!("{}.json", &name[1..]));
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
        }
        Some(other) => other.clone(),
    }
}

fn stages<'a>(ctx: &CallContext<'a>) -> &'a [Value] {
    ctx.root()["execution"]["stages"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn name_arg(args: &[Value], ctx: &CallContext<'_>) -> Result<String, FunctionError> {
    match args {
        [Value::String(s)] => Ok(s.clone()),
        _ => Err(FunctionError::new(format!(
            "#{} takes a stage name",
            ctx.name()
        ))),
    }
}

fn find_stage<'a>(args: &[Value], ctx: &CallContext<'a>) -> Result<&'a Value, FunctionError> {
    let name = name_arg(args, ctx)?;
    let all = stages(ctx);
    if let Some(stage) = all.iter().find(|s| s["name"] == name.as_str()) {
        return Ok(stage);
    }
    let names: Vec<&str> = all.iter().filter_map(|s| s["name"].as_str()).collect();
    let close = names
        .iter()
        .find(|n| strsim_like(n, &name))
        .map(|n| format!("did you mean '{n}'?"));
    Err(FunctionError::new(format!("stage '{name}' not found"))
        .with_hint(close.unwrap_or_else(|| format!("stages: {}", names.join(", ")))))
}

/// A tiny closeness test so the harness needs no extra dependency.
fn strsim_like(a: &str, b: &str) -> bool {
    a.len().abs_diff(b.len()) <= 1 && (a.starts_with(b) || b.starts_with(a))
}

fn judgment<'a>(args: &[Value], ctx: &CallContext<'a>) -> FunctionResult<'a> {
    let stage = find_stage(args, ctx)?;
    Ok(Cow::Borrowed(&stage["context"]["judgmentInput"]))
}

/// The context-bound functions an engine registers, implemented over the context the
/// way Gennaker's engine will: closures reading the root (borrowing from it), or
/// capturing state.
fn registry() -> FunctionRegistry {
    let mut registry = FunctionRegistry::default();
    registry
        .register("stage", |args, ctx| {
            find_stage(args, ctx).map(Cow::Borrowed)
        })
        .register("stageExists", |args, ctx| {
            let name = name_arg(args, ctx)?;
            let found = stages(ctx).iter().any(|s| s["name"] == name.as_str());
            Ok(Cow::Owned(Value::Bool(found)))
        })
        .register("stageByRefId", |args, ctx| {
            let id = name_arg(args, ctx)?;
            stages(ctx)
                .iter()
                .find(|s| s["refId"] == id.as_str())
                .map(Cow::Borrowed)
                .ok_or_else(|| FunctionError::new(format!("no stage with refId '{id}'")))
        })
        .register("currentStage", |_, ctx| {
            let id = &ctx.root()["stageId"];
            stages(ctx)
                .iter()
                .find(|s| &s["id"] == id)
                .map(Cow::Borrowed)
                .ok_or_else(|| FunctionError::new("no current stage"))
        })
        .register("pipelineId", |args, ctx| {
            let name = name_arg(args, ctx)?;
            let execution = &ctx.root()["execution"];
            if execution["name"] == name.as_str() {
                Ok(Cow::Borrowed(&execution["pipelineConfigId"]))
            } else {
                Err(FunctionError::new(format!("pipeline '{name}' not found")))
            }
        })
        .register("triggerResolvedArtifact", |args, ctx| {
            let name = name_arg(args, ctx)?;
            ctx.root()["trigger"]["resolvedExpectedArtifacts"]
                .as_array()
                .and_then(|a| a.iter().find(|e| e["displayName"] == name.as_str()))
                .map(|e| Cow::Borrowed(&e["boundArtifact"]))
                .ok_or_else(|| FunctionError::new(format!("no resolved artifact '{name}'")))
        })
        .register("judgment", judgment)
        .register("judgement", judgment)
        .set_variable("region", json!("us-east-1"));
    registry
}

fn run_case(
    case: &Value,
    file_context: Option<&Value>,
    functions: &FunctionRegistry,
) -> Result<(), String> {
    let template = case["template"].as_str().ok_or("case has no template")?;
    let context = resolve_context(case.get("context").or(file_context));
    let limits = Limits::default();
    let result = if case["expression"] == json!(true) {
        Expression::parse(template, &limits).and_then(|e| e.evaluate(&context, functions, &limits))
    } else {
        Template::parse(template, &limits).and_then(|t| t.evaluate(&context, functions, &limits))
    };
    match (result, case.get("expect"), case.get("error")) {
        (Ok(evaluation), Some(expected), _) => {
            if &evaluation.value != expected {
                return Err(format!("expected {expected}, got {}", evaluation.value));
            }
            if let Some(fragment) = case["warning"].as_str() {
                let found = evaluation
                    .warnings
                    .iter()
                    .any(|w| w.describe().contains(fragment));
                if !found {
                    return Err(format!(
                        "expected a warning containing {fragment:?}, got {:?}",
                        evaluation
                            .warnings
                            .iter()
                            .map(|w| w.describe())
                            .collect::<Vec<_>>()
                    ));
                }
            }
            Ok(())
        }
        (Ok(evaluation), None, _) => Err(format!("expected an error, got {}", evaluation.value)),
        (Err(error), _, Some(expected)) => {
            let mut problems = Vec::new();
            if expected["kind"].as_str() != Some(error.kind.as_str()) {
                problems.push(format!(
                    "kind {} (expected {})",
                    error.kind, expected["kind"]
                ));
            }
            let message = expected["message"].as_str();
            if message.is_some_and(|f| !error.message.contains(f)) {
                problems.push(format!("message lacks {message:?}"));
            }
            let column = expected["column"].as_u64();
            if column.is_some_and(|c| error.column as u64 != c) {
                problems.push(format!("column {} (expected {column:?})", error.column));
            }
            let line = expected["line"].as_u64();
            if line.is_some_and(|l| error.line as u64 != l) {
                problems.push(format!("line {} (expected {line:?})", error.line));
            }
            let hint = expected["hint"].as_str();
            if hint.is_some_and(|f| !error.hint.as_deref().unwrap_or("").contains(f)) {
                problems.push(format!("hint lacks {hint:?}"));
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(format!("{}\n    error was: {error}", problems.join("; ")))
            }
        }
        (Err(error), _, None) => Err(format!("unexpected error: {error}")),
    }
}

#[test]
fn corpus() {
    let functions = registry();
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    for path in &files {
        let data: Value = serde_json::from_str(&fs::read_to_string(path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for (i, case) in data["cases"].as_array().unwrap().iter().enumerate() {
            total += 1;
            if let Err(why) = run_case(case, data.get("context"), &functions) {
                failures.push(format!("{file}#{i} {}\n    {why}", case["template"]));
            }
        }
    }
    assert!(total >= 250, "the corpus has only {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
