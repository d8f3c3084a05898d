//! Selection (`.?[ ]`, `.^[ ]`, `.$[ ]`) and projection (`.![ ]`) over lists and maps.

use serde_json::{Map, Value};

use crate::ast::{Node, Selection};
use crate::error::{ErrorKind, ExprError};
use crate::eval::{Eval, article};
use crate::value::Val;

enum Elements<'a> {
    List(Vec<Val<'a>>),
    Map(Vec<(String, Val<'a>)>),
}

impl<'a> Eval<'a> {
    /// The elements of a list, or the entries of a map (as `(key, value)`).
    fn elements(&mut self, target: Val<'a>, node: &'a Node) -> Result<Elements<'a>, ExprError> {
        Ok(match target {
            Val::Ref(Value::Array(items)) => Elements::List(items.iter().map(Val::Ref).collect()),
            Val::Own(Value::Array(items)) => {
                Elements::List(items.into_iter().map(Val::Own).collect())
            }
            Val::List(items) => Elements::List(items),
            Val::Ref(Value::Object(map)) => {
                Elements::Map(map.iter().map(|(k, v)| (k.clone(), Val::Ref(v))).collect())
            }
            Val::Own(Value::Object(map)) => {
                Elements::Map(map.into_iter().map(|(k, v)| (k, Val::Own(v))).collect())
            }
            other => {
                return Err(self.error(
                    ErrorKind::Type,
                    format!(
                        "selection and projection need a list or a map, got {}",
                        article(other.type_name())
                    ),
                    node.at,
                ));
            }
        })
    }

    /// A map entry as SpEL's `Map.Entry`: `#this.key`, `#this.value`, or bare
    /// `key`/`value`.
    fn entry(&mut self, key: &str, value: &Val<'a>, at: usize) -> Result<Val<'a>, ExprError> {
        let value = match value {
            Val::Ref(v) => self.copy(v, at)?,
            other => self.materialize(other.clone(), at)?,
        };
        let mut map = Map::new();
        map.insert("key".to_owned(), Value::String(key.to_owned()));
        map.insert("value".to_owned(), value);
        Ok(Val::Own(Value::Object(map)))
    }

    pub(crate) fn select(
        &mut self,
        target: Val<'a>,
        which: Selection,
        condition: &'a Node,
        node: &'a Node,
    ) -> Result<Val<'a>, ExprError> {
        match self.elements(target, node)? {
            Elements::List(items) => {
                let mut kept = Vec::new();
                for item in items {
                    self.charge(1, node.at)?;
                    if self.criterion(condition, &item)? {
                        if which == Selection::First {
                            return Ok(item);
                        }
                        kept.push(item);
                    }
                }
                Ok(match which {
                    Selection::All => Val::List(kept),
                    _ => kept.pop().unwrap_or_else(Val::null),
                })
            }
            Elements::Map(entries) => {
                let mut kept = Map::new();
                for (key, value) in entries {
                    self.charge(1, node.at)?;
                    let entry = self.entry(&key, &value, node.at)?;
                    if self.criterion(condition, &entry)? {
                        if which == Selection::First {
                            kept.insert(key, self.materialize(value, node.at)?);
                            return Ok(Val::Own(Value::Object(kept)));
                        }
                        if which == Selection::Last {
                            kept.clear();
                        }
                        kept.insert(key, self.materialize(value, node.at)?);
                    }
                }
                if which != Selection::All && kept.is_empty() {
                    return Ok(Val::null());
                }
                Ok(Val::Own(Value::Object(kept)))
            }
        }
    }

    fn criterion(&mut self, condition: &'a Node, item: &Val<'a>) -> Result<bool, ExprError> {
        let result = self.eval(condition, item)?;
        match result.json() {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(self.error(
                ErrorKind::Type,
                format!(
                    "a selection criterion must be true or false, got {}",
                    article(result.type_name())
                ),
                condition.at,
            )),
        }
    }

    pub(crate) fn project(
        &mut self,
        target: Val<'a>,
        expr: &'a Node,
        node: &'a Node,
    ) -> Result<Val<'a>, ExprError> {
        let mut out = Vec::new();
        match self.elements(target, node)? {
            Elements::List(items) => {
                for item in items {
                    self.charge(1, node.at)?;
                    out.push(self.eval(expr, &item)?);
                }
            }
            Elements::Map(entries) => {
                for (key, value) in entries {
                    self.charge(1, node.at)?;
                    let entry = self.entry(&key, &value, node.at)?;
                    out.push(self.eval(expr, &entry)?);
                }
            }
        }
        Ok(Val::List(out))
    }
}
