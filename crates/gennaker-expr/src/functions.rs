//! `#name(...)` helper functions and `#name` variables supplied by the host.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use crate::limits::Limits;

/// What a helper function returns: a new value, or a value borrowed from the context
/// (`#stage('Deploy')` can return the stage inside `execution` without copying it).
pub type FunctionResult<'a> = Result<Cow<'a, Value>, FunctionError>;

/// The signature of a helper function: arguments already evaluated to JSON, plus the
/// evaluation's context. Closures may capture host state (an execution snapshot for
/// `#stage`), which is how the engine registers its context-bound helpers.
pub type HostFunction =
    dyn for<'a> Fn(&[Value], &CallContext<'a>) -> FunctionResult<'a> + Send + Sync;

/// What a helper function can see of the evaluation that calls it.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    root: &'a Value,
    name: &'a str,
    limits: &'a Limits,
}

impl<'a> CallContext<'a> {
    pub(crate) fn new(root: &'a Value, name: &'a str, limits: &'a Limits) -> Self {
        Self { root, name, limits }
    }

    /// The root context object (`#root`): `execution`, `trigger`, `parameters`, …
    pub fn root(&self) -> &'a Value {
        self.root
    }

    /// The name the function was called by, without `#`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The limits of this evaluation; functions building large values should honour
    /// `max_string_length` and `max_collection_size`.
    pub fn limits(&self) -> &'a Limits {
        self.limits
    }
}

/// A helper function's failure; it becomes an [`ExprError`](crate::ExprError) of kind
/// [`Function`](crate::ErrorKind::Function) positioned at the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FunctionError {
    message: String,
    hint: Option<String>,
}

impl FunctionError {
    /// A failure with a message such as `stage 'Deploy' not found`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a suggestion, e.g. `did you mean 'Deploy prod'?`.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The failure message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The suggestion, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// Helper functions and variables an evaluation may use.
///
/// [`FunctionRegistry::default`] holds the pure helpers this crate provides
/// ([`BUILTIN_FUNCTIONS`]); the host adds its own with [`register`](Self::register).
#[derive(Clone)]
pub struct FunctionRegistry {
    functions: BTreeMap<String, Arc<HostFunction>>,
    variables: BTreeMap<String, Value>,
}

/// Names of the helpers [`FunctionRegistry::default`] provides.
pub const BUILTIN_FUNCTIONS: &[&str] = &[
    "alphanumerical",
    "fromBase64",
    "readJson",
    "readYaml",
    "toBase64",
    "toBoolean",
    "toFloat",
    "toInt",
    "toJson",
];

impl Default for FunctionRegistry {
    fn default() -> Self {
        let mut registry = Self::empty();
        registry
            .register("toJson", owned(to_json))
            .register("readJson", owned(read_json))
            .register("readYaml", owned(read_yaml))
            .register("toInt", owned(to_int))
            .register("toFloat", owned(to_float))
            .register("toBoolean", owned(to_boolean))
            .register("toBase64", owned(to_base64))
            .register("fromBase64", owned(from_base64))
            .register("alphanumerical", owned(alphanumerical));
        registry
    }
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FunctionRegistry {
    /// A registry with no functions at all, not even the built-in helpers.
    pub fn empty() -> Self {
        Self {
            functions: BTreeMap::new(),
            variables: BTreeMap::new(),
        }
    }

    /// Adds or replaces the function called as `#name(...)`.
    ///
    /// ```
    /// use std::borrow::Cow;
    /// use gennaker_expr::{evaluate_template, FunctionError, FunctionRegistry, Limits};
    /// use serde_json::json;
    ///
    /// let mut functions = FunctionRegistry::default();
    /// // Returns the stage borrowed from the context: nothing is copied.
    /// functions.register("stage", |args, ctx| {
    ///     let stages = ctx.root()["execution"]["stages"].as_array();
    ///     stages
    ///         .and_then(|s| s.iter().find(|s| Some(&s["name"]) == args.first()))
    ///         .map(Cow::Borrowed)
    ///         .ok_or_else(|| FunctionError::new("stage not found"))
    /// });
    /// let ctx = json!({"execution": {"stages": [{"name": "Bake", "status": "SUCCEEDED"}]}});
    /// let status = evaluate_template("${#stage('Bake').status}", &ctx, &functions, &Limits::default());
    /// assert_eq!(status.unwrap(), json!("SUCCEEDED"));
    /// ```
    pub fn register<F>(&mut self, name: impl Into<String>, function: F) -> &mut Self
    where
        F: for<'a> Fn(&[Value], &CallContext<'a>) -> FunctionResult<'a> + Send + Sync + 'static,
    {
        self.functions.insert(name.into(), Arc::new(function));
        self
    }

    /// Adds or replaces the variable read as `#name`. `#this` and `#root` are
    /// reserved and cannot be replaced.
    pub fn set_variable(&mut self, name: impl Into<String>, value: Value) -> &mut Self {
        let name = name.into();
        if name != "this" && name != "root" {
            self.variables.insert(name, value);
        }
        self
    }

    /// The function registered as `name`.
    pub fn function(&self, name: &str) -> Option<&HostFunction> {
        self.functions.get(name).map(|f| f.as_ref())
    }

    /// The variable registered as `name`.
    pub fn variable(&self, name: &str) -> Option<&Value> {
        self.variables.get(name)
    }

    /// Names of all registered functions, sorted.
    pub fn function_names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Names of all registered variables, sorted.
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }
}

