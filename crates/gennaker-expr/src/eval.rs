//! Tree-walking evaluation under [`Limits`].

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ast::{MapKey, Node, NodeKind};
use crate::error::{ErrorKind, ExprError, Warning, WarningKind};
use crate::functions::{CallContext, FunctionRegistry};
use crate::limits::Limits;
use crate::value::{Num, Style, Val, count_nodes, write_value};

/// Copying a value costs one step per this many JSON nodes.
const NODES_PER_STEP: u64 = 16;
/// Scanning or building a string costs one step per this many bytes.
const BYTES_PER_STEP: usize = 256;
/// Warnings kept per evaluation; the rest are dropped.
const MAX_WARNINGS: usize = 20;

/// The state of one evaluation: its budget and its warnings.
pub(crate) struct Eval<'a> {
    pub(crate) source: &'a str,
    pub(crate) root: &'a Value,
    pub(crate) functions: &'a FunctionRegistry,
    pub(crate) limits: &'a Limits,
    steps: u64,
    depth: u32,
    pub(crate) warnings: Vec<Warning>,
    /// The node that last read a missing key, and why: if that `null` is then
    /// dereferenced, the error names the misspelt key instead of just "null".
    last_missing: Option<(usize, usize, String)>,
}

impl<'a> Eval<'a> {
    pub(crate) fn new(
        source: &'a str,
        root: &'a Value,
        functions: &'a FunctionRegistry,
        limits: &'a Limits,
    ) -> Self {
        Self {
            source,
            root,
            functions,
            limits,
            steps: 0,
            depth: 0,
            warnings: Vec::new(),
            last_missing: None,
        }
    }

    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        message: impl Into<String>,
        at: usize,
    ) -> ExprError {
        ExprError::new(kind, message, self.source, at)
    }

    pub(crate) fn warn(
        &mut self,
        kind: WarningKind,
        message: String,
        at: usize,
        hint: Option<String>,
    ) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings
                .push(Warning::new(kind, message, self.source, at, hint));
        }
    }

    /// Spends `n` steps of the budget.
    pub(crate) fn charge(&mut self, n: u64, at: usize) -> Result<(), ExprError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(self
                .error(
                    ErrorKind::StepLimit,
                    format!("evaluation exceeded {} steps", self.limits.max_steps),
                    at,
                )
                .with_hint("the expression does too much work; simplify it or split it"));
        }
        Ok(())
    }

    /// Pays for scanning or building `len` bytes of text.
    pub(crate) fn charge_bytes(&mut self, len: usize, at: usize) -> Result<(), ExprError> {
        self.charge((len / BYTES_PER_STEP) as u64, at)
    }

    pub(crate) fn check_string(&self, len: usize, at: usize) -> Result<(), ExprError> {
        if len > self.limits.max_string_length {
            return Err(self.error(
                ErrorKind::OutputLimit,
                format!(
                    "string of {len} bytes exceeds the limit of {} bytes",
                    self.limits.max_string_length
                ),
                at,
            ));
        }
        Ok(())
    }

    pub(crate) fn check_collection(&self, len: usize, at: usize) -> Result<(), ExprError> {
        if len > self.limits.max_collection_size {
            return Err(self.error(
                ErrorKind::CollectionLimit,
                format!(
                    "collection of {len} elements exceeds the limit of {} elements",
                    self.limits.max_collection_size
                ),
                at,
            ));
        }
        Ok(())
    }

    /// Copies a borrowed value, paying for its size.
    pub(crate) fn copy(&mut self, value: &Value, at: usize) -> Result<Value, ExprError> {
        let remaining = self.limits.max_steps.saturating_sub(self.steps);
        let cap = remaining.saturating_mul(NODES_PER_STEP);
        let nodes = count_nodes(value, cap);
        self.charge(nodes.div_ceil(NODES_PER_STEP), at)?;
        Ok(value.clone())
    }

    /// Turns a value into JSON, copying what is borrowed.
    pub(crate) fn materialize(&mut self, val: Val<'a>, at: usize) -> Result<Value, ExprError> {
        match val {
            Val::Ref(v) => self.copy(v, at),
            Val::Own(v) => Ok(v),
            Val::List(items) => {
                self.check_collection(items.len(), at)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.materialize(item, at)?);
                }
                Ok(Value::Array(out))
            }
        }
    }

    /// A JSON view of a value, copying only a [`Val::List`].
    pub(crate) fn view<'v>(
        &mut self,
        val: &'v Val<'a>,
        at: usize,
    ) -> Result<Cow<'v, Value>, ExprError> {
        match val {
            Val::Ref(v) => Ok(Cow::Borrowed(*v)),
            Val::Own(v) => Ok(Cow::Borrowed(v)),
            Val::List(_) => Ok(Cow::Owned(self.materialize(val.clone(), at)?)),
        }
    }

    /// A copy of a value that may be used twice (`#this`).
    fn duplicate(&mut self, val: &Val<'a>, at: usize) -> Result<Val<'a>, ExprError> {
        match val {
            Val::Ref(v) => Ok(Val::Ref(v)),
            Val::Own(v) => Ok(Val::Own(self.copy(v, at)?)),
            Val::List(items) => {
                self.charge(items.len() as u64 / NODES_PER_STEP, at)?;
                Ok(Val::List(items.clone()))
            }
        }
    }

    /// Prints a value as `+` and template text do.
    pub(crate) fn print(
        &mut self,
        val: &Val<'a>,
        style: Style,
        at: usize,
    ) -> Result<String, ExprError> {
        if let Some(s) = val.as_str() {
            return Ok(s.to_owned());
        }
        let json = self.view(val, at)?;
        let mut out = String::new();
        let max = self.limits.max_string_length;
        if write_value(&json, style, &mut out, max).is_err() {
            return Err(self.error(
                ErrorKind::OutputLimit,
                format!("text of the value exceeds the limit of {max} bytes"),
                at,
            ));
        }
        self.charge_bytes(out.len(), at)?;
        Ok(out)
    }

    pub(crate) fn eval(&mut self, node: &'a Node, this: &Val<'a>) -> Result<Val<'a>, ExprError> {
        self.charge(1, node.at)?;
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return Err(self.error(
                ErrorKind::DepthLimit,
                format!(
                    "evaluation nested deeper than {} levels",
                    self.limits.max_depth
                ),
                node.at,
            ));
        }
        let result = self.eval_kind(node, this);
        self.depth -= 1;
        result
    }

    fn eval_kind(&mut self, node: &'a Node, this: &Val<'a>) -> Result<Val<'a>, ExprError> {
        match &node.kind {
            NodeKind::Literal(value) => Ok(Val::Ref(value)),
            NodeKind::List(items) => {
                self.check_collection(items.len(), node.at)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.eval(item, this)?);
                }
                Ok(Val::List(out))
            }
            NodeKind::Map(entries) => self.inline_map(entries, node, this),
            NodeKind::This => self.duplicate(this, node.at),
            NodeKind::Root => Ok(Val::Ref(self.root)),
            NodeKind::Var(name) => self.variable(name, node),
            NodeKind::Call { name, args } => self.call(name, args, node, this),
            NodeKind::Ident(name) => {
                let is_root = matches!(this, Val::Ref(v) if std::ptr::eq(*v, self.root));
                let owner = if is_root { Owner::Context } else { Owner::This };
                // Copy only the field of an owned `#this` (a map entry), not all of it.
                if let Val::Own(Value::Object(map)) = this {
                    if let Some(v) = map.get(name) {
                        return Ok(Val::Own(self.copy(v, node.at)?));
                    }
                    let close = suggest(name, map.keys().map(String::as_str))
                        .map(|c| format!("did you mean '{c}'?"))
                        .or_else(|| self.root_key_hint(name));
                    self.missing(name, close, node, owner.text());
                    return Ok(Val::null());
                }
                let target = self.duplicate(this, node.at)?;
                self.property(target, name, node, owner, false)
                    .map_err(|e| self.root_hint(e, name, is_root))
            }
            NodeKind::Property { target, name, safe } => {
                let value = self.eval(target, this)?;
                if value.is_null() {
                    return self.null_target(target, node, *safe, || {
                        format!("cannot read property '{name}' of null")
                    });
                }
                self.property(value, name, node, Owner::Node(target), *safe)
            }
            NodeKind::Index {
                target,
                index,
                safe,
            } => {
                let value = self.eval(target, this)?;
                if value.is_null() {
                    return self
                        .null_target(target, node, *safe, || "cannot index into null".to_owned());
                }
                self.index(value, target, index, node, this)
            }
            NodeKind::Method {
                target,
                name,
                args,
                safe,
            } => {
                let value = match target {
                    Some(t) => {
                        let value = self.eval(t, this)?;
                        if value.is_null() {
                            return self.null_target(t, node, *safe, || {
                                format!("cannot call method '{name}' on null")
                            });
                        }
                        value
                    }
                    None => self.duplicate(this, node.at)?,
                };
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval(arg, this)?);
                }
                crate::methods::call(self, value, name, values, node)
            }
            NodeKind::Select {
                target,
                which,
                condition,
                safe,
            } => {
                let value = self.eval(target, this)?;
                if value.is_null() {
                    return self
                        .null_target(target, node, *safe, || "cannot select from null".to_owned());
                }
                self.select(value, *which, condition, node)
            }
            NodeKind::Project { target, expr, safe } => {
                let value = self.eval(target, this)?;
                if value.is_null() {
                    return self
                        .null_target(target, node, *safe, || "cannot project null".to_owned());
                }
                self.project(value, expr, node)
            }
            NodeKind::Unary { op, operand } => {
                let value = self.eval(operand, this)?;
                self.unary(*op, value, node)
            }
            NodeKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, node, this),
            NodeKind::Ternary {
                condition,
                then,
                otherwise,
            } => {
                let value = self.eval(condition, this)?;
                if self.condition(&value, condition.at, "the ternary condition")? {
                    self.eval(then, this)
                } else {
                    self.eval(otherwise, this)
                }
            }
            NodeKind::Elvis { value, fallback } => {
                let v = self.eval(value, this)?;
                // Since Spring 5 the Elvis operator treats an empty string like null.
                if v.is_null() || v.as_str() == Some("") {
                    self.eval(fallback, this)
                } else {
                    Ok(v)
                }
            }
        }
    }

    /// The source text of a node, shortened, for messages such as "not found on trigger".
    fn describe(&self, node: &'a Node) -> String {
        let text = self.source.get(node.start..node.end).unwrap_or("").trim();
        if text.chars().count() > 40 {
            let short: String = text.chars().take(37).collect();
            format!("{short}...")
        } else {
            text.to_owned()
        }
    }

    /// `null` as a target: `null` with `?.`, otherwise an error that explains where the
    /// `null` came from when it was a missing key.
    fn null_target(
        &mut self,
        target: &'a Node,
        node: &'a Node,
        safe: bool,
        message: impl FnOnce() -> String,
    ) -> Result<Val<'a>, ExprError> {
        if safe {
            return Ok(Val::null());
        }
        let hint = match &self.last_missing {
            Some((start, end, why)) if *start == target.start && *end == target.end => {
                Some(why.clone())
            }
            _ => Some(format!(
                "'{}' is null; use '?.' to read through null",
                self.describe(target)
            )),
        };
        Err(self
            .error(ErrorKind::NullReference, message(), node.at)
            .with_hint_opt(hint))
    }

    fn variable(&mut self, name: &str, node: &'a Node) -> Result<Val<'a>, ExprError> {
        if let Some(value) = self.functions.variable(name) {
            return Ok(Val::Ref(value));
        }
        if self.functions.function(name).is_some() {
            return Err(self
                .error(ErrorKind::Type, format!("'#{name}' is a function"), node.at)
                .with_hint(format!("call it: #{name}(...)")));
        }
        // SpEL reads an undefined variable as null; we say so.
        let candidates = self.functions.variable_names();
        let hint = suggest(name, candidates.chain(["this", "root"]))
            .map(|s| format!("did you mean '#{s}'?"));
        self.warn(
            WarningKind::UndefinedVariable,
            format!("variable '#{name}' is not defined"),
            node.at,
            hint,
        );
        Ok(Val::null())
    }

    fn call(
        &mut self,
        name: &'a str,
        args: &'a [Node],
        node: &'a Node,
        this: &Val<'a>,
    ) -> Result<Val<'a>, ExprError> {
        let functions = self.functions;
        let Some(function) = functions.function(name) else {
            let hint =
                suggest(name, functions.function_names()).map(|s| format!("did you mean '#{s}'?"));
            return Err(self
                .error(
                    ErrorKind::UnknownFunction,
                    format!("function '#{name}' is not defined"),
                    node.at,
                )
                .with_hint_opt(hint));
        };
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            let value = self.eval(arg, this)?;
            values.push(self.materialize(value, arg.at)?);
        }
        let context = CallContext::new(self.root, name, self.limits);
        let result = function(&values, &context).map_err(|e| {
            let message = match e.message().strip_prefix(&format!("#{name}")) {
                Some(_) => e.message().to_owned(),
                None => format!("#{name}: {}", e.message()),
            };
            self.error(ErrorKind::Function, message, node.at)
                .with_hint_opt(e.hint().map(str::to_owned))
        })?;
        if let Value::String(s) = result.as_ref() {
            self.check_string(s.len(), node.at)?;
            self.charge_bytes(s.len(), node.at)?;
        }
        Ok(match result {
            Cow::Borrowed(value) => Val::Ref(value),
            Cow::Owned(value) => Val::Own(value),
        })
    }

    fn inline_map(
        &mut self,
        entries: &'a [(MapKey, Node)],
        node: &'a Node,
        this: &Val<'a>,
    ) -> Result<Val<'a>, ExprError> {
        self.check_collection(entries.len(), node.at)?;
        let mut map = Map::new();
        for (key, value) in entries {
            let key = match key {
                MapKey::Name(name) => name.clone(),
                MapKey::Expr(key_node) => {
                    let k = self.eval(key_node, this)?;
                    self.print(&k, Style::Java, key_node.at)?
                }
            };
            let value = self.eval(value, this)?;
            let value = self.materialize(value, node.at)?;
            map.insert(key, value);
        }
        Ok(Val::Own(Value::Object(map)))
    }

    /// Reads `name` of a map. A missing key reads as `null`, as in Spinnaker (whose
    /// evaluation context allows unknown keys); a warning records the closest key.
    fn property(
        &mut self,
        target: Val<'a>,
        name: &str,
        node: &'a Node,
        owner: Owner<'_>,
        safe: bool,
    ) -> Result<Val<'a>, ExprError> {
        let found = match target {
            Val::Ref(Value::Object(map)) => match map.get(name) {
                Some(v) => return Ok(Val::Ref(v)),
                None => suggest(name, map.keys().map(String::as_str))
                    .map(|c| format!("did you mean '{c}'?")),
            },
            Val::Own(Value::Object(mut map)) => match map.remove(name) {
                Some(v) => return Ok(Val::Own(v)),
                None => suggest(name, map.keys().map(String::as_str))
                    .map(|c| format!("did you mean '{c}'?")),
            },
            other if other.is_null() => {
                if safe {
                    return Ok(Val::null());
                }
                return Err(self.error(
                    ErrorKind::NullReference,
                    format!("cannot read property '{name}' of null"),
                    node.at,
                ));
            }
            other => {
                let kind = other.type_name();
                let hint = if crate::methods::exists(&other, name) {
                    format!("call it as a method: {name}()")
                } else if kind == "list" {
                    format!("to read '{name}' of every element use .![{name}]")
                } else {
                    format!("only maps have properties; this is {}", article(kind))
                };
                return Err(self
                    .error(
                        ErrorKind::Type,
                        format!("cannot read property '{name}' of {}", article(kind)),
                        node.at,
                    )
                    .with_hint(hint));
            }
        };
        let hint = match found {
            Some(hint) => Some(hint),
            None if matches!(owner, Owner::This) => self.root_key_hint(name),
            None => None,
        };
        let owner = match owner {
            Owner::Node(target) => self.describe(target),
            other => other.text().to_owned(),
        };
        self.missing(name, hint, node, &owner);
        Ok(Val::null())
    }

    /// Inside `.?[ ]` and `.![ ]` bare names read the element, a classic SpEL
    /// surprise: `stages.?[type == parameters.kind]` reads `parameters` of each stage.
    fn root_key_hint(&self, name: &str) -> Option<String> {
        self.root.get(name).map(|_| {
            format!("inside .?[ ] and .![ ] names refer to the element; for the context's '{name}' write #root.{name}")
        })
    }

    fn root_hint(&self, error: ExprError, name: &str, is_root: bool) -> ExprError {
        match self.root_key_hint(name) {
            Some(hint) if !is_root && error.kind == ErrorKind::Type => error.with_hint(hint),
            _ => error,
        }
    }

    fn missing(&mut self, key: &str, hint: Option<String>, node: &'a Node, owner: &str) {
        let message = format!("property '{key}' not found on {owner}");
        let why = match &hint {
            Some(h) => format!("{message}; {h}"),
            None => message.clone(),
        };
        self.last_missing = Some((node.start, node.end, why));
        self.warn(WarningKind::MissingProperty, message, node.at, hint);
    }

    fn index(
        &mut self,
        target: Val<'a>,
        target_node: &'a Node,
        index: &'a Node,
        node: &'a Node,
        this: &Val<'a>,
    ) -> Result<Val<'a>, ExprError> {
        let is_map = matches!(target.json(), Some(Value::Object(_)));
        // SpEL reads `map[name]` with a bare name as the key 'name'.
        let key = match (&index.kind, is_map) {
            (NodeKind::Ident(name), true) => Val::Own(Value::String(name.clone())),
            _ => self.eval(index, this)?,
        };
        if is_map {
            let key_text = match key.json() {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(_) | Value::Bool(_)) => {
                    self.print(&key, Style::Java, index.at)?
                }
                _ => {
                    return Err(self.error(
                        ErrorKind::Type,
                        format!(
                            "a map key must be a string, got {}",
                            article(key.type_name())
                        ),
                        index.at,
                    ));
                }
            };
            return self.property(target, &key_text, node, Owner::Node(target_node), false);
        }
        let position = self.list_position(&key, index)?;
        match target {
            Val::Ref(Value::Array(items)) => self
                .at_position(items.len(), position, node)
                .map(|i| Val::Ref(&items[i])),
            Val::Own(Value::Array(mut items)) => {
                let i = self.at_position(items.len(), position, node)?;
                Ok(Val::Own(items.swap_remove(i)))
            }
            Val::List(mut items) => {
                let i = self.at_position(items.len(), position, node)?;
                Ok(items.swap_remove(i))
            }
            other => match other.as_str() {
                Some(s) => {
                    let count = s.chars().count();
                    let i = self.at_position(count, position, node)?;
                    let c = s.chars().nth(i).map(String::from).unwrap_or_default();
                    Ok(Val::Own(Value::String(c)))
                }
                None => Err(self.error(
                    ErrorKind::Type,
                    format!("cannot index into {}", article(other.type_name())),
                    node.at,
                )),
            },
        }
    }

    /// A list index; Spring converts numeric strings, so `list[parameters.n]` works.
    fn list_position(&mut self, key: &Val<'a>, index: &'a Node) -> Result<i64, ExprError> {
        match key.json() {
            Some(v) => match (
                Num::of(v),
                v.as_str().and_then(|s| s.trim().parse::<i64>().ok()),
            ) {
                (Some(Num::Int(i)), _) | (_, Some(i)) => Ok(i),
                _ => Err(self.error(
                    ErrorKind::Type,
                    format!(
                        "a list index must be an integer, got {}",
                        article(key.type_name())
                    ),
                    index.at,
                )),
            },
            None => Err(self.error(
                ErrorKind::Type,
                "a list index must be an integer, got a list",
                index.at,
            )),
        }
    }

    fn at_position(&self, len: usize, position: i64, node: &'a Node) -> Result<usize, ExprError> {
        usize::try_from(position)
            .ok()
            .filter(|&i| i < len)
            .ok_or_else(|| {
                self.error(
                    ErrorKind::Index,
                    format!("index {position} is out of bounds for {len} elements"),
                    node.at,
                )
            })
    }
}

/// What a property was read from, described only when a message needs it.
#[derive(Debug, Clone, Copy)]
enum Owner<'n> {
    Context,
    This,
    Node(&'n Node),
}

impl Owner<'_> {
    fn text(self) -> &'static str {
        match self {
            Owner::Context => "the context",
            Owner::This => "#this",
            Owner::Node(_) => "its target",
        }
    }
}

/// "a string", "an integer", "null".
pub(crate) fn article(type_name: &str) -> String {
    match type_name {
        "null" => "null".to_owned(),
        t if t.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {t}"),
        t => format!("a {t}"),
    }
}

/// The candidate closest to `name`, if close enough to be a plausible typo: an edit
/// distance (transpositions count once) of 1 for short names, up to 3 for long ones.
pub(crate) fn suggest<'c>(
    name: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = name.to_lowercase();
    let allowed = match lower.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates.take(1000) {
        let other = candidate.to_lowercase();
        let prefix = lower.len() >= 3 && (other.starts_with(&lower) || lower.starts_with(&other));
        let distance = if prefix {
            1
        } else {
            strsim::damerau_levenshtein(&lower, &other)
        };
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}
