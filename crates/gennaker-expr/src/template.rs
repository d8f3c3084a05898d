//! `${ … }` templates and bare expressions: parse once, evaluate many times.

use serde_json::Value;

use crate::ast::Node;
use crate::error::{ErrorKind, ExprError, Warning, WarningKind};
use crate::eval::Eval;
use crate::functions::FunctionRegistry;
use crate::limits::Limits;
use crate::parser::parse;
use crate::value::{Style, Val};

/// The result of a successful evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The value: typed for a template that is exactly one `${…}`, else a string.
    pub value: Value,
    /// Non-fatal findings, e.g. keys that read as `null` and their likely spelling.
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr {
        node: Node,
        /// Byte range of `${ … }` in the template, braces included.
        start: usize,
        end: usize,
        /// Byte range of the expression between the braces.
        inner: (usize, usize),
    },
}

/// A parsed template string such as `deploy-${trigger.tag}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template. Text without `${` is a literal and parses trivially.
    ///
    /// Each `${…}` ends at the first `}` outside quotes and brackets, as in Spring's
    /// template parser, so `${ {'a':1}['a'] }` and `${ '}' }` work.
    pub fn parse(text: &str, limits: &Limits) -> Result<Self, ExprError> {
        let mut parts = Vec::new();
        let mut pos = 0;
        while let Some(found) = text[pos..].find("${") {
            let start = pos + found;
            if start > pos {
                parts.push(Part::Text(text[pos..start].to_owned()));
            }
            let inner_start = start + 2;
            let inner_end = closing_brace(text, inner_start)?;
            let expr = &text[inner_start..inner_end];
            if expr.trim().is_empty() {
                return Err(ExprError::new(
                    ErrorKind::Syntax,
                    "no expression inside '${}'",
                    text,
                    start,
                ));
            }
            check_length(text, inner_start, inner_end, limits)?;
            let node = parse(text, inner_start, inner_end, limits.max_depth)?;
            parts.push(Part::Expr {
                node,
                start,
                end: inner_end + 1,
                inner: (inner_start, inner_end),
            });
            pos = inner_end + 1;
        }
        if pos < text.len() {
            parts.push(Part::Text(text[pos..].to_owned()));
        }
        Ok(Self {
            source: text.to_owned(),
            parts,
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has no `${…}` and evaluates to its own text.
    pub fn is_literal(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Expr { .. }))
    }

    /// Whether the template is exactly one `${…}` and so yields a typed value.
    pub fn is_single_expression(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expr { .. }])
    }

    /// The text of each `${…}` (without the braces) and its byte offset.
    pub fn expressions(&self) -> impl Iterator<Item = (&str, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr { inner, .. } => Some((&self.source[inner.0..inner.1], inner.0)),
            Part::Text(_) => None,
        })
    }

    /// The name of every `#name(...)` call and its byte offset, for static checks.
    pub fn function_calls(&self) -> Vec<(&str, usize)> {
        let mut calls = Vec::new();
        for part in &self.parts {
            if let Part::Expr { node, .. } = part {
                node.for_each_call(&mut |name, at| calls.push((name, at)));
            }
        }
        calls
    }

    /// Spinnaker's key for this template in `expressionEvaluationSummary`: the
    /// expressions without their `${ }`, with any literal text between them.
    pub fn summary_key(&self) -> String {
        if let [Part::Expr { inner, .. }] = self.parts.as_slice() {
            return self.source[inner.0..inner.1].trim().to_owned();
        }
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Expr { inner, .. } => self.source[inner.0..inner.1].trim(),
            })
            .collect()
    }

    /// Evaluates against `context` (the root object: `execution`, `trigger`,
    /// `parameters`, …). One budget of [`Limits`] covers the whole template.
    ///
    /// A single `${…}` yields its typed value, `null` included. In a longer text each
    /// part is printed (lists as `a,b`, maps as `{k=v}`, decimals as Java does) and a
    /// part that is `null` keeps its `${…}` source, as Spinnaker does, with an
    /// [`UnresolvedPart`](WarningKind::UnresolvedPart) warning.
    pub fn evaluate(
        &self,
        context: &Value,
        functions: &FunctionRegistry,
        limits: &Limits,
    ) -> Result<Evaluation, ExprError> {
        let mut ev = Eval::new(&self.source, context, functions, limits);
        let root = Val::Ref(context);
        if let [Part::Expr { node, .. }] = self.parts.as_slice() {
            let val = ev.eval(node, &root)?;
            let value = ev.materialize(val, node.at)?;
            if let Value::String(s) = &value {
                ev.check_string(s.len(), node.at)?;
            }
            return Ok(Evaluation {
                value,
                warnings: ev.warnings,
            });
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr {
                    node, start, end, ..
                } => {
                    let val = ev.eval(node, &root)?;
                    if val.is_null() {
                        let raw = &self.source[*start..*end];
                        ev.warn(
                            WarningKind::UnresolvedPart,
                            format!("{raw} is null; its text was kept"),
                            *start,
                            None,
                        );
                        out.push_str(raw);
                    } else {
                        let text = ev.print(&val, Style::Convert, node.at)?;
                        out.push_str(&text);
                    }
                    ev.check_string(out.len(), node.at)?;
                }
            }
        }
        Ok(Evaluation {
            value: Value::String(out),
            warnings: ev.warnings,
        })
    }
}

