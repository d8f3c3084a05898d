//! Tokens of the SpEL subset, with byte positions into the whole template.

use crate::error::{ErrorKind, ExprError};

/// A token kind; word operators (`and`, `eq`, `matches`…) stay [`Tok::Ident`] and the
/// parser recognises them by position, because they are also valid property names
/// after a dot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `#name`.
    Var(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Colon,
    Dot,
    /// `?.`
    SafeDot,
    /// `?[` right after a dot: selection of all matches.
    SelectAll,
    /// `^[` right after a dot: first match.
    SelectFirst,
    /// `$[` right after a dot: last match.
    SelectLast,
    /// `![` right after a dot: projection.
    Project,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Question,
    /// `?:`
    Elvis,
    /// `=`: lexed so the parser can refuse assignment with a clear message.
    Assign,
    /// `++` / `--`: lexed so the parser can refuse them as assignments.
    IncDec,
    /// `@` or `&`: bean references.
    BeanRef,
    /// `^`: SpEL's power operator, not part of the subset.
    Caret,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Int(i) => format!("number {i}"),
            Tok::Float(f) => format!("number {f}"),
            Tok::Str(_) => "a string".to_owned(),
            Tok::Ident(name) => format!("'{name}'"),
            Tok::Var(name) => format!("'#{name}'"),
            Tok::Eof => "the end of the expression".to_owned(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::SafeDot => "?.",
            Tok::SelectAll => "?[",
            Tok::SelectFirst => "^[",
            Tok::SelectLast => "$[",
            Tok::Project => "![",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
            Tok::Question => "?",
            Tok::Elvis => "?:",
            Tok::Assign => "=",
            Tok::IncDec => "++",
            Tok::BeanRef => "@",
            Tok::Caret => "^",
            _ => "",
        }
    }
}

/// A token and where it starts and ends in the template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Splits `source[start..end]` into tokens ending with [`Tok::Eof`].
pub(crate) fn tokenize(source: &str, start: usize, end: usize) -> Result<Vec<Token>, ExprError> {
    Lexer {
        source,
        pos: start,
        end,
        // About one token per four bytes in real expressions: one allocation, no regrowth.
        tokens: Vec::with_capacity((end - start) / 4 + 2),
    }
    .run()
}

