//! Gennaker's pipeline expression language (`${ … }`), a sandboxed subset of SpEL.
//!
//! Pipelines imported from Spinnaker are full of expressions such as
//! `${trigger['tag']}`, `${#stage('Deploy')['context']['deploy.server.groups']}` or
//! `${execution.stages.?[type == 'deploy'][0]['outputs']}`. This crate evaluates them
//! against a JSON context with Spinnaker's results, cannot reach anything but that
//! context and the functions the host registers, and explains every failure with its
//! position.
//!
//! # Use
//!
//! ```
//! use gennaker_expr::{evaluate_template, FunctionRegistry, Limits};
//! use serde_json::json;
//!
//! let context = json!({"trigger": {"tag": "v1.2.0"}, "parameters": {"env": "prod"}});
//! let functions = FunctionRegistry::default();
//! let limits = Limits::default();
//! let tag = evaluate_template("${trigger.tag.substring(1)}", &context, &functions, &limits);
//! assert_eq!(tag.unwrap(), json!("1.2.0"));
//! let err = evaluate_template("${trigger.tga.length()}", &context, &functions, &limits)
//!     .unwrap_err();
//! assert_eq!(err.hint.as_deref(), Some("property 'tga' not found on trigger; did you mean 'tag'?"));
//! ```
//!
//! Parse once with [`Template::parse`] (or [`Expression::parse`] for bare expressions
//! such as `stageEnabled`), then [`Template::evaluate`] many times. [`transform_value`]
//! evaluates every string of a stage context as Spinnaker's `ExpressionTransform`
//! does, and [`check_templates`] validates a pipeline config without evaluating it.
//!
//! # Semantics chosen, and why
//!
//! - **Missing keys read as `null`** — `trigger.tga` and `trigger['tga']` on a map
//!   without that key are `null`, never an error, because Spinnaker evaluates with
//!   "allow unknown keys" and real pipelines rely on it (`${parameters.optional ?: 'x'}`).
//!   The read is recorded as a [`Warning`] with the closest key (`did you mean 'tag'?`).
//!   Reading *through* that `null` (`trigger.tga.length()`) is a
//!   [`NullReference`](ErrorKind::NullReference) error whose hint names the missing key.
//!   `?.` reads through `null` silently. An undefined `#variable` is `null` with a
//!   warning; an undefined `#function(...)` is an error.
//! - **Templates**: a string that is exactly one `${…}` yields the typed value (number,
//!   boolean, list, map, `null`). Otherwise the parts are printed and concatenated:
//!   numbers as Java does (`1.0`, `1.0E7`), lists as `a,b` (Spring's conversion), maps as
//!   `{k=v}`. A `null` part keeps its `${…}` text, as Spinnaker's `ExpressionTransform`
//!   does (Spring alone would print nothing, but Spinnaker users see the raw text, and
//!   that is the behaviour pipelines were written against).
//! - **Failures**: [`transform_value`] keeps the raw text of a string whose expression
//!   fails (`ERROR`) or resolves to `null` (`INFO`) and reports each with its JSON path;
//!   [`TransformFailure::summary_entry`] builds the `expressionEvaluationSummary` entry.
//! - **Java semantics**: integer `/` truncates and `%` keeps the dividend's sign;
//!   mixing in a decimal gives a decimal; division by zero is an error (also for
//!   decimals, which JSON could not hold as infinity); integer overflow is an error
//!   rather than Java's silent wrap-around. `+` with a string concatenates
//!   (`'a' + null` is `anull`). `==` compares numbers by value (`1 == 1.0`) and never
//!   fails; `<` orders `null` first and refuses to compare a string with a number.
//!   Conditions (`and`, `or`, `not`, `?:`) accept booleans and the strings Spring
//!   converts (`'true'`, `'false'`, `'yes'`, `'no'`, `'on'`, `'off'`, `'1'`, `'0'`), because
//!   pipeline parameters are strings; selection criteria must be real booleans.
//!   The Elvis operator treats `''` like `null`. String indices count characters.
//! - **Methods** are an allow-list. Strings: `toUpperCase toLowerCase contains
//!   startsWith endsWith substring indexOf lastIndexOf replace replaceAll split trim
//!   length isEmpty equals equalsIgnoreCase charAt concat matches`; lists: `size isEmpty
//!   contains get`; maps: `size isEmpty containsKey containsValue get keySet values`;
//!   every value: `toString equals`. `replaceAll`, `split` and `matches` take regular
//!   expressions, `matches` must match the whole string, `split` drops trailing empty
//!   strings, all as in Java. Regexes run on the linear-time `regex` crate under
//!   [`Limits::max_regex_size`], so look-around and back-references are refused and no
//!   pattern backtracks; compiled patterns are kept in a small per-thread cache.
//!   `charAt` returns a one-character string.
//! - **Functions** are what the host registers in a [`FunctionRegistry`]; a function
//!   may return a value borrowed from the context ([`FunctionResult`]), so `#stage(…)`
//!   costs nothing however large the stage. `#name` without a call reads a registered
//!   variable.
//! - **Sandbox**: `T(…)`, `new …`, `@bean`, `&bean`, `=`, `++`/`--`, `instanceof` and
//!   `between` are parse errors of kind [`Unsupported`](ErrorKind::Unsupported). There
//!   is no reflection: the only things reachable are the context, the allow-listed
//!   methods and the registered functions. Every evaluation is bounded by [`Limits`].
//! - Two small departures for JSON: `map[0]` looks up the key `"0"` (Java would look
//!   for an integer key a JSON map cannot have), and `#toInt` accepts any 64-bit integer.

