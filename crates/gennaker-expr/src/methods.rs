//! The allow-listed methods, with Java's semantics. Nothing else is callable: there is
//! no reflection, so no path from a value to a class, a class loader or a process.

use serde_json::Value;

use crate::ast::Node;
use crate::error::{ErrorKind, ExprError};
use crate::eval::{Eval, article, suggest};
use regex::Regex;

use crate::pattern::{self, is_literal, java_replacement, java_split, java_split_literal};
use crate::value::{Num, Style, Val, equal};

const STRING_METHODS: &[&str] = &[
    "charAt",
    "concat",
    "contains",
    "endsWith",
    "equals",
    "equalsIgnoreCase",
    "indexOf",
    "isEmpty",
    "lastIndexOf",
    "length",
    "matches",
    "replace",
    "replaceAll",
    "split",
    "startsWith",
    "substring",
    "toLowerCase",
    "toString",
    "toUpperCase",
    "trim",
];
const LIST_METHODS: &[&str] = &["contains", "equals", "get", "isEmpty", "size", "toString"];
const MAP_METHODS: &[&str] = &[
    "containsKey",
    "containsValue",
    "equals",
    "get",
    "isEmpty",
    "keySet",
    "size",
    "toString",
    "values",
];
const SCALAR_METHODS: &[&str] = &["equals", "toString"];

fn allowed(target: &Val<'_>) -> &'static [&'static str] {
    match target.json() {
        None | Some(Value::Array(_)) => LIST_METHODS,
        Some(Value::String(_)) => STRING_METHODS,
        Some(Value::Object(_)) => MAP_METHODS,
        Some(_) => SCALAR_METHODS,
    }
}

/// Whether `name` is an allowed method of this value (used for hints).
pub(crate) fn exists(target: &Val<'_>, name: &str) -> bool {
    allowed(target).contains(&name)
}

/// Calls an allow-listed method.
pub(crate) fn call<'a>(
    ev: &mut Eval<'a>,
    target: Val<'a>,
    name: &str,
    args: Vec<Val<'a>>,
    node: &Node,
) -> Result<Val<'a>, ExprError> {
    let methods = allowed(&target);
    if !methods.contains(&name) {
        return Err(unknown(ev, &target, name, methods, node));
    }
    let call = Call {
        name,
        args: &args,
        at: node.at,
    };
    match target.json() {
        Some(Value::String(_)) => string_method(ev, &target, &call),
        None | Some(Value::Array(_)) => list_method(ev, target, &call),
        Some(Value::Object(_)) => map_method(ev, target, &call),
        Some(_) => scalar_method(ev, &target, &call),
    }
}

fn unknown(
    ev: &Eval<'_>,
    target: &Val<'_>,
    name: &str,
    methods: &[&str],
    node: &Node,
) -> ExprError {
    let hint = if ev.functions.function(name).is_some() {
        Some(format!(
            "helper functions are called with '#': #{name}(...)"
        ))
    } else if name == "size" && target.as_str().is_some() {
        Some("use length()".to_owned())
    } else if name == "length" && target.as_str().is_none() {
        Some("use size()".to_owned())
    } else {
        suggest(name, methods.iter().copied()).map(|s| format!("did you mean '{s}()'?"))
    };
    let mut allowed_list = methods.join(", ");
    allowed_list.insert_str(0, "allowed: ");
    ev.error(
        ErrorKind::Method,
        format!(
            "method '{name}' is not available on {}",
            article(target.type_name())
        ),
        node.at,
    )
    .with_hint(hint.unwrap_or(allowed_list))
}

/// A method call's name, arguments and position.
struct Call<'c, 'a> {
    name: &'c str,
    args: &'c [Val<'a>],
    at: usize,
}