struct Lexer<'s> {
    source: &'s str,
    pos: usize,
    end: usize,
    tokens: Vec<Token>,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        match self.source.as_bytes().get(self.pos) {
            _ if self.pos >= self.end => None,
            Some(&b) if b.is_ascii() => Some(char::from(b)),
            _ => self.source.get(self.pos..self.end)?.chars().next(),
        }
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.source[self.pos..self.end].chars().nth(n)
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>, at: usize) -> ExprError {
        ExprError::new(kind, message, self.source, at)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token {
            tok,
            start,
            end: self.pos,
        });
    }

    fn after_dot(&self) -> bool {
        matches!(
            self.tokens.last(),
            Some(Token {
                tok: Tok::Dot | Tok::SafeDot,
                ..
            })
        )
    }

    fn run(mut self) -> Result<Vec<Token>, ExprError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            if c.is_ascii_digit() {
                self.number()?;
                continue;
            }
            if c == '$' && self.peek_at(1) == Some('{') {
                return Err(self.error(
                    ErrorKind::Syntax,
                    "'${' cannot be nested inside an expression",
                    start,
                ));
            }
            if c == '$' && self.peek_at(1) == Some('[') && self.after_dot() {
                self.pos += 2;
                self.push(Tok::SelectLast, start);
                continue;
            }
            if is_ident_start(c) {
                let name = self.ident();
                self.push(Tok::Ident(name), start);
                continue;
            }
            if c == '\'' || c == '"' {
                let text = self.string(c)?;
                self.push(Tok::Str(text), start);
                continue;
            }
            self.symbol(c, start)?;
        }
        let end = self.pos;
        self.tokens.push(Token {
            tok: Tok::Eof,
            start: end,
            end,
        });
        Ok(self.tokens)
    }

    fn symbol(&mut self, c: char, start: usize) -> Result<(), ExprError> {
        let next = self.peek_at(1);
        let (tok, len) = match (c, next) {
            ('?', Some('[')) if self.after_dot() => (Tok::SelectAll, 2),
            ('^', Some('[')) if self.after_dot() => (Tok::SelectFirst, 2),
            ('!', Some('[')) if self.after_dot() => (Tok::Project, 2),
            ('?', Some('.')) => (Tok::SafeDot, 2),
            ('?', Some(':')) => (Tok::Elvis, 2),
            ('?', _) => (Tok::Question, 1),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('=', _) => (Tok::Assign, 1),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('!', _) => (Tok::Bang, 1),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('+', Some('+')) | ('-', Some('-')) => (Tok::IncDec, 2),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('%', _) => (Tok::Percent, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            ('{', _) => (Tok::LBrace, 1),
            ('}', _) => (Tok::RBrace, 1),
            (',', _) => (Tok::Comma, 1),
            (':', _) => (Tok::Colon, 1),
            ('.', _) => (Tok::Dot, 1),
            ('@' | '&', _) => (Tok::BeanRef, 1),
            ('^', _) => (Tok::Caret, 1),
            ('#', _) => return self.variable(start),
            ('|', _) => {
                return Err(self
                    .error(ErrorKind::Syntax, "unexpected '|'", start)
                    .with_hint("the 'or' operator is written '||' or 'or'"));
            }
            _ => {
                return Err(self.error(
                    ErrorKind::Syntax,
                    format!("unexpected character '{c}'"),
                    start,
                ));
            }
        };
        self.pos += len;
        self.push(tok, start);
        Ok(())
    }

    fn variable(&mut self, start: usize) -> Result<(), ExprError> {
        self.pos += 1;
        match self.peek() {
            Some(c) if is_ident_start(c) => {
                let name = self.ident();
                self.push(Tok::Var(name), start);
                Ok(())
            }
            _ => Err(self.error(
                ErrorKind::Syntax,
                "expected a variable or function name after '#'",
                start,
            )),
        }
    }

    fn ident(&mut self) -> String {
        let begin = self.pos;
        while let Some(c) = self.peek() {
            if !is_ident_continue(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.source[begin..self.pos].to_owned()
    }

    /// A quoted string; SpEL escapes the quote by doubling it and has no backslash
    /// escapes, so `'C:\dir'` is taken literally.
    fn string(&mut self, quote: char) -> Result<String, ExprError> {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self
                        .error(ErrorKind::Syntax, "unterminated string literal", start)
                        .with_hint(format!("close it with {quote}")));
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    if self.peek() == Some(quote) {
                        self.pos += 1;
                        text.push(quote);
                    } else {
                        return Ok(text);
                    }
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    text.push(c);
                }
            }
        }
    }

    fn digits(&mut self, radix: u32) {
        while let Some(c) = self.peek() {
            if !c.is_digit(radix) {
                break;
            }
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<(), ExprError> {
        let start = self.pos;
        if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.pos += 2;
            let digits_start = self.pos;
            self.digits(16);
            let digits = &self.source[digits_start..self.pos];
            let value = i64::from_str_radix(digits, 16)
                .map_err(|_| self.error(ErrorKind::Syntax, "invalid hexadecimal literal", start))?;
            if matches!(self.peek(), Some('L' | 'l')) {
                self.pos += 1;
            }
            self.push(Tok::Int(value), start);
            return self.no_trailing_ident(start);
        }
        self.digits(10);
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.pos += 1;
            self.digits(10);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.pos += 1 + sign;
                self.digits(10);
            }
        }
        let text = &self.source[start..self.pos];
        let tok = match self.peek() {
            Some('f' | 'F' | 'd' | 'D') => {
                self.pos += 1;
                float(text).ok_or_else(|| self.bad_number(start))?
            }
            Some('L' | 'l') if !is_float => {
                self.pos += 1;
                int(text).ok_or_else(|| self.bad_number(start))?
            }
            _ if is_float => float(text).ok_or_else(|| self.bad_number(start))?,
            _ => int(text).ok_or_else(|| self.bad_number(start))?,
        };
        self.push(tok, start);
        self.no_trailing_ident(start)
    }

    fn bad_number(&self, start: usize) -> ExprError {
        self.error(
            ErrorKind::Syntax,
            format!(
                "number literal '{}' is out of range",
                &self.source[start..self.pos]
            ),
            start,
        )
    }

    fn no_trailing_ident(&self, start: usize) -> Result<(), ExprError> {
        match self.peek() {
            Some(c) if is_ident_continue(c) => {
                Err(self.error(ErrorKind::Syntax, "a name cannot start with a digit", start))
            }
            _ => Ok(()),
        }
    }
}

fn int(text: &str) -> Option<Tok> {
    text.parse::<i64>().ok().map(Tok::Int)
}

fn float(text: &str) -> Option<Tok> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Tok::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Tok> {
        tokenize(text, 0, text.len())
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn selection_tokens_only_follow_a_dot() {
        assert_eq!(
            kinds("a.?[b]"),
            vec![
                Tok::Ident("a".into()),
                Tok::Dot,
                Tok::SelectAll,
                Tok::Ident("b".into()),
                Tok::RBracket,
                Tok::Eof
            ]
        );
        assert_eq!(
            kinds("!a"),
            vec![Tok::Bang, Tok::Ident("a".into()), Tok::Eof]
        );
    }

    #[test]
    fn strings_double_their_quote() {
        assert_eq!(
            kinds("'it''s' \"a\"\"b\""),
            vec![Tok::Str("it's".into()), Tok::Str("a\"b".into()), Tok::Eof]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            kinds("1 2.5 1e3 0x1F 7L 2f"),
            vec![
                Tok::Int(1),
                Tok::Float(2.5),
                Tok::Float(1000.0),
                Tok::Int(31),
                Tok::Int(7),
                Tok::Float(2.0),
                Tok::Eof
            ]
        );
        assert!(tokenize("99999999999999999999", 0, 20).is_err());
    }
}
