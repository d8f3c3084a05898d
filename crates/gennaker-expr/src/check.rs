//! Static checks of the templates in a pipeline config, without evaluating them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, ExprError};
use crate::eval::suggest;
use crate::functions::{BUILTIN_FUNCTIONS, FunctionRegistry};
use crate::json_path::{Step, render};
use crate::limits::Limits;
use crate::template::Template;

/// Function names a checked config may call, without `#`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFunctions {
    names: BTreeSet<String>,
}

/// The context-bound helpers Spinnaker pipelines call and a Gennaker engine
/// registers; [`KnownFunctions::spinnaker`] includes them.
pub const ENGINE_FUNCTIONS: &[&str] = &[
    "currentStage",
    "currentUser",
    "deployedServerGroups",
    "judgement",
    "judgment",
    "manifestLabelValue",
    "pipelineId",
    "pipelineIdInApplication",
    "stage",
    "stageByRefId",
    "stageExists",
    "triggerResolvedArtifact",
    "triggerResolvedArtifactByType",
];

impl KnownFunctions {
    /// No names at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pure helpers of [`FunctionRegistry::default`].
    pub fn builtin() -> Self {
        BUILTIN_FUNCTIONS.iter().copied().collect()
    }

    /// The built-in helpers plus [`ENGINE_FUNCTIONS`].
    pub fn spinnaker() -> Self {
        BUILTIN_FUNCTIONS
            .iter()
            .chain(ENGINE_FUNCTIONS)
            .copied()
            .collect()
    }

    /// Adds a name.
    pub fn insert(&mut self, name: impl Into<String>) -> &mut Self {
        self.names.insert(name.into());
        self
    }

    /// Whether `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// All names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

impl<S: Into<String>> FromIterator<S> for KnownFunctions {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self {
            names: iter.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<&FunctionRegistry> for KnownFunctions {
    fn from(registry: &FunctionRegistry) -> Self {
        registry.function_names().collect()
    }
}

/// A template in a config that cannot work: it does not parse, or it calls an
/// unknown function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateProblem {
    /// Where the string is, e.g. `$.stages[2].name`.
    pub path: String,
    /// Whether the string is the map key at `path` rather than its value.
    pub in_key: bool,
    /// The problem, positioned in the string.
    pub error: ExprError,
}

/// Finds every `${…}` in every string and map key of `value` and reports syntax
/// errors, sandbox violations and calls to functions not in `known_functions`.
pub fn check_templates(value: &Value, known_functions: &KnownFunctions) -> Vec<TemplateProblem> {
    let mut checker = Checker {
        known: known_functions,
        limits: Limits::default(),
        path: Vec::new(),
        problems: Vec::new(),
    };
    checker.value(value);
    checker.problems
}

struct Checker<'v, 'k> {
    known: &'k KnownFunctions,
    limits: Limits,
    path: Vec<Step<'v>>,
    problems: Vec<TemplateProblem>,
}

impl<'v> Checker<'v, '_> {
    fn value(&mut self, value: &'v Value) {
        match value {
            Value::String(s) => self.string(s, false),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Step::Index(i));
                    self.value(item);
                    self.path.pop();
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    self.path.push(Step::Key(key));
                    self.string(key, true);
                    self.value(item);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }

    fn string(&mut self, text: &str, in_key: bool) {
        if !text.contains("${") {
            return;
        }
        let template = match Template::parse(text, &self.limits) {
            Ok(t) => t,
            Err(error) => {
                self.report(in_key, error);
                return;
            }
        };
        for (name, at) in template.function_calls() {
            if self.known.contains(name) {
                continue;
            }
            let hint = suggest(name, self.known.names()).map(|s| format!("did you mean '#{s}'?"));
            let error = ExprError::new(
                ErrorKind::UnknownFunction,
                format!("function '#{name}' is not defined"),
                text,
                at,
            )
            .with_hint_opt(hint);
            self.report(in_key, error);
        }
    }

    fn report(&mut self, in_key: bool, error: ExprError) {
        self.problems.push(TemplateProblem {
            path: render(&self.path),
            in_key,
            error,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_paths_of_bad_templates() {
        let config = json!({
            "stages": [
                {"name": "ok ${trigger.tag}"},
                {"name": "${#stage('x').status}", "cmd": "${#stgae('x')}"},
                {"name": "${ a + }"}
            ],
            "triggers": [{"weird key": "${T(java.lang.Runtime)}"}]
        });
        let problems = check_templates(&config, &KnownFunctions::spinnaker());
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.error.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("$.stages[1].cmd", ErrorKind::UnknownFunction),
                ("$.stages[2].name", ErrorKind::Syntax),
                ("$.triggers[0]['weird key']", ErrorKind::Unsupported),
            ]
        );
        assert_eq!(
            problems[0].error.hint.as_deref(),
            Some("did you mean '#stage'?")
        );
        assert_eq!(problems[0].error.column, 3);
    }
}