impl<'a> Call<'_, 'a> {
    fn arity(&self, ev: &Eval<'a>, min: usize, max: usize) -> Result<(), ExprError> {
        let n = self.args.len();
        if (min..=max).contains(&n) {
            return Ok(());
        }
        let expected = match (min, max) {
            (0, 0) => "no arguments".to_owned(),
            (1, 1) => "1 argument".to_owned(),
            (a, b) if a == b => format!("{a} arguments"),
            (a, b) => format!("{a} or {b} arguments"),
        };
        Err(ev.error(
            ErrorKind::Method,
            format!("{}() takes {expected}, got {n}", self.name),
            self.at,
        ))
    }

    /// A string argument; numbers and booleans convert as Spring would.
    fn string(&self, ev: &mut Eval<'a>, i: usize) -> Result<String, ExprError> {
        let arg = self.args.get(i).cloned().unwrap_or_else(Val::null);
        match arg.json() {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(_) | Value::Bool(_)) => ev.print(&arg, Style::Java, self.at),
            _ => Err(ev.error(
                ErrorKind::Method,
                format!(
                    "argument {} of {}() must be a string, got {}",
                    i + 1,
                    self.name,
                    article(arg.type_name())
                ),
                self.at,
            )),
        }
    }

    fn int(&self, ev: &Eval<'a>, i: usize) -> Result<i64, ExprError> {
        let arg = self.args.get(i);
        let value = arg.and_then(|a| match a.as_num() {
            Some(Num::Int(n)) => Some(n),
            _ => a.as_str().and_then(|s| s.trim().parse().ok()),
        });
        value.ok_or_else(|| {
            ev.error(
                ErrorKind::Method,
                format!(
                    "argument {} of {}() must be an integer, got {}",
                    i + 1,
                    self.name,
                    article(arg.map_or("null", Val::type_name))
                ),
                self.at,
            )
        })
    }
}

fn text(s: String) -> Val<'static> {
    Val::Own(Value::String(s))
}

fn boolean(b: bool) -> Val<'static> {
    Val::Own(Value::Bool(b))
}

fn int(n: usize) -> Val<'static> {
    Val::Own(Value::from(i64::try_from(n).unwrap_or(i64::MAX)))
}

fn char_index(s: &str, byte: usize) -> usize {
    s[..byte].chars().count()
}

/// Byte offset of a character index, or `None` past the end.
fn byte_index(s: &str, chars: usize) -> Option<usize> {
    if chars == 0 {
        return Some(0);
    }
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .nth(chars)
}

