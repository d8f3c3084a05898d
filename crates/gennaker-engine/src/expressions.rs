//! Evaluating a stage's expressions against its execution, with the context-bound
//! helpers (`#stage`, `#judgment`, `#currentStage`, …) Spinnaker pipelines use.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gennaker_expr::{
    CallContext, Evaluation, ExprError, Expression, FunctionError, FunctionRegistry,
    FunctionResult, Limits, Template, Transformed, transform_value,
};
use serde_json::{Map, Value};

use gennaker_core::execution::{Execution, StageExecution};

/// The expression language as the engine uses it: the pure helpers plus the
/// execution-bound ones, under one set of limits.
#[derive(Debug, Clone)]
pub struct ExpressionSupport {
    functions: FunctionRegistry,
    limits: Limits,
}

impl Default for ExpressionSupport {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Pipeline names → ids of the execution's application, for `#pipelineId`; the engine
/// loads them only when a stage uses the helper.
pub type PipelineIds = BTreeMap<String, String>;

impl ExpressionSupport {
    /// The helpers, bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        let mut functions = FunctionRegistry::default();
        functions
            .register("stage", |args, ctx| {
                find_stage(ctx, args, "name").map(Cow::Borrowed)
            })
            .register("stageByRefId", |args, ctx| {
                find_stage(ctx, args, "refId").map(Cow::Borrowed)
            })
            .register("stageExists", |args, ctx| {
                Ok(Cow::Owned(Value::Bool(
                    find_stage(ctx, args, "name").is_ok(),
                )))
            })
            .register("judgment", judgment)
            .register("judgement", judgment)
            .register("currentStage", |_args, ctx| {
                let id = &ctx.root()["__gennaker"]["currentStage"];
                stages(ctx)
                    .iter()
                    .find(|s| &s["id"] == id)
                    .map(Cow::Borrowed)
                    .ok_or_else(|| FunctionError::new("the current stage is not known here"))
            })
            .register("currentUser", |_args, ctx| {
                Ok(Cow::Borrowed(
                    &ctx.root()["execution"]["authentication"]["user"],
                ))
            })
            .register("pipelineId", |args, ctx| {
                let name = string_arg(args, "a pipeline name")?;
                let ids = &ctx.root()["__gennaker"]["pipelineIds"];
                ids.get(name.to_lowercase())
                    .map(Cow::Borrowed)
                    .ok_or_else(|| {
                        FunctionError::new(format!(
                            "no pipeline named '{name}' in application '{}'",
                            ctx.root()["execution"]["application"]
                                .as_str()
                                .unwrap_or_default()
                        ))
                    })
            })
            .register("triggerResolvedArtifact", |args, ctx| {
                let name = string_arg(args, "an artifact name")?;
                // Spinnaker finds the bound artifact by its name; Gennaker also
                // accepts the expected artifact's displayName or id, after the names.
                resolved_artifact(ctx, "named", name, |a| a["boundArtifact"]["name"] == name)
                    .or_else(|_| {
                        resolved_artifact(ctx, "named", name, |a| {
                            a["displayName"] == name || a["id"] == name
                        })
                    })
            })
            .register("triggerResolvedArtifactByType", |args, ctx| {
                let kind = string_arg(args, "an artifact type")?;
                resolved_artifact(ctx, "of type", kind, |a| a["boundArtifact"]["type"] == kind)
            });
        Self { functions, limits }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The root object a stage's expressions see: ancestors' outputs (nearest wins),
    /// the stage's own context, `execution`, `trigger` and `parameters`.
    pub fn stage_root(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        pipeline_ids: Option<&PipelineIds>,
    ) -> Value {
        let mut root = Map::new();
        for ancestor in ancestors(execution, stage).iter().rev() {
            for (key, value) in &ancestor.outputs {
                root.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in &stage.context {
            root.insert(key.clone(), value.clone());
        }
        let mut view = serde_json::to_value(execution).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut view {
            map.remove("pipelineConfig");
        }
        root.insert("execution".into(), view);
        root.insert("trigger".into(), Value::Object(execution.trigger.clone()));
        root.insert("parameters".into(), Value::Object(execution.parameters()));
        let mut private = Map::new();
        private.insert("currentStage".into(), Value::String(stage.id.clone()));
        if let Some(ids) = pipeline_ids {
            let ids = ids
                .iter()
                .map(|(name, id)| (name.to_lowercase(), Value::String(id.clone())))
                .collect();
            private.insert("pipelineIds".into(), Value::Object(ids));
        }
        root.insert("__gennaker".into(), Value::Object(private));
        Value::Object(root)
    }

    /// Evaluates every `${…}` in `value` against `root`.
    pub fn transform(&self, value: &Value, root: &Value) -> Transformed {
        transform_value(value, root, &self.functions, &self.limits)
    }

    /// Evaluates an expression as `stageEnabled` and preconditions write it: either bare
    /// (`parameters.env == 'prod'`) or wrapped (`${parameters.env == 'prod'}`).
    pub fn evaluate_expression(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        text: &str,
    ) -> Result<Evaluation, ExprError> {
        let root = self.stage_root(execution, stage, None);
        self.evaluate_with_warnings(&root, text)
    }

    /// Evaluates `text` against `root`, keeping the warnings (keys that read as `null`
    /// and their likely spelling) for a person debugging an expression.
    pub fn evaluate_with_warnings(
        &self,
        root: &Value,
        text: &str,
    ) -> Result<Evaluation, ExprError> {
        if text.contains("${") {
            Template::parse(text, &self.limits)?.evaluate(root, &self.functions, &self.limits)
        } else {
            Expression::parse(text, &self.limits)?.evaluate(root, &self.functions, &self.limits)
        }
    }

    /// Like [`evaluate_expression`](Self::evaluate_expression), against a prepared root.
    pub fn evaluate_in(&self, root: &Value, text: &str) -> Result<Value, ExprError> {
        self.evaluate_with_warnings(root, text)
            .map(|evaluation| evaluation.value)
    }
}

/// The first artifact bound when the execution started
/// (`trigger.resolvedExpectedArtifacts[].boundArtifact`) whose entry `found` accepts.
fn resolved_artifact<'a>(
    ctx: &CallContext<'a>,
    how: &str,
    what: &str,
    found: impl Fn(&Value) -> bool,
) -> FunctionResult<'a> {
    let resolved = ctx.root()["trigger"]["resolvedExpectedArtifacts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    resolved
        .iter()
        .find(|a| found(a))
        .map(|a| Cow::Borrowed(&a["boundArtifact"]))
        .ok_or_else(|| {
            let bound: Vec<String> = resolved
                .iter()
                .map(|a| {
                    format!(
                        "{} {}",
                        a["boundArtifact"]["type"].as_str().unwrap_or("?"),
                        a["boundArtifact"]["name"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            FunctionError::new(format!(
                "no artifact {how} '{what}' among the trigger's resolved artifacts ({}): the pipeline's expectedArtifacts bind them when the execution starts",
                if bound.is_empty() { "none".to_owned() } else { bound.join(", ") }
            ))
        })
}

/// The stages whose outputs a stage can read, nearest first: its upstream siblings
/// (transitively), then its parent and the parent's ancestors.
pub fn ancestors<'a>(execution: &'a Execution, stage: &StageExecution) -> Vec<&'a StageExecution> {
    let mut found: Vec<&StageExecution> = Vec::new();
    let mut frontier: Vec<(Option<String>, Vec<String>, Option<String>)> = vec![(
        stage.parent_stage_id.clone(),
        stage.requisite_stage_ref_ids.clone(),
        stage.parent_stage_id.clone(),
    )];
    while let Some((parent, requisites, climb_to)) = frontier.pop() {
        let mut queue = requisites;
        while let Some(ref_id) = queue.pop() {
            let upstream = execution
                .stages
                .iter()
                .find(|s| s.ref_id == ref_id && s.parent_stage_id == parent && !found.contains(s));
            if let Some(upstream) = upstream {
                found.push(upstream);
                queue.extend(upstream.requisite_stage_ref_ids.iter().cloned());
            }
        }
        if let Some(parent_id) = climb_to
            && let Some(parent_stage) = execution.stage(&parent_id)
            && !found.contains(&parent_stage)
        {
            found.push(parent_stage);
            frontier.push((
                parent_stage.parent_stage_id.clone(),
                parent_stage.requisite_stage_ref_ids.clone(),
                parent_stage.parent_stage_id.clone(),
            ));
        }
    }
    found
}

fn stages<'a>(ctx: &CallContext<'a>) -> &'a [Value] {
    ctx.root()["execution"]["stages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn string_arg<'v>(args: &'v [Value], what: &str) -> Result<&'v str, FunctionError> {
    args.first()
        .and_then(Value::as_str)
        .ok_or_else(|| FunctionError::new(format!("expects {what} (a string)")))
}

fn find_stage<'a>(
    ctx: &CallContext<'a>,
    args: &[Value],
    field: &str,
) -> Result<&'a Value, FunctionError> {
    let wanted = match args.first() {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(FunctionError::new(format!("expects the stage's {field}"))),
    };
    let all = stages(ctx);
    all.iter()
        .find(|s| s[field].as_str() == Some(wanted.as_str()))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().filter_map(|s| s[field].as_str()).collect();
            let error = FunctionError::new(format!("no stage with {field} '{wanted}'"));
            match closest(&wanted, &names) {
                Some(near) => error.with_hint(format!("did you mean '{near}'?")),
                None => error,
            }
        })
}

fn closest<'n>(wanted: &str, names: &[&'n str]) -> Option<&'n str> {
    names
        .iter()
        .map(|n| (strsim::levenshtein(wanted, n), *n))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn judgment<'a>(args: &[Value], ctx: &CallContext<'a>) -> FunctionResult<'a> {
    let stage = find_stage(ctx, args, "name")?;
    if stage["type"] != "manualJudgment" {
        return Err(FunctionError::new(format!(
            "stage '{}' is a {} stage, not a manualJudgment",
            stage["name"].as_str().unwrap_or_default(),
            stage["type"].as_str().unwrap_or("?")
        )));
    }
    Ok(Cow::Borrowed(&stage["context"]["judgmentInput"]))
}
