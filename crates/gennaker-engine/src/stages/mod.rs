//! The generic stage types. Each module registers its stage and tasks in
//! [`register_all`]; adding a stage type touches its module and one line here.

use crate::stage::StageRegistry;

mod check_preconditions;
mod evaluate_variables;
mod manual_judgment;
mod pipeline;
mod precondition_types;
mod wait;
mod webhook;

pub use webhook::{
    PreconfiguredWebhook, PreconfiguredWebhookStage, WebhookConfigError, WebhookParameter,
    preconfigured_webhook_stages, register_preconfigured,
};

/// Registers every generic stage type.
pub(crate) fn register_all(registry: &mut StageRegistry) {
    wait::register(registry);
    evaluate_variables::register(registry);
    manual_judgment::register(registry);
    precondition_types::register(registry);
    webhook::register(registry);
    pipeline::register(registry);
}

pub(crate) use check_preconditions::register as register_check_preconditions;