fn string_method<'a>(
    ev: &mut Eval<'a>,
    target: &Val<'a>,
    call: &Call<'_, 'a>,
) -> Result<Val<'a>, ExprError> {
    let s = target.as_str().unwrap_or_default();
    let at = call.at;
    ev.charge_bytes(s.len(), at)?;
    Ok(match call.name {
        "length" => {
            call.arity(ev, 0, 0)?;
            int(s.chars().count())
        }
        "isEmpty" => {
            call.arity(ev, 0, 0)?;
            boolean(s.is_empty())
        }
        "toString" => {
            call.arity(ev, 0, 0)?;
            text(s.to_owned())
        }
        "toUpperCase" | "toLowerCase" => {
            call.arity(ev, 0, 0)?;
            let out = if call.name == "toUpperCase" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            };
            ev.check_string(out.len(), at)?;
            text(out)
        }
        "trim" => {
            call.arity(ev, 0, 0)?;
            text(s.trim_matches(|c| c <= ' ').to_owned())
        }
        "contains" | "startsWith" | "endsWith" => {
            call.arity(ev, 1, 1)?;
            let needle = call.string(ev, 0)?;
            boolean(match call.name {
                "contains" => s.contains(&needle),
                "startsWith" => s.starts_with(&needle),
                _ => s.ends_with(&needle),
            })
        }
        "equals" => {
            call.arity(ev, 1, 1)?;
            boolean(call.args[0].as_str() == Some(s))
        }
        "equalsIgnoreCase" => {
            call.arity(ev, 1, 1)?;
            boolean(
                call.args[0]
                    .as_str()
                    .is_some_and(|o| o.to_lowercase() == s.to_lowercase()),
            )
        }
        "concat" => {
            call.arity(ev, 1, 1)?;
            let tail = call.string(ev, 0)?;
            ev.check_string(s.len() + tail.len(), at)?;
            text(format!("{s}{tail}"))
        }
        "charAt" => {
            call.arity(ev, 1, 1)?;
            let i = call.int(ev, 0)?;
            let c = usize::try_from(i).ok().and_then(|i| s.chars().nth(i));
            match c {
                Some(c) => text(c.to_string()),
                None => {
                    return Err(ev.error(
                        ErrorKind::Index,
                        format!(
                            "charAt({i}) is out of bounds for a string of length {}",
                            s.chars().count()
                        ),
                        at,
                    ));
                }
            }
        }
        "substring" => substring(ev, s, call)?,
        "indexOf" | "lastIndexOf" => index_of(ev, s, call)?,
        "replace" => {
            call.arity(ev, 2, 2)?;
            let from = call.string(ev, 0)?;
            let to = call.string(ev, 1)?;
            let count = if from.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(from.as_str()).count()
            };
            let len = (s.len() - count * from.len()).saturating_add(count.saturating_mul(to.len()));
            ev.check_string(len, at)?;
            ev.charge_bytes(len, at)?;
            text(s.replace(from.as_str(), &to))
        }
        "replaceAll" => replace_all(ev, s, call)?,
        "split" => {
            call.arity(ev, 1, 1)?;
            let pattern = call.string(ev, 0)?;
            let parts = if is_literal(&pattern) && !pattern.is_empty() {
                java_split_literal(&pattern, s)
            } else {
                with_regex(ev, &pattern, false, at, |re| java_split(re, s))?
            };
            ev.check_collection(parts.len(), at)?;
            ev.charge(parts.len() as u64 / 16, at)?;
            Val::Own(Value::Array(
                parts
                    .into_iter()
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            ))
        }
        "matches" => {
            call.arity(ev, 1, 1)?;
            let pattern = call.string(ev, 0)?;
            boolean(regex_matches(ev, s, &pattern, at)?)
        }
        _ => {
            return Err(ev.error(
                ErrorKind::Method,
                format!("method '{}' is not available", call.name),
                at,
            ));
        }
    })
}

fn substring<'a>(ev: &mut Eval<'a>, s: &str, call: &Call<'_, 'a>) -> Result<Val<'a>, ExprError> {
    call.arity(ev, 1, 2)?;
    let length = s.chars().count() as i64;
    let begin = call.int(ev, 0)?;
    let end = if call.args.len() == 2 {
        call.int(ev, 1)?
    } else {
        length
    };
    if begin < 0 || end > length || begin > end {
        return Err(ev.error(
            ErrorKind::Index,
            format!("substring({begin}, {end}) is out of bounds for a string of length {length}"),
            call.at,
        ));
    }
    let start = byte_index(s, begin as usize).unwrap_or(s.len());
    let stop = byte_index(s, end as usize).unwrap_or(s.len());
    Ok(text(s[start..stop].to_owned()))
}

fn index_of<'a>(ev: &mut Eval<'a>, s: &str, call: &Call<'_, 'a>) -> Result<Val<'a>, ExprError> {
    call.arity(ev, 1, 2)?;
    let needle = call.string(ev, 0)?;
    let from = if call.args.len() == 2 {
        Some(call.int(ev, 1)?)
    } else {
        None
    };
    let found = if call.name == "indexOf" {
        let start_char = from.unwrap_or(0).max(0) as usize;
        byte_index(s, start_char)
            .and_then(|start| s[start..].find(&needle).map(|i| char_index(s, start + i)))
    } else {
        let limit = from.unwrap_or(i64::MAX);
        if limit < 0 {
            None
        } else {
            s.rmatch_indices(needle.as_str())
                .map(|(i, _)| char_index(s, i))
                .find(|&i| i as i64 <= limit)
                .or_else(|| (needle.is_empty()).then(|| s.chars().count().min(limit as usize)))
        }
    };
    Ok(Val::Own(Value::from(found.map_or(-1, |i| i as i64))))
}