mod ast;
mod check;
mod collections;
mod error;
mod eval;
mod functions;
mod json_path;
mod lexer;
mod limits;
mod methods;
mod operators;
mod parser;
mod pattern;
mod pipeline_check;
mod template;
mod transform;
mod value;

use serde_json::Value;

pub use check::{ENGINE_FUNCTIONS, KnownFunctions, TemplateProblem, check_templates};
pub use error::{ErrorKind, ExprError, SummaryEntry, SummaryLevel, Warning, WarningKind};
pub use functions::{
    BUILTIN_FUNCTIONS, CallContext, FunctionError, FunctionRegistry, FunctionResult, HostFunction,
};
pub use limits::Limits;
pub use pipeline_check::validate_pipeline;
pub use template::{Evaluation, Expression, Template};
pub use transform::{TransformFailure, Transformed, transform_value};

/// Parses and evaluates a template in one call; see [`Template::evaluate`].
///
/// ```
/// # use gennaker_expr::{evaluate_template, FunctionRegistry, Limits};
/// # use serde_json::json;
/// let ctx = json!({"parameters": {"env": "prod"}});
/// let v = evaluate_template("${parameters.env == 'prod' ? 'a' : 'b'}", &ctx,
///                           &FunctionRegistry::default(), &Limits::default());
/// assert_eq!(v.unwrap(), json!("a"));
/// ```
pub fn evaluate_template(
    text: &str,
    context: &Value,
    functions: &FunctionRegistry,
    limits: &Limits,
) -> Result<Value, ExprError> {
    Template::parse(text, limits)?
        .evaluate(context, functions, limits)
        .map(|evaluation| evaluation.value)
}

/// A function registry and limits bound together, for hosts that evaluate many
/// templates with the same settings.
#[derive(Debug, Clone, Default)]
pub struct Evaluator {
    functions: FunctionRegistry,
    limits: Limits,
}

impl Evaluator {
    /// Binds a registry and limits.
    pub fn new(functions: FunctionRegistry, limits: Limits) -> Self {
        Self { functions, limits }
    }

    /// The registry.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.functions
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses a template under these limits.
    pub fn parse(&self, text: &str) -> Result<Template, ExprError> {
        Template::parse(text, &self.limits)
    }

    /// Evaluates a parsed template.
    pub fn evaluate(&self, template: &Template, context: &Value) -> Result<Evaluation, ExprError> {
        template.evaluate(context, &self.functions, &self.limits)
    }

    /// Parses and evaluates a template, keeping its warnings.
    pub fn evaluate_str(&self, text: &str, context: &Value) -> Result<Evaluation, ExprError> {
        self.parse(text)?
            .evaluate(context, &self.functions, &self.limits)
    }

    /// Evaluates every string of `value`; see [`transform_value`].
    pub fn transform(&self, value: &Value, context: &Value) -> Transformed {
        transform_value(value, context, &self.functions, &self.limits)
    }
}