/// A bare expression without `${ }`, as Spinnaker stores `stageEnabled.expression`
/// and `checkPreconditions` expressions.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    source: String,
    node: Node,
}

impl Expression {
    /// Parses an expression such as `parameters.env == 'prod'`.
    pub fn parse(text: &str, limits: &Limits) -> Result<Self, ExprError> {
        check_length(text, 0, text.len(), limits)?;
        let node = parse(text, 0, text.len(), limits.max_depth)?;
        Ok(Self {
            source: text.to_owned(),
            node,
        })
    }

    /// The expression text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `context`; see [`Template::evaluate`].
    pub fn evaluate(
        &self,
        context: &Value,
        functions: &FunctionRegistry,
        limits: &Limits,
    ) -> Result<Evaluation, ExprError> {
        let mut ev = Eval::new(&self.source, context, functions, limits);
        let val = ev.eval(&self.node, &Val::Ref(context))?;
        let value = ev.materialize(val, self.node.at)?;
        Ok(Evaluation {
            value,
            warnings: ev.warnings,
        })
    }
}

fn check_length(text: &str, start: usize, end: usize, limits: &Limits) -> Result<(), ExprError> {
    let len = end - start;
    if len > limits.max_expression_length {
        return Err(ExprError::new(
            ErrorKind::LengthLimit,
            format!(
                "expression of {len} bytes exceeds the limit of {} bytes",
                limits.max_expression_length
            ),
            text,
            start,
        ));
    }
    Ok(())
}

/// Finds the `}` that closes a `${` whose body starts at `from`, skipping quoted
/// text and balanced brackets.
fn closing_brace(text: &str, from: usize) -> Result<usize, ExprError> {
    let bytes = text.as_bytes();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut pos = from;
    while pos < bytes.len() {
        let b = bytes[pos];
        match b {
            b'}' if stack.is_empty() => return Ok(pos),
            b'{' | b'[' | b'(' => stack.push((b, pos)),
            b'}' | b']' | b')' => {
                let expected = match b {
                    b'}' => b'{',
                    b']' => b'[',
                    _ => b'(',
                };
                match stack.pop() {
                    Some((open, _)) if open == expected => {}
                    Some((open, at)) => {
                        return Err(ExprError::new(
                            ErrorKind::Syntax,
                            format!(
                                "found '{}' but the most recent opening bracket is '{}'",
                                b as char, open as char
                            ),
                            text,
                            pos,
                        )
                        .with_hint(format!("the '{}' here is not closed", open as char))
                        .with_position_note(text, at));
                    }
                    None => {
                        return Err(ExprError::new(
                            ErrorKind::Syntax,
                            format!("found '{}' without an opening bracket", b as char),
                            text,
                            pos,
                        ));
                    }
                }
            }
            b'\'' | b'"' => match text[pos + 1..].find(b as char) {
                Some(close) => pos += close + 1,
                None => {
                    return Err(ExprError::new(
                        ErrorKind::Syntax,
                        "unterminated string literal",
                        text,
                        pos,
                    ));
                }
            },
            _ => {}
        }
        pos += 1;
    }
    let (kind_at, message) = match stack.last() {
        Some((open, at)) => (*at, format!("'{}' is never closed", *open as char)),
        None => (from - 2, "'${' has no closing '}'".to_owned()),
    };
    Err(ExprError::new(ErrorKind::Syntax, message, text, kind_at))
}

impl ExprError {
    /// Appends "(opened at column N)" to the hint.
    fn with_position_note(mut self, text: &str, at: usize) -> Self {
        let column = text[..at]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1;
        let note = format!("opened at column {column}");
        self.hint = Some(match self.hint {
            Some(h) => format!("{h} ({note})"),
            None => note,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, ctx: &Value) -> Result<Value, ExprError> {
        let limits = Limits::default();
        Template::parse(text, &limits)?
            .evaluate(ctx, &FunctionRegistry::default(), &limits)
            .map(|e| e.value)
    }

    #[test]
    fn single_expression_is_typed_and_text_is_concatenated() {
        let ctx = json!({"n": 3, "tag": "v1"});
        assert_eq!(eval("${ n }", &ctx).unwrap(), json!(3));
        assert_eq!(eval("a-${n}-${tag}", &ctx).unwrap(), json!("a-3-v1"));
        assert_eq!(eval(" ${n}", &ctx).unwrap(), json!(" 3"));
        assert_eq!(
            eval("x ${missing} y", &ctx).unwrap(),
            json!("x ${missing} y")
        );
        assert_eq!(eval("${ {'a':1}['a'] }", &ctx).unwrap(), json!(1));
        assert_eq!(eval("${ '}' }", &ctx).unwrap(), json!("}"));
        assert_eq!(eval("plain", &ctx).unwrap(), json!("plain"));
    }

    #[test]
    fn unclosed_templates() {
        let ctx = json!({});
        let err = eval("a ${b", &ctx).unwrap_err();
        assert_eq!((err.kind, err.column), (ErrorKind::Syntax, 3));
        let err = eval("${ (1 }", &ctx).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Syntax);
        assert!(eval("${}", &ctx).is_err());
    }
}
