//! Recursive-descent parser with SpEL's precedence levels:
//! ternary/elvis < or < and < comparison < `+ -` < `* / %` < unary < postfix.

use serde_json::{Number, Value};

use crate::ast::{BinaryOp, MapKey, Node, NodeKind, Selection, UnaryOp};
use crate::error::{ErrorKind, ExprError};
use crate::lexer::{Tok, Token, tokenize};

/// Parses `source[start..end]` as one expression.
pub(crate) fn parse(
    source: &str,
    start: usize,
    end: usize,
    max_depth: u32,
) -> Result<Node, ExprError> {
    let tokens = tokenize(source, start, end)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        depth: 0,
        max_depth,
    };
    if parser.peek() == &Tok::Eof {
        return Err(parser.error_here(ErrorKind::Syntax, "empty expression"));
    }
    let node = parser.expression()?;
    match parser.peek() {
        Tok::Eof => Ok(node),
        Tok::Assign => Err(parser.assignment()),
        Tok::EqEq | Tok::NotEq | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge => Err(parser
            .error_here(ErrorKind::Syntax, "comparisons cannot be chained")
            .with_hint("group them with parentheses and combine with 'and'/'or'")),
        Tok::RBrace => Err(parser
            .error_here(ErrorKind::Syntax, "unexpected '}'")
            .with_hint("a '}' closes the template only outside quotes and brackets")),
        other => {
            let message = format!("unexpected {} after the expression", other.describe());
            Err(parser.error_here(ErrorKind::Syntax, message))
        }
    }
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    depth: u32,
    max_depth: u32,
}

