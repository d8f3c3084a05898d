//! Gennaker's domain model: Spinnaker-compatible applications and pipeline configs, their
//! JSON/YAML documents, moniker naming, and validation that reports every problem of a
//! document at once with its JSON path.
//!
//! The core does no I/O: callers hand it text or `serde_json::Value`s.

pub mod application;
pub mod artifacts;
pub mod document;
pub mod execution;
pub mod lenient;
pub mod naming;
pub mod pipeline;
pub mod problems;
pub mod redact;
mod shape;
pub mod stage_types;
pub mod suggest;
mod validate;

pub use application::{
    Access, AccessDenied, Application, ApplicationError, CloudProviders, Permissions,
    check_application_access, validate_application_name, validate_application_value,
};
pub use document::{
    DocumentFormat, MAX_YAML_DOCUMENTS, SyntaxError, YamlWriteError, detect_format, parse_document,
    parse_yaml_documents, to_json_pretty, to_yaml_string,
};
pub use execution::{
    ALL_STATUSES, Authentication, Execution, ExecutionStatus, ExecutionType, PausedDetails,
    StageExecution, SyntheticStageOwner, TaskExecution, exception_error,
};
pub use lenient::{Lenient, RefId, truthy, value_as_i64};
pub use naming::{
    MAX_PIPELINE_NAME_LEN, Moniker, NamePart, NamingError, cluster_name, display_name_problem,
    next_sequence, parse_name,
};
pub use pipeline::{
    Artifact, ExpectedArtifact, ModelError, Notification, ParameterDefinition, Pipeline, Stage,
    StageEnabled, Trigger,
};
pub use problems::{JsonPath, PathSegment, Problem, Severity, ValidationReport, json_path};
pub use stage_types::{
    CatalogEntry, MAX_PIPELINE_STAGES, Origin, StageCatalog, StageRules, StageTypeDescriptor,
};
pub use validate::{
    CheckContext, Fields, NOTIFICATION_EVENTS, NOTIFICATION_TYPES, SENT_NOTIFICATION_TYPES,
    TRIGGER_TYPES, is_blank, is_expression, type_name, validate_pipeline_for_application,
    validate_pipeline_value,
};
