//! Preconfigured webhook stages (Orca's `webhook.preconfigured`): each
//! `[[webhooks.preconfigured]]` entry of the server's configuration is a stage type of
//! its own. When such a stage starts, the entry's settings replace the stage's (a
//! pipeline cannot change the URL, method, headers or payload; the other fields it may
//! give where the entry leaves them open), `${parameterValues.x}` in them is filled
//! from the stage's `parameterValues` or the parameter's `defaultValue`, and the
//! `webhook` stage's tasks run.

mod config;
mod fill;

use async_trait::async_trait;
use gennaker_core::execution::{Execution, StageExecution};
use gennaker_core::stage_types::StageCatalog;
use gennaker_core::{
    CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport, is_blank,
};
use serde_json::{Map, Value};

use super::{DEFERRED_KEYS, cancel, rules, webhook_tasks};
use crate::stage::{CancelOutcome, StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Services, TaskError};

pub use config::{PreconfiguredWebhook, WebhookConfigError, WebhookParameter};

/// The fields a pipeline can never set on a preconfigured stage: what is called and
/// with what (Orca).
const FIXED_FIELDS: [&str; 4] = ["url", "method", "customHeaders", "payload"];

/// A `[[webhooks.preconfigured]]` entry as a stage type.
#[derive(Debug, Clone)]
pub struct PreconfiguredWebhookStage {
    descriptor: StageTypeDescriptor,
    parameters: Vec<WebhookParameter>,
    /// The entry's `webhook` fields, as a stage context.
    settings: Map<String, Value>,
}

/// Checks the entries (a type of their own each, an http(s) URL, valid fields) against
/// the types `known` defines, and makes each a stage type.
pub fn preconfigured_webhook_stages(
    known: &StageCatalog,
    webhooks: &[PreconfiguredWebhook],
) -> Result<Vec<PreconfiguredWebhookStage>, WebhookConfigError> {
    let checked = config::check_all(known, webhooks)?;
    Ok(webhooks
        .iter()
        .zip(checked)
        .map(|(webhook, checked)| PreconfiguredWebhookStage {
            descriptor: StageTypeDescriptor::runnable(
                webhook.stage_type.clone(),
                Origin::Preconfigured,
                webhook
                    .label
                    .clone()
                    .unwrap_or_else(|| webhook.stage_type.clone()),
                webhook
                    .description
                    .clone()
                    .unwrap_or_else(|| "a webhook preconfigured on this server".to_owned()),
            ),
            parameters: webhook.parameters.clone(),
            settings: checked.fields,
        })
        .collect())
}

/// Adds the entries to `registry` as stage types (running the `webhook` stage's tasks,
/// which it must have); nothing is added when one is wrong.
pub fn register_preconfigured(
    registry: &mut StageRegistry,
    webhooks: &[PreconfiguredWebhook],
) -> Result<(), WebhookConfigError> {
    for stage in preconfigured_webhook_stages(registry.catalog(), webhooks)? {
        registry.stage(stage);
    }
    Ok(())
}

impl PreconfiguredWebhookStage {
    /// The stage's `parameterValues` over the parameters' defaults; a value left
    /// blank takes the default.
    fn parameter_values(&self, context: &Map<String, Value>) -> Map<String, Value> {
        let mut values: Map<String, Value> = self
            .parameters
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.default_value.clone()?)))
            .collect();
        if let Some(Value::Object(given)) = context.get("parameterValues") {
            for (name, value) in given {
                if !is_blank(value) || !values.contains_key(name) {
                    values.insert(name.clone(), value.clone());
                }
            }
        }
        values
    }

    /// `context` with the entry's settings in place of the stage's, filled from
    /// `values` when given.
    fn override_settings(
        &self,
        context: &mut Map<String, Value>,
        values: Option<&Map<String, Value>>,
    ) {
        for key in FIXED_FIELDS {
            context.remove(key);
        }
        for (key, value) in &self.settings {
            let value = match values {
                Some(values) => fill::fill(value, values),
                None => value.clone(),
            };
            context.insert(key.clone(), value);
        }
    }

    /// Unknown parameters warn; a required one (no default) that is missing is an
    /// error at `parameterValues.<name>`.
    fn check_parameters(&self, stage: &Fields<'_>, report: &mut ValidationReport) {
        let stage_type = &self.descriptor.stage_type;
        let given = stage.object("parameterValues", report);
        if let Some(given) = &given {
            for name in given.map.keys() {
                match self.parameters.iter().find(|p| &p.name == name) {
                    Some(parameter) if parameter.is_boolean() => {
                        given.boolean(name, report);
                    }
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> =
                            self.parameters.iter().map(|p| p.name.as_str()).collect();
                        let has = if known.is_empty() {
                            "it takes none".to_owned()
                        } else {
                            format!("it takes {}", known.join(", "))
                        };
                        report.push(Problem::warning(
                            given.at(name),
                            format!(
                                "'{name}' is not a parameter of {stage_type} ({has}); it is ignored"
                            ),
                        ));
                    }
                }
            }
        }
        for parameter in self.parameters.iter().filter(|p| p.default_value.is_none()) {
            if given.as_ref().is_some_and(|g| g.has(&parameter.name)) {
                continue;
            }
            let path = stage.at("parameterValues").key(&parameter.name);
            let mut problem = Problem::error(
                path,
                format!(
                    "{stage_type} needs parameter '{}' ({}), which has no default",
                    parameter.name,
                    parameter.title()
                ),
            );
            if let Some(description) = &parameter.description {
                problem = problem.with_hint(description.clone());
            }
            report.push(problem);
        }
    }
}

#[async_trait]
impl StageDefinition for PreconfiguredWebhookStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        self.descriptor.clone()
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        self.check_parameters(stage, report);
        let stage_type = &self.descriptor.stage_type;
        let overridden = FIXED_FIELDS.iter().copied().chain(
            self.settings
                .keys()
                .map(String::as_str)
                .filter(|key| !FIXED_FIELDS.contains(key)),
        );
        for key in overridden {
            if let Some(value) = stage.get(key)
                && self.settings.get(key) != Some(value)
            {
                report.push(Problem::warning(
                    stage.at(key),
                    format!(
                        "{key} is ignored: the preconfigured stage type {stage_type} decides it"
                    ),
                ));
            }
        }
        // What the stage may still give (say waitForCompletion) follows the webhook's
        // rules, as it will run.
        let mut merged = stage.map.clone();
        self.override_settings(&mut merged, None);
        rules::check_webhook(&Fields::new(&merged, stage.path.clone()), report);
    }

    fn prepare(&self, context: &mut Map<String, Value>) {
        let values = self.parameter_values(context);
        self.override_settings(context, Some(&values));
        context.insert("parameterValues".into(), Value::Object(values));
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        webhook_tasks(stage)
    }

    fn deferred_context_keys(&self) -> &'static [&'static str] {
        DEFERRED_KEYS
    }

    fn has_cancel_routine(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        execution: &Execution,
        stage: &StageExecution,
        services: &Services,
    ) -> Result<CancelOutcome, TaskError> {
        cancel::cancel_webhook(execution, stage, services).await
    }
}
