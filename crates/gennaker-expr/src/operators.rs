//! Operators with Java's semantics: conditions, arithmetic, comparison, concatenation.

use std::cmp::Ordering;

use serde_json::Value;

use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::error::{ErrorKind, ExprError};
use crate::eval::{Eval, article};
use crate::value::{Num, Style, Val, compare, equal, string_to_bool};

impl<'a> Eval<'a> {
    /// A condition for `and`, `or`, `not` and `?:`; strings convert as in Spring
    /// (`'true'`, `'yes'`, `'on'`, `'1'`), since pipeline parameters are strings.
    pub(crate) fn condition(
        &self,
        value: &Val<'a>,
        at: usize,
        what: &str,
    ) -> Result<bool, ExprError> {
        match value.json() {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => string_to_bool(s).ok_or_else(|| {
                self.error(
                    ErrorKind::Type,
                    format!("{what} must be true or false, got the string '{s}'"),
                    at,
                )
            }),
            _ => Err(self.error(
                ErrorKind::Type,
                format!(
                    "{what} must be true or false, got {}",
                    article(value.type_name())
                ),
                at,
            )),
        }
    }

    pub(crate) fn unary(
        &mut self,
        op: UnaryOp,
        value: Val<'a>,
        node: &'a Node,
    ) -> Result<Val<'a>, ExprError> {
        if op == UnaryOp::Not {
            let b = self.condition(&value, node.at, "the operand of 'not'")?;
            return Ok(Val::Own(Value::Bool(!b)));
        }
        let result = match value.as_num() {
            Some(n) if op == UnaryOp::Plus => Some(n),
            Some(Num::Int(i)) => i.checked_neg().map(Num::Int),
            Some(Num::Float(f)) => Some(Num::Float(-f)),
            None => {
                return Err(self.error(
                    ErrorKind::Type,
                    format!("cannot negate {}", article(value.type_name())),
                    node.at,
                ));
            }
        };
        self.number(result, node)
    }

    fn number(&self, result: Option<Num>, node: &'a Node) -> Result<Val<'a>, ExprError> {
        result
            .and_then(Num::to_value)
            .map(Val::Own)
            .ok_or_else(|| self.error(ErrorKind::Arithmetic, "numeric overflow", node.at))
    }

    pub(crate) fn binary(
        &mut self,
        op: BinaryOp,
        lhs: &'a Node,
        rhs: &'a Node,
        node: &'a Node,
        this: &Val<'a>,
    ) -> Result<Val<'a>, ExprError> {
        let left = self.eval(lhs, this)?;
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            let what = format!("the left operand of '{}'", op.symbol());
            let l = self.condition(&left, lhs.at, &what)?;
            if l == (op == BinaryOp::Or) {
                return Ok(Val::Own(Value::Bool(l)));
            }
            let right = self.eval(rhs, this)?;
            let what = format!("the right operand of '{}'", op.symbol());
            let r = self.condition(&right, rhs.at, &what)?;
            return Ok(Val::Own(Value::Bool(r)));
        }
        let right = self.eval(rhs, this)?;
        match op {
            BinaryOp::Eq | BinaryOp::Ne => {
                let l = self.view(&left, node.at)?;
                let r = self.view(&right, node.at)?;
                let same = equal(&l, &r);
                Ok(Val::Own(Value::Bool(same == (op == BinaryOp::Eq))))
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                self.ordering(op, &left, &right, node)
            }
            BinaryOp::Matches => crate::methods::matches(self, &left, &right, node),
            BinaryOp::Add => self.add(left, right, node),
            _ => self.arithmetic(op, &left, &right, node),
        }
    }

    fn ordering(
        &mut self,
        op: BinaryOp,
        left: &Val<'a>,
        right: &Val<'a>,
        node: &'a Node,
    ) -> Result<Val<'a>, ExprError> {
        let l = self.view(left, node.at)?;
        let r = self.view(right, node.at)?;
        let Some(order) = compare(&l, &r) else {
            let hint = if l.is_string() != r.is_string() {
                "convert the string with #toInt(...) or #toFloat(...)"
            } else {
                "only numbers, strings and booleans can be ordered"
            };
            return Err(self
                .error(
                    ErrorKind::Type,
                    format!(
                        "cannot compare {} with {}",
                        article(left.type_name()),
                        article(right.type_name())
                    ),
                    node.at,
                )
                .with_hint(hint));
        };
        let result = match op {
            BinaryOp::Lt => order == Ordering::Less,
            BinaryOp::Le => order != Ordering::Greater,
            BinaryOp::Gt => order == Ordering::Greater,
            _ => order != Ordering::Less,
        };
        Ok(Val::Own(Value::Bool(result)))
    }

    /// `+`: numbers add; if either side is a string the other is converted to text and
    /// the two are concatenated (`'v' + 1` is `v1`, `'a' + null` is `anull`).
    fn add(&mut self, left: Val<'a>, right: Val<'a>, node: &'a Node) -> Result<Val<'a>, ExprError> {
        if left.as_str().is_some() || right.as_str().is_some() {
            let mut text = self.print(&left, Style::Convert, node.at)?;
            let tail = self.print(&right, Style::Convert, node.at)?;
            self.check_string(text.len() + tail.len(), node.at)?;
            self.charge_bytes(text.len() + tail.len(), node.at)?;
            text.push_str(&tail);
            return Ok(Val::Own(Value::String(text)));
        }
        self.arithmetic(BinaryOp::Add, &left, &right, node)
    }

    fn arithmetic(
        &mut self,
        op: BinaryOp,
        left: &Val<'a>,
        right: &Val<'a>,
        node: &'a Node,
    ) -> Result<Val<'a>, ExprError> {
        let (Some(l), Some(r)) = (left.as_num(), right.as_num()) else {
            let hint = (left.as_str().is_some() || right.as_str().is_some())
                .then(|| "convert the string with #toInt(...) or #toFloat(...)".to_owned());
            return Err(self
                .error(
                    ErrorKind::Type,
                    format!(
                        "operator '{}' cannot be applied to {} and {}",
                        op.symbol(),
                        article(left.type_name()),
                        article(right.type_name())
                    ),
                    node.at,
                )
                .with_hint_opt(hint));
        };
        let divides = matches!(op, BinaryOp::Div | BinaryOp::Mod);
        if divides && r.as_f64() == 0.0 {
            return Err(self.error(ErrorKind::Arithmetic, "division by zero", node.at));
        }
        let result = match (l, r) {
            (Num::Int(a), Num::Int(b)) => match op {
                BinaryOp::Add => a.checked_add(b),
                BinaryOp::Sub => a.checked_sub(b),
                BinaryOp::Mul => a.checked_mul(b),
                BinaryOp::Div => a.checked_div(b),
                _ => a.checked_rem(b),
            }
            .map(Num::Int),
            _ => {
                let (a, b) = (l.as_f64(), r.as_f64());
                Some(Num::Float(match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div => a / b,
                    _ => a % b,
                }))
            }
        };
        self.number(result, node)
    }
}