fn word(tok: &Tok, expected: &str) -> bool {
    matches!(tok, Tok::Ident(name) if name.eq_ignore_ascii_case(expected))
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_nth(0)
    }

    fn peek_nth(&self, n: usize) -> &Tok {
        self.tokens
            .get(self.pos + n)
            .or(self.tokens.last())
            .map_or(&Tok::Eof, |t| &t.tok)
    }

    fn here(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(0, |t| t.start)
    }

    fn prev_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.end)
    }

    /// Consumes the current token, moving its text out: tokens are read once, and
    /// stepping back (only done to report an error) needs just the position.
    fn bump(&mut self) -> Token {
        let last = self.tokens.len().saturating_sub(1);
        match self.tokens.get_mut(self.pos) {
            Some(token) if self.pos < last => {
                self.pos += 1;
                Token {
                    tok: std::mem::replace(&mut token.tok, Tok::Eof),
                    start: token.start,
                    end: token.end,
                }
            }
            Some(token) => token.clone(),
            None => Token {
                tok: Tok::Eof,
                start: self.source.len(),
                end: self.source.len(),
            },
        }
    }

    fn error_here(&self, kind: ErrorKind, message: impl Into<String>) -> ExprError {
        ExprError::new(kind, message, self.source, self.here())
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<Token, ExprError> {
        if self.peek() == tok {
            Ok(self.bump())
        } else {
            let message = format!("expected {what}, found {}", self.peek().describe());
            Err(self.error_here(ErrorKind::Syntax, message))
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.error_here(
                ErrorKind::DepthLimit,
                format!("expression is nested deeper than {} levels", self.max_depth),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Builds a node, refusing trees taller than the depth limit so that evaluation
    /// (which recurses along the tree) stays within the stack.
    fn node(&self, kind: NodeKind, start: usize, at: usize) -> Result<Node, ExprError> {
        let height = kind.child_height() + 1;
        if height > self.max_depth {
            return Err(ExprError::new(
                ErrorKind::DepthLimit,
                format!("expression is nested deeper than {} levels", self.max_depth),
                self.source,
                at,
            ));
        }
        Ok(Node {
            kind,
            start,
            end: self.prev_end().max(start),
            at,
            height,
        })
    }

    fn assignment(&self) -> ExprError {
        self.error_here(
            ErrorKind::Unsupported,
            "assignment ('=') is not supported: expressions cannot modify the pipeline",
        )
        .with_hint("to compare values use '=='")
    }

    fn expression(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let result = self.expression_inner();
        self.leave();
        result
    }

    fn expression_inner(&mut self) -> Result<Node, ExprError> {
        let start = self.here();
        let condition = self.binary(0)?;
        match self.peek() {
            Tok::Question => {
                let at = self.bump().start;
                let then = self.expression()?;
                self.expect(&Tok::Colon, "':' of the ternary operator")?;
                let otherwise = self.expression()?;
                self.node(
                    NodeKind::Ternary {
                        condition: Box::new(condition),
                        then: Box::new(then),
                        otherwise: Box::new(otherwise),
                    },
                    start,
                    at,
                )
            }
            Tok::Elvis => {
                let at = self.bump().start;
                let fallback = self.expression()?;
                self.node(
                    NodeKind::Elvis {
                        value: Box::new(condition),
                        fallback: Box::new(fallback),
                    },
                    start,
                    at,
                )
            }
            Tok::Assign => Err(self.assignment()),
            _ => Ok(condition),
        }
    }

    /// The binary operator at the current token and its precedence
    /// (0 = or, 1 = and, 2 = comparison, 3 = sum, 4 = product).
    fn infix(&self) -> Result<Option<(BinaryOp, u8)>, ExprError> {
        let op = match self.peek() {
            Tok::OrOr => (BinaryOp::Or, 0),
            Tok::AndAnd => (BinaryOp::And, 1),
            Tok::EqEq => (BinaryOp::Eq, 2),
            Tok::NotEq => (BinaryOp::Ne, 2),
            Tok::Lt => (BinaryOp::Lt, 2),
            Tok::Le => (BinaryOp::Le, 2),
            Tok::Gt => (BinaryOp::Gt, 2),
            Tok::Ge => (BinaryOp::Ge, 2),
            Tok::Plus => (BinaryOp::Add, 3),
            Tok::Minus => (BinaryOp::Sub, 3),
            Tok::Star => (BinaryOp::Mul, 4),
            Tok::Slash => (BinaryOp::Div, 4),
            Tok::Percent => (BinaryOp::Mod, 4),
            Tok::Caret => {
                return Err(self.error_here(
                    ErrorKind::Unsupported,
                    "the power operator '^' is not supported",
                ));
            }
            Tok::Ident(name) => match name.to_ascii_lowercase().as_str() {
                "or" => (BinaryOp::Or, 0),
                "and" => (BinaryOp::And, 1),
                "eq" => (BinaryOp::Eq, 2),
                "ne" => (BinaryOp::Ne, 2),
                "lt" => (BinaryOp::Lt, 2),
                "le" => (BinaryOp::Le, 2),
                "gt" => (BinaryOp::Gt, 2),
                "ge" => (BinaryOp::Ge, 2),
                "matches" => (BinaryOp::Matches, 2),
                "div" => (BinaryOp::Div, 4),
                "mod" => (BinaryOp::Mod, 4),
                "instanceof" => {
                    return Err(self
                        .error_here(
                            ErrorKind::Unsupported,
                            "'instanceof' is not supported: expressions cannot name types",
                        )
                        .with_hint("compare a field instead, e.g. type == 'deploy'"));
                }
                "between" => {
                    return Err(self
                        .error_here(ErrorKind::Unsupported, "'between' is not supported")
                        .with_hint("write x >= low and x <= high"));
                }
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(op))
    }

    /// Precedence climbing: operands bind to operators of precedence `min` or higher.
    fn binary(&mut self, min: u8) -> Result<Node, ExprError> {
        let start = self.here();
        let mut lhs = self.unary()?;
        while let Some((op, precedence)) = self.infix()? {
            if precedence < min {
                break;
            }
            let at = self.bump().start;
            let rhs = self.binary(precedence + 1)?;
            lhs = self.node(
                NodeKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                start,
                at,
            )?;
            // SpEL's grammar allows one comparison per level: `a == b == c` is an error,
            // reported by the caller that finds the second operator.
            if precedence == 2 && matches!(self.infix()?, Some((_, 2))) {
                break;
            }
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let start = self.here();
        let op = match self.peek() {
            Tok::Bang => UnaryOp::Not,
            t if word(t, "not") => UnaryOp::Not,
            Tok::Minus => UnaryOp::Neg,
            Tok::Plus => UnaryOp::Plus,
            Tok::IncDec => {
                return Err(self.error_here(
                    ErrorKind::Unsupported,
                    "'++' and '--' are not supported: expressions cannot modify the pipeline",
                ));
            }
            _ => return self.postfix(),
        };
        self.bump();
        self.enter()?;
        let operand = self.unary();
        self.leave();
        let operand = operand?;
        self.node(
            NodeKind::Unary {
                op,
                operand: Box::new(operand),
            },
            start,
            start,
        )
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let start = self.here();
        let mut node = self.primary()?;
        loop {
            let safe = match self.peek() {
                Tok::Dot => false,
                Tok::SafeDot => true,
                Tok::LBracket => {
                    node = self.index(node, start, false)?;
                    continue;
                }
                Tok::IncDec => {
                    return Err(self.error_here(
                        ErrorKind::Unsupported,
                        "'++' and '--' are not supported: expressions cannot modify the pipeline",
                    ));
                }
                _ => return Ok(node),
            };
            self.bump();
            node = self.after_dot(node, start, safe)?;
        }
    }

    fn index(&mut self, target: Node, start: usize, safe: bool) -> Result<Node, ExprError> {
        let at = self.bump().start;
        self.enter()?;
        let index = self.expression();
        self.leave();
        let index = index?;
        self.expect(&Tok::RBracket, "']'")?;
        self.node(
            NodeKind::Index {
                target: Box::new(target),
                index: Box::new(index),
                safe,
            },
            start,
            at,
        )
    }

    fn after_dot(&mut self, target: Node, start: usize, safe: bool) -> Result<Node, ExprError> {
        let which = match self.peek() {
            Tok::Ident(_) => return self.member(target, start, safe),
            Tok::LBracket if safe => return self.index(target, start, true),
            Tok::SelectAll => Some(Selection::All),
            Tok::SelectFirst => Some(Selection::First),
            Tok::SelectLast => Some(Selection::Last),
            Tok::Project => None,
            other => {
                let message = format!(
                    "expected a property or method name after '.', found {}",
                    other.describe()
                );
                return Err(self.error_here(ErrorKind::Syntax, message));
            }
        };
        let at = self.bump().start;
        self.enter()?;
        let inner = self.expression();
        self.leave();
        let inner = Box::new(inner?);
        self.expect(&Tok::RBracket, "']'")?;
        let target = Box::new(target);
        let kind = match which {
            Some(which) => NodeKind::Select {
                target,
                which,
                condition: inner,
                safe,
            },
            None => NodeKind::Project {
                target,
                expr: inner,
                safe,
            },
        };
        self.node(kind, start, at)
    }

    fn member(&mut self, target: Node, start: usize, safe: bool) -> Result<Node, ExprError> {
        let token = self.bump();
        let Tok::Ident(name) = token.tok else {
            return Err(self.error_here(ErrorKind::Syntax, "expected a name"));
        };
        if self.peek() == &Tok::LParen {
            let args = self.arguments()?;
            return self.node(
                NodeKind::Method {
                    target: Some(Box::new(target)),
                    name,
                    args,
                    safe,
                },
                start,
                token.start,
            );
        }
        self.node(
            NodeKind::Property {
                target: Box::new(target),
                name,
                safe,
            },
            start,
            token.start,
        )
    }

    fn arguments(&mut self) -> Result<Vec<Node>, ExprError> {
        self.bump();
        let mut args = Vec::new();
        if self.peek() == &Tok::RParen {
            self.bump();
            return Ok(args);
        }
        loop {
            self.enter()?;
            let arg = self.expression();
            self.leave();
            args.push(arg?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(args);
                }
                other => {
                    let message = format!("expected ',' or ')', found {}", other.describe());
                    return Err(self.error_here(ErrorKind::Syntax, message));
                }
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let start = self.here();
        if matches!(self.peek(), Tok::LBrace) {
            return self.inline();
        }
        let before = self.pos;
        let kind = match self.bump().tok {
            Tok::Int(i) => NodeKind::Literal(Value::from(i)),
            Tok::Float(f) => match Number::from_f64(f) {
                Some(n) => NodeKind::Literal(Value::Number(n)),
                None => {
                    self.pos = before;
                    return Err(self.error_here(ErrorKind::Syntax, "number out of range"));
                }
            },
            Tok::Str(s) => NodeKind::Literal(Value::String(s)),
            Tok::LParen => {
                let inner = self.expression()?;
                self.expect(&Tok::RParen, "')'")?;
                return Ok(inner);
            }
            Tok::Var(name) => {
                if self.peek() == &Tok::LParen {
                    let args = self.arguments()?;
                    NodeKind::Call { name, args }
                } else if name == "this" {
                    NodeKind::This
                } else if name == "root" {
                    NodeKind::Root
                } else {
                    NodeKind::Var(name)
                }
            }
            Tok::Ident(name) => return self.name(name, start),
            other => {
                self.pos = before;
                return Err(match other {
                    Tok::BeanRef => self.error_here(
                        ErrorKind::Unsupported,
                        "bean references ('@name', '&name') are not supported: expressions cannot reach server internals",
                    ),
                    Tok::Assign => self.assignment(),
                    Tok::LBracket => self
                        .error_here(ErrorKind::Syntax, "unexpected '['")
                        .with_hint("inline lists are written {1, 2}"),
                    other => {
                        let message = format!("expected a value, found {}", other.describe());
                        self.error_here(ErrorKind::Syntax, message)
                    }
                });
            }
        };
        self.node(kind, start, start)
    }

    /// A name just consumed: a literal word, a property of the active object, or a
    /// method of it; `T(` and `new X` are refused here.
    fn name(&mut self, name: String, start: usize) -> Result<Node, ExprError> {
        let next = self.peek();
        let refused = if name == "T" && next == &Tok::LParen {
            Some(
                ExprError::new(
                    ErrorKind::Unsupported,
                    "type references T(...) are not supported: expressions cannot reach host types or static methods",
                    self.source,
                    start,
                )
                .with_hint(
                    "use a helper function such as #toInt(...), or a string method such as toUpperCase()",
                ),
            )
        } else if name.eq_ignore_ascii_case("new") && matches!(next, Tok::Ident(_)) {
            Some(ExprError::new(
                ErrorKind::Unsupported,
                "constructors ('new ...') are not supported: expressions cannot create host objects",
                self.source,
                start,
            ))
        } else {
            None
        };
        if let Some(error) = refused {
            return Err(error);
        }
        let kind = if name.eq_ignore_ascii_case("true") {
            NodeKind::Literal(Value::Bool(true))
        } else if name.eq_ignore_ascii_case("false") {
            NodeKind::Literal(Value::Bool(false))
        } else if name.eq_ignore_ascii_case("null") {
            NodeKind::Literal(Value::Null)
        } else if self.peek() == &Tok::LParen {
            let args = self.arguments()?;
            NodeKind::Method {
                target: None,
                name,
                args,
                safe: false,
            }
        } else {
            NodeKind::Ident(name)
        };
        self.node(kind, start, start)
    }

    /// `{}` (empty list), `{:}` (empty map), `{1, 2}` or `{'a': 1, b: 2}`.
    fn inline(&mut self) -> Result<Node, ExprError> {
        let start = self.bump().start;
        self.enter()?;
        let result = self.inline_items(start);
        self.leave();
        result
    }

    fn inline_items(&mut self, start: usize) -> Result<Node, ExprError> {
        if self.peek() == &Tok::RBrace {
            self.bump();
            return self.node(NodeKind::List(Vec::new()), start, start);
        }
        if self.peek() == &Tok::Colon && self.peek_nth(1) == &Tok::RBrace {
            self.bump();
            self.bump();
            return self.node(NodeKind::Map(Vec::new()), start, start);
        }
        let first = self.expression()?;
        if self.peek() == &Tok::Colon {
            return self.inline_map(first, start);
        }
        let mut items = vec![first];
        loop {
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return self.node(NodeKind::List(items), start, start);
                }
                Tok::Comma => {
                    self.bump();
                    items.push(self.expression()?);
                }
                other => return Err(self.unexpected_in_inline(other)),
            }
        }
    }

    fn inline_map(&mut self, first_key: Node, start: usize) -> Result<Node, ExprError> {
        let mut entries = Vec::new();
        let mut key = first_key;
        loop {
            self.expect(&Tok::Colon, "':' after a map key")?;
            let value = self.expression()?;
            let key_kind = match key.kind {
                NodeKind::Ident(name) => MapKey::Name(name),
                _ => MapKey::Expr(key),
            };
            entries.push((key_kind, value));
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return self.node(NodeKind::Map(entries), start, start);
                }
                Tok::Comma => {
                    self.bump();
                    key = self.expression()?;
                }
                other => return Err(self.unexpected_in_inline(other)),
            }
        }
    }

    fn unexpected_in_inline(&self, found: &Tok) -> ExprError {
        let message = format!("expected ',' or '}}', found {}", found.describe());
        self.error_here(ErrorKind::Syntax, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, ExprError> {
        parse(text, 0, text.len(), 64)
    }

    #[test]
    fn precedence() {
        let node = parse_str("1 + 2 * 3 == 7 and not false").unwrap();
        let NodeKind::Binary { op, lhs, .. } = node.kind else {
            panic!("expected and");
        };
        assert_eq!(op, BinaryOp::And);
        assert!(matches!(
            lhs.kind,
            NodeKind::Binary {
                op: BinaryOp::Eq,
                ..
            }
        ));
    }

    #[test]
    fn sandbox_constructs_are_refused() {
        for text in [
            "T(java.lang.Runtime).getRuntime()",
            "new java.io.File('x')",
            "@bean",
            "&factory",
            "a = 1",
            "#root = 1",
            "x++",
            "a instanceof T(String)",
        ] {
            let err = parse_str(text).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unsupported, "{text}: {err}");
        }
    }

    #[test]
    fn long_chains_hit_the_depth_limit_not_the_stack() {
        let text = vec!["1"; 5000].join("+");
        assert_eq!(parse_str(&text).unwrap_err().kind, ErrorKind::DepthLimit);
        let text = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(parse_str(&text).unwrap_err().kind, ErrorKind::DepthLimit);
        let text = format!("{}true", "!".repeat(5000));
        assert_eq!(parse_str(&text).unwrap_err().kind, ErrorKind::DepthLimit);
    }
}
