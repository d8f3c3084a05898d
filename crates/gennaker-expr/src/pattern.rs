//! Regular expressions with Java's method semantics, compiled under a size limit.
//!
//! The `regex` crate guarantees linear-time matching, so patterns that backtrack
//! catastrophically in Java (`(a+)+$`) are harmless here; look-around and
//! back-references, which need backtracking, are refused at compile time.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

/// Compiled patterns of one evaluation; dropped with it, never shared globally.
#[derive(Debug, Default)]
pub(crate) struct RegexCache {
    compiled: HashMap<(String, bool), Regex>,
}

/// Bounds the cache so a selection over many distinct patterns cannot grow it.
const MAX_CACHED: usize = 64;

impl RegexCache {
    /// The compiled pattern; `whole` anchors it at both ends, as Java's `matches` does.
    pub(crate) fn get(
        &mut self,
        pattern: &str,
        whole: bool,
        size_limit: usize,
        nest_limit: u32,
    ) -> Result<&Regex, String> {
        let key = (pattern.to_owned(), whole);
        if !self.compiled.contains_key(&key) {
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
            if self.compiled.len() >= MAX_CACHED {
                self.compiled.clear();
            }
            self.compiled.insert(key.clone(), regex);
        }
        self.compiled
            .get(&key)
            .ok_or_else(|| "regex cache lost a pattern".to_owned())
    }
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
    let mut parts = Vec::new();
    let mut last = 0;
    let mut matched = false;
    for m in regex.find_iter(input) {
        if m.end() == 0 {
            continue;
        }
        matched = true;
        parts.push(&input[last..m.start()]);
        last = m.end();
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
        let mut cache = RegexCache::default();
        let err = cache
            .get("(a{1000}){1000}", false, 1 << 20, 64)
            .unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(cache.get("(?=a)", false, 1 << 20, 64).is_err());
    }
}
