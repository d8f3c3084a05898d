//! Regular expressions with Java's method semantics, compiled under a size limit.
//!
//! The `regex` crate guarantees linear-time matching, so patterns that backtrack
//! catastrophically in Java (`(a+)+$`) are harmless here; look-around and
//! back-references, which need backtracking, are refused at compile time.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

/// Cache key: the pattern, whether it is anchored, and the limits it was built under.
type Key = (String, bool, usize, u32);

thread_local! {
    /// Compiling a pattern costs far more than evaluating a whole stage context, and
    /// pipelines repeat the same few patterns. The cache is per thread (nothing is
    /// shared or locked), bounded, and holds only immutable compiled automata.
    static COMPILED: RefCell<HashMap<Key, Regex>> = RefCell::new(HashMap::new());
}

/// Bounds the cache so expressions building many distinct patterns cannot grow it.
const MAX_CACHED: usize = 64;

/// Runs `f` with the compiled pattern; `whole` anchors it at both ends, as Java's
/// `matches` does. The regex is lent, not cloned: a clone would get a fresh search
/// cache, which costs more than the search.
pub(crate) fn with_regex<R>(
    pattern: &str,
    whole: bool,
    size_limit: usize,
    nest_limit: u32,
    f: impl FnOnce(&Regex) -> R,
) -> Result<R, String> {
    let key = (pattern.to_owned(), whole, size_limit, nest_limit);
    COMPILED.with(|cell| {
        if let Some(regex) = cell.borrow().get(&key) {
            return Ok(f(regex));
        }
        let source = if whole {
            format!(r"\A(?:{pattern})\z")
        } else {
            pattern.to_owned()
        };
        let regex = RegexBuilder::new(&source)
            .size_limit(size_limit)
            .dfa_size_limit(size_limit)
            .nest_limit(nest_limit)
            .build()
            .map_err(|e| describe(&e))?;
        let result = f(&regex);
        let mut cache = cell.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, regex);
        Ok(result)
    })
}

/// Whether `pattern` has no regex syntax, so plain string operations give the
/// same result as the regex would.
pub(crate) fn is_literal(pattern: &str) -> bool {
    regex::escape(pattern) == pattern
}

fn describe(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => {
            format!("regular expression is too large once compiled (limit {limit} bytes)")
        }
        other => {
            let text = other.to_string();
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            format!(
                "invalid regular expression: {}",
                last.unwrap_or(&text).trim_start_matches("error: ")
            )
        }
    }
}

/// Java's `String.split(regex)`: a zero-width match at the start yields no leading
/// empty string, trailing empty strings are dropped, no match gives the input back.
pub(crate) fn java_split<'s>(regex: &Regex, input: &'s str) -> Vec<&'s str> {
    split_at(regex.find_iter(input).map(|m| (m.start(), m.end())), input)
}

/// [`java_split`] on a non-empty literal separator, without a regex.
pub(crate) fn java_split_literal<'s>(separator: &str, input: &'s str) -> Vec<&'s str> {
    let matches = input
        .match_indices(separator)
        .map(|(i, m)| (i, i + m.len()));
    split_at(matches, input)
}

fn split_at(matches: impl Iterator<Item = (usize, usize)>, input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut last = 0;
    let mut matched = false;
    for (start, end) in matches {
        if end == 0 {
            continue;
        }
        matched = true;
        parts.push(&input[last..start]);
        last = end;
    }
    if !matched {
        return vec![input];
    }
    parts.push(&input[last..]);
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// Translates a Java replacement string (`$1`, `${name}`, `\$`) to the `regex`
/// crate's syntax, where a literal dollar is `$$`.
pub(crate) fn java_replacement(replacement: &str) -> Result<String, String> {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => return Err("character to be escaped is missing".to_owned()),
            },
            '$' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        group.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    for n in chars.by_ref() {
                        if n == '}' {
                            break;
                        }
                        name.push(n);
                    }
                    out.push_str(&format!("${{{name}}}"));
                }
                _ => return Err("illegal group reference in the replacement".to_owned()),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &str, input: &str) -> Vec<String> {
        let re = Regex::new(pattern).unwrap();
        java_split(&re, input)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn split_like_java() {
        assert_eq!(split(",", "a,b,,"), vec!["a", "b"]);
        assert_eq!(split(",", ",a"), vec!["", "a"]);
        assert_eq!(split(",", ""), vec![""]);
        assert_eq!(split(",", ","), Vec::<String>::new());
        assert_eq!(split("", "abc"), vec!["a", "b", "c"]);
        assert_eq!(split(r"\.", "1.2.3"), vec!["1", "2", "3"]);
    }

    #[test]
    fn replacement_syntax() {
        assert_eq!(java_replacement("$1-x").unwrap(), "${1}-x");
        assert_eq!(java_replacement(r"\$1").unwrap(), "$$1");
        assert_eq!(java_replacement("${name}").unwrap(), "${name}");
        assert!(java_replacement("$").is_err());
    }

    #[test]
    fn oversized_patterns_are_refused() {
        let err = with_regex("(a{1000}){1000}", false, 1 << 20, 64, |_| ()).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(with_regex("(?=a)", false, 1 << 20, 64, |_| ()).is_err());
        for _ in 0..2 {
            assert_eq!(
                with_regex("a+", true, 1 << 20, 64, |r| r.is_match("aaa")),
                Ok(true)
            );
            assert_eq!(
                with_regex("a+", true, 1 << 20, 64, |r| r.is_match("aab")),
                Ok(false)
            );
        }
    }

    #[test]
    fn literal_split_matches_regex_split() {
        for (sep, input) in [
            (",", "a,b,,"),
            (",", ",a"),
            (",", ""),
            (",", ","),
            ("::", "a::b::"),
        ] {
            let re = Regex::new(&regex::escape(sep)).unwrap();
            assert_eq!(
                java_split_literal(sep, input),
                java_split(&re, input),
                "{sep} {input}"
            );
        }
    }
}