/// A builtin that always builds a new value.
type OwnedFunction = fn(&[Value], &CallContext<'_>) -> Result<Value, FunctionError>;

fn owned(
    function: OwnedFunction,
) -> impl for<'a> Fn(&[Value], &CallContext<'a>) -> FunctionResult<'a> + Send + Sync + 'static {
    move |args, ctx| function(args, ctx).map(Cow::Owned)
}

fn one_arg<'v>(args: &'v [Value], ctx: &CallContext<'_>) -> Result<&'v Value, FunctionError> {
    match args {
        [arg] => Ok(arg),
        _ => Err(FunctionError::new(format!(
            "#{} takes 1 argument, got {}",
            ctx.name(),
            args.len()
        ))),
    }
}

/// A string argument; scalars are converted as Spring's conversion service would.
fn string_arg(args: &[Value], ctx: &CallContext<'_>) -> Result<String, FunctionError> {
    match one_arg(args, ctx)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(FunctionError::new(format!(
            "#{} needs a string, got null",
            ctx.name()
        ))),
        other => Err(FunctionError::new(format!(
            "#{} needs a string, got {}",
            ctx.name(),
            crate::eval::article(crate::value::type_name(other))
        ))),
    }
}

/// Stops a serializer once the output passes the limit, before it is all in memory.
struct BoundedWriter {
    out: Vec<u8>,
    max: usize,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn to_json(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let value = one_arg(args, ctx)?;
    let max = ctx.limits().max_string_length;
    let mut writer = BoundedWriter {
        out: Vec::new(),
        max,
    };
    serde_json::to_writer(&mut writer, value)
        .map_err(|_| FunctionError::new(format!("#toJson output is longer than {max} bytes")))?;
    let json = String::from_utf8(writer.out)
        .map_err(|_| FunctionError::new("#toJson produced invalid UTF-8"))?;
    // Spinnaker refuses this so that serialized data cannot smuggle in an expression
    // that a later evaluation pass would run.
    if json.contains("${") {
        return Err(FunctionError::new(
            "result for toJson cannot contain an expression",
        ));
    }
    Ok(Value::String(json))
}

fn read_json(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    serde_json::from_str(&text)
        .map_err(|e| FunctionError::new(format!("#readJson: invalid JSON: {e}")))
}

fn read_yaml(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    // YAML 1.2 booleans only: `y`, `no` and `on` stay strings (the "Norway problem").
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // Alias bombs and huge documents stop at the expression's own limits.
    let limits = ctx.limits();
    let size = limits.max_collection_size;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = size;
    budget.max_nodes = size;
    budget.max_recorded_anchor_events = size;
    budget.max_depth = limits.max_depth as usize;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = limits.max_string_length;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = size;
    serde_saphyr::from_str_with_options::<Value>(&text, options).map_err(|e| {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or("").to_owned();
        FunctionError::new(format!("#readYaml: invalid YAML: {first}"))
    })
}

fn to_int(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    if let Some(i) = one_arg(args, ctx)?.as_i64() {
        return Ok(Value::from(i));
    }
    let text = string_arg(args, ctx)?;
    text.parse::<i64>()
        .map(Value::from)
        .map_err(|_| FunctionError::new(format!("#toInt: '{text}' is not an integer")))
}

fn to_float(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    // Java's Float.valueOf trims whitespace and accepts a trailing type suffix.
    let trimmed = text.trim().trim_end_matches(['f', 'F', 'd', 'D']);
    trimmed
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| FunctionError::new(format!("#toFloat: '{text}' is not a number")))
}

fn to_boolean(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    // Boolean.valueOf: only "true" (any case) is true; null and anything else is false.
    Ok(Value::Bool(match one_arg(args, ctx)? {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }))
}

fn to_base64(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
    ))
}

fn from_base64(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|e| FunctionError::new(format!("#fromBase64: invalid base64: {e}")))?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

fn alphanumerical(args: &[Value], ctx: &CallContext<'_>) -> Result<Value, FunctionError> {
    let text = string_arg(args, ctx)?;
    Ok(Value::String(
        text.chars().filter(char::is_ascii_alphanumeric).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, args: &[Value]) -> Result<Value, FunctionError> {
        let registry = FunctionRegistry::default();
        let limits = Limits::default();
        let root = json!({});
        let f = registry.function(name).unwrap();
        f(args, &CallContext::new(&root, name, &limits)).map(Cow::into_owned)
    }

    #[test]
    fn builtins() {
        assert_eq!(call("toInt", &[json!("42")]).unwrap(), json!(42));
        assert_eq!(call("toFloat", &[json!(" 1.5 ")]).unwrap(), json!(1.5));
        assert_eq!(call("toBoolean", &[json!("TRUE")]).unwrap(), json!(true));
        assert_eq!(call("toBase64", &[json!("hi")]).unwrap(), json!("aGk="));
        assert_eq!(call("fromBase64", &[json!("aGk=")]).unwrap(), json!("hi"));
        assert_eq!(
            call("alphanumerical", &[json!("feature/ABC-1")]).unwrap(),
            json!("featureABC1")
        );
        assert_eq!(
            call("readYaml", &[json!("a: 1\nb: [x]")]).unwrap(),
            json!({"a": 1, "b": ["x"]})
        );
        assert_eq!(
            call("toJson", &[json!({"a": [1]})]).unwrap(),
            json!("{\"a\":[1]}")
        );
        assert!(call("toJson", &[json!("${x}")]).is_err());
        assert!(call("toInt", &[json!("x")]).is_err());
    }

    #[test]
    fn reserved_variables_are_not_replaced() {
        let mut registry = FunctionRegistry::empty();
        registry
            .set_variable("this", json!(1))
            .set_variable("env", json!("prod"));
        assert_eq!(registry.variable_names().collect::<Vec<_>>(), vec!["env"]);
    }
}