fn replace_all<'a>(ev: &mut Eval<'a>, s: &str, call: &Call<'_, 'a>) -> Result<Val<'a>, ExprError> {
    call.arity(ev, 2, 2)?;
    let at = call.at;
    let pattern = call.string(ev, 0)?;
    let replacement = call.string(ev, 1)?;
    let replacement = java_replacement(&replacement).map_err(|e| {
        ev.error(ErrorKind::Regex, format!("replaceAll(): {e}"), at)
            .with_hint("write a literal '$' as '\\$'")
    })?;
    let max = ev.limits.max_string_length;
    let budget = ev.limits.max_steps;
    let (out, replaced) = with_regex(ev, &pattern, false, at, |re| {
        let mut out = String::new();
        let mut last = 0;
        let mut replaced = 0u64;
        for caps in re.captures_iter(s) {
            let Some(m) = caps.get(0) else { continue };
            out.push_str(&s[last..m.start()]);
            caps.expand(&replacement, &mut out);
            last = m.end();
            replaced += 1;
            // Stop early; the checks below report which limit was passed.
            if out.len() > max || replaced > budget {
                return (out, replaced);
            }
        }
        out.push_str(&s[last..]);
        (out, replaced)
    })?;
    ev.check_string(out.len(), at)?;
    ev.charge(replaced, at)?;
    Ok(text(out))
}

/// Java's `String.matches`: the whole string must match.
fn regex_matches(ev: &mut Eval<'_>, s: &str, pattern: &str, at: usize) -> Result<bool, ExprError> {
    // Plain text needs no automaton; this keeps `status matches 'SUCCEEDED'` cheap.
    if is_literal(pattern) {
        return Ok(s == pattern);
    }
    ev.charge_bytes(s.len() + pattern.len() * 16, at)?;
    with_regex(ev, pattern, true, at, |re| re.is_match(s))
}

fn with_regex<R>(
    ev: &Eval<'_>,
    pattern: &str,
    whole: bool,
    at: usize,
    f: impl FnOnce(&Regex) -> R,
) -> Result<R, ExprError> {
    let limits = ev.limits;
    pattern::with_regex(pattern, whole, limits.max_regex_size, limits.max_depth, f)
        .map_err(|e| ev.error(ErrorKind::Regex, e, at))
}

/// The `matches` operator.
pub(crate) fn matches<'a>(
    ev: &mut Eval<'a>,
    left: &Val<'a>,
    right: &Val<'a>,
    node: &Node,
) -> Result<Val<'a>, ExprError> {
    let (Some(s), Some(pattern)) = (left.as_str(), right.as_str()) else {
        return Err(ev.error(
            ErrorKind::Type,
            format!(
                "'matches' needs a string on both sides, got {} and {}",
                article(left.type_name()),
                article(right.type_name())
            ),
            node.at,
        ));
    };
    Ok(boolean(regex_matches(ev, s, pattern, node.at)?))
}

