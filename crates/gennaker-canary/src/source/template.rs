//! Kayenta's template expansion (`QueryConfigUtils.expandCustomFilter`): Apache
//! commons-text `StringSubstitutor` semantics with undefined variables as errors.
//!
//! `${name}` is replaced by its binding, `${name:-default}` falls back to `default`,
//! `$${…}` is an escaped literal `${…}`, and a replacement is itself expanded (with a
//! cycle being an error). Templates stored through Spinnaker are escaped as `$\{` so
//! SpEL leaves them alone; they are unescaped first, as Kayenta does.

use std::collections::BTreeMap;

/// The longest a template may grow to while expanding (a guard against bindings that
/// refer to each other many times over).
const MAX_EXPANDED_LEN: usize = 64 * 1024;

/// Expands `template` with `bindings`; the error says which variable is undefined or
/// what else is wrong.
pub(crate) fn expand(
    template: &str,
    bindings: &BTreeMap<String, String>,
) -> Result<String, String> {
    let unescaped = template.replace("$\\{", "${");
    let mut out = String::with_capacity(unescaped.len());
    expand_into(&unescaped, bindings, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn expand_into(
    text: &str,
    bindings: &BTreeMap<String, String>,
    active: &mut Vec<String>,
    out: &mut String,
) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(escaped) = after.strip_prefix("$${") {
            // `$${x}` → a literal `${x}`.
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(close) = body.find('}') else {
            // An unclosed `${` is left as it is.
            out.push_str(after);
            return Ok(());
        };
        let inner = &body[..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = match (bindings.get(name), default) {
            (Some(value), _) => value.as_str(),
            (None, Some(default)) => default,
            (None, None) => {
                return Err(format!(
                    "variable ${{{name}}} is not defined; defined here: {}",
                    if bindings.is_empty() {
                        "none".to_owned()
                    } else {
                        bindings.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ));
            }
        };
        if active.iter().any(|a| a == name) {
            return Err(format!(
                "variable ${{{name}}} refers to itself ({} -> {name})",
                active.join(" -> ")
            ));
        }
        active.push(name.to_owned());
        expand_into(value, bindings, active, out)?;
        active.pop();
        if out.len() > MAX_EXPANDED_LEN {
            return Err(format!(
                "the expanded template is longer than {MAX_EXPANDED_LEN} characters"
            ));
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn variables_defaults_escapes_and_recursion() {
        let b = bindings(&[
            ("scope", "web-v001"),
            ("location", "eu"),
            ("alias", "${scope}"),
        ]);
        assert_eq!(
            expand("pod=~\"${scope}-.*\",ns=\"${location}\"", &b).unwrap(),
            "pod=~\"web-v001-.*\",ns=\"eu\""
        );
        assert_eq!(expand("x=\"$\\{scope}\"", &b).unwrap(), "x=\"web-v001\"");
        assert_eq!(
            expand("$${scope} ${alias}", &b).unwrap(),
            "${scope} web-v001"
        );
        assert_eq!(
            expand("${zone:-any} $5 ${open", &b).unwrap(),
            "any $5 ${open"
        );
    }

    #[test]
    fn undefined_and_cyclic_variables_are_errors() {
        let b = bindings(&[("scope", "s"), ("a", "${b}"), ("b", "${a}")]);
        let e = expand("${namespace}", &b).unwrap_err();
        assert!(
            e.contains("${namespace} is not defined") && e.contains("scope"),
            "{e}"
        );
        let e = expand("${a}", &b).unwrap_err();
        assert!(e.contains("refers to itself"), "{e}");
    }
}
