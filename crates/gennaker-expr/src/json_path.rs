//! JSONPath-like locations of strings inside a pipeline config: `$.stages[2].name`,
//! `$.triggers[0]['weird key']`.

/// One step from a value to a child.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// Renders steps as `$`, `.key` for identifier-like keys, `['key']` otherwise and
/// `[i]` for list positions.
pub(crate) fn render(steps: &[Step<'_>]) -> String {
    let mut out = String::from("$");
    for step in steps {
        match step {
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Step::Key(key) if is_identifier(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Key(key) => {
                out.push_str("['");
                for c in key.chars() {
                    if c == '\'' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push_str("']");
            }
        }
    }
    out
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(render(&[]), "$");
        assert_eq!(
            render(&[Step::Key("stages"), Step::Index(2), Step::Key("name")]),
            "$.stages[2].name"
        );
        assert_eq!(
            render(&[
                Step::Key("triggers"),
                Step::Index(0),
                Step::Key("weird key")
            ]),
            "$.triggers[0]['weird key']"
        );
        assert_eq!(render(&[Step::Key("it's")]), "$['it\\'s']");
        assert_eq!(
            render(&[Step::Key("deploy.server.groups")]),
            "$['deploy.server.groups']"
        );
    }
}