fn list_method<'a>(
    ev: &mut Eval<'a>,
    target: Val<'a>,
    call: &Call<'_, 'a>,
) -> Result<Val<'a>, ExprError> {
    let at = call.at;
    let len = match &target {
        Val::List(items) => items.len(),
        other => other.json().and_then(Value::as_array).map_or(0, Vec::len),
    };
    match call.name {
        "size" => {
            call.arity(ev, 0, 0)?;
            Ok(int(len))
        }
        "isEmpty" => {
            call.arity(ev, 0, 0)?;
            Ok(boolean(len == 0))
        }
        "get" => {
            call.arity(ev, 1, 1)?;
            let i = call.int(ev, 0)?;
            let Some(i) = usize::try_from(i).ok().filter(|&i| i < len) else {
                return Err(ev.error(
                    ErrorKind::Index,
                    format!("get({i}) is out of bounds for {len} elements"),
                    at,
                ));
            };
            Ok(match target {
                Val::List(mut items) => items.swap_remove(i),
                Val::Ref(Value::Array(items)) => Val::Ref(&items[i]),
                Val::Own(Value::Array(mut items)) => Val::Own(items.swap_remove(i)),
                _ => Val::null(),
            })
        }
        "contains" => {
            call.arity(ev, 1, 1)?;
            let needle = ev.view(&call.args[0], at)?.into_owned();
            let list = ev.view(&target, at)?;
            let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
            ev.charge(items.len() as u64 / 16, at)?;
            Ok(boolean(items.iter().any(|item| equal(item, &needle))))
        }
        _ => scalar_method(ev, &target, call),
    }
}

fn map_method<'a>(
    ev: &mut Eval<'a>,
    target: Val<'a>,
    call: &Call<'_, 'a>,
) -> Result<Val<'a>, ExprError> {
    let at = call.at;
    let Some(Value::Object(map)) = target.json() else {
        return scalar_method(ev, &target, call);
    };
    Ok(match call.name {
        "size" => {
            call.arity(ev, 0, 0)?;
            int(map.len())
        }
        "isEmpty" => {
            call.arity(ev, 0, 0)?;
            boolean(map.is_empty())
        }
        "containsKey" => {
            call.arity(ev, 1, 1)?;
            let key = call.string(ev, 0)?;
            boolean(map.contains_key(&key))
        }
        "containsValue" => {
            call.arity(ev, 1, 1)?;
            let needle = ev.view(&call.args[0], at)?.into_owned();
            ev.charge(map.len() as u64 / 16, at)?;
            boolean(map.values().any(|v| equal(v, &needle)))
        }
        "keySet" => {
            call.arity(ev, 0, 0)?;
            ev.check_collection(map.len(), at)?;
            ev.charge(map.len() as u64 / 16, at)?;
            Val::Own(Value::Array(
                map.keys().map(|k| Value::String(k.clone())).collect(),
            ))
        }
        "get" => {
            call.arity(ev, 1, 1)?;
            let key = call.string(ev, 0)?;
            return Ok(match target {
                Val::Ref(Value::Object(map)) => map.get(&key).map_or_else(Val::null, Val::Ref),
                Val::Own(Value::Object(mut map)) => {
                    map.remove(&key).map_or_else(Val::null, Val::Own)
                }
                _ => Val::null(),
            });
        }
        "values" => {
            call.arity(ev, 0, 0)?;
            ev.check_collection(map.len(), at)?;
            return Ok(match target {
                Val::Ref(Value::Object(map)) => Val::List(map.values().map(Val::Ref).collect()),
                Val::Own(Value::Object(map)) => {
                    Val::List(map.into_iter().map(|(_, v)| Val::Own(v)).collect())
                }
                _ => Val::null(),
            });
        }
        _ => return scalar_method(ev, &target, call),
    })
}

/// `toString()` and `equals()`, which every value has.
fn scalar_method<'a>(
    ev: &mut Eval<'a>,
    target: &Val<'a>,
    call: &Call<'_, 'a>,
) -> Result<Val<'a>, ExprError> {
    match call.name {
        "toString" => {
            call.arity(ev, 0, 0)?;
            Ok(text(ev.print(target, Style::Java, call.at)?))
        }
        "equals" => {
            call.arity(ev, 1, 1)?;
            let l = ev.view(target, call.at)?.into_owned();
            let r = ev.view(&call.args[0], call.at)?;
            Ok(boolean(equal(&l, &r)))
        }
        other => Err(ev.error(
            ErrorKind::Method,
            format!(
                "method '{other}' is not available on {}",
                article(target.type_name())
            ),
            call.at,
        )),
    }
}
