//! Which values in a document are secrets, and hiding them.
//!
//! Executions carry what their stages send: a webhook's `customHeaders` (Spinnaker's
//! map of header name to a value or a list of values) hold `Authorization` headers, URLs
//! carry passwords (`https://user:pw@host`), trigger parameters hold tokens. Anyone who
//! may READ an application reads its executions, so those values must never be shown
//! (API output, events, the audit log) nor kept in clear at rest (the store seals them).
//!
//! A value is secret when it is a string under a key named like a secret (see
//! [`is_secret_key`]; every string inside an object or list under such a key too), the
//! value of a name/value pair named so (`{"name": "DB_PASSWORD", "value": …}`,
//! a parameter definition's `default` and `options`), or a string with a password in a
//! URL (only the password is hidden then, so the URL stays
//! readable). Numbers and booleans are never secret: Gennaker's own `runToken` is a
//! number, and hiding it would break every client reading the execution.
//!
//! What cannot be recognised is not hidden: a secret an expression copies into a key
//! with an ordinary name, or one written into free text without a URL around it.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

/// What a secret is replaced with in everything shown to users.
pub const REDACTED: &str = "***redacted***";

/// What a password inside a URL is replaced with (`https://user:***@host`).
pub const REDACTED_PASSWORD: &str = "***";

/// How a value sealed at rest starts (see the store's sealing); such a value is never
/// shown either, whatever its key.
pub const SEALED_PREFIX: &str = "gnk-sealed:";

/// Names (lower case, without `-`, `_` and `.`) that are secrets themselves.
const SECRET_NAMES: &[&str] = &["cookie", "setcookie", "passwd"];

/// Endings (same normalisation) that make a name a secret: `Authorization`,
/// `Proxy-Authorization`, `DB_PASSWORD`, `client_secret`, `X-Auth-Token`, `x-api-key`…
const SECRET_SUFFIXES: &[&str] = &[
    "authorization",
    "password",
    "passwords",
    "passphrase",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "apikey",
    "apikeys",
    "privatekey",
    "secretkey",
    "accesskey",
];

/// Names that end like a secret but are not one: identifiers and paging cursors.
const NOT_SECRET_NAMES: &[&str] = &["tokenid", "nextpagetoken", "pagetoken", "runtoken"];

/// Whether a key (a JSON field, a header name, a parameter name) names a secret;
/// case, `-`, `_` and `.` do not matter.
///
/// Called for every key of every document redacted or sealed, so a short ASCII key
/// (nearly all of them) is normalised into a buffer on the stack, allocating nothing;
/// a longer one, or one with other characters, is lower-cased in full into a string
/// (some characters lower-case to ASCII: `K`, the Kelvin sign, is `k`).
pub fn is_secret_key(key: &str) -> bool {
    let mut buffer = [0_u8; 64];
    let mut len = 0;
    if key.is_ascii() {
        for byte in key.bytes().filter(|b| !is_separator(char::from(*b))) {
            let Some(slot) = buffer.get_mut(len) else {
                return is_secret_name(normalized_in_full(key).as_bytes());
            };
            *slot = byte.to_ascii_lowercase();
            len += 1;
        }
        is_secret_name(&buffer[..len])
    } else {
        is_secret_name(normalized_in_full(key).as_bytes())
    }
}

/// The characters a key's normalisation drops.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | ' ')
}

/// `key` without separators, lower-cased (Unicode rules).
fn normalized_in_full(key: &str) -> String {
    key.chars()
        .filter(|c| !is_separator(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a normalised key names a secret.
fn is_secret_name(normalized: &[u8]) -> bool {
    let is = |name: &&str| normalized == name.as_bytes();
    if NOT_SECRET_NAMES.iter().any(is) {
        return false;
    }
    SECRET_NAMES.iter().any(is)
        || SECRET_SUFFIXES
            .iter()
            .any(|suffix| normalized.ends_with(suffix.as_bytes()))
}

/// Where the passwords of URLs in `text` are (`scheme://user:PASSWORD@host`), the URL
/// being the whole text or a part of it (an error message quoting it).
fn url_password_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        // The authority ends where the path, query or fragment starts, or where the URL
        // ends in surrounding text.
        let end = text[start..]
            .find(|c: char| {
                // Not `'`, `)` or `,`: a password may hold them unencoded; at worst a
                // little more than the password is hidden.
                matches!(c, '/' | '?' | '#' | '"' | '<' | '>' | '`') || c.is_whitespace()
            })
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..end];
        // The last `@` ends the user info: an unencoded `@` in a password stays hidden.
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            spans.push(start + colon + 1..start + at);
        }
        // From just after this `://`: a URL right after an authority without a path
        // (`http://a;http://u:pw@b`) is looked at too.
        from = start;
    }
    spans
}

/// Whether `text` has a password in a URL.
pub fn has_url_password(text: &str) -> bool {
    !url_password_spans(text).is_empty()
}

/// `text` with the password of every URL in it replaced by `***`.
pub fn redact_url_passwords(text: &str) -> Cow<'_, str> {
    let spans = url_password_spans(text);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in spans {
        out.push_str(&text[last..span.start]);
        out.push_str(REDACTED_PASSWORD);
        last = span.end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// Why a string is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// It is (inside) the value of a key named like a secret.
    Named,
    /// It has a password in a URL.
    UrlPassword,
    /// It was sealed at rest (starts with [`SEALED_PREFIX`]).
    Sealed,
}

/// Calls `visit` on every secret string in `value` (empty strings are no secret).
pub fn for_each_secret(value: &mut Value, visit: &mut dyn FnMut(&mut String, SecretKind)) {
    walk(value, false, visit);
}

fn walk(value: &mut Value, named: bool, visit: &mut dyn FnMut(&mut String, SecretKind)) {
    match value {
        Value::String(text) if text.is_empty() => {}
        Value::String(text) => {
            let kind = if text.starts_with(SEALED_PREFIX) {
                Some(SecretKind::Sealed)
            } else if named {
                Some(SecretKind::Named)
            } else if has_url_password(text) {
                Some(SecretKind::UrlPassword)
            } else {
                None
            };
            if let Some(kind) = kind {
                visit(text, kind);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, named, visit);
            }
        }
        Value::Object(map) => {
            let pair_named = names_a_secret(map);
            for (key, item) in map.iter_mut() {
                let secret = named
                    || is_secret_key(key)
                    || (pair_named && PAIR_VALUES.contains(&key.as_str()));
                walk(item, secret, visit);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The fields holding the value of a name/value pair (`{"name": "DB_PASSWORD",
/// "value": …}` environment entries, `{"key": …, "value": …}` variables, parameter
/// definitions with a `default` and `options`).
const PAIR_VALUES: &[&str] = &["value", "default", "defaultValue", "options"];

/// Whether `map` is a name/value pair whose name is a secret's.
fn names_a_secret(map: &serde_json::Map<String, Value>) -> bool {
    ["name", "key"].iter().any(|field| {
        map.get(*field)
            .and_then(Value::as_str)
            .is_some_and(is_secret_key)
    })
}

/// Hides every secret in `value`: secret-named and sealed values become [`REDACTED`],
/// URL passwords `***`.
pub fn redact_value(value: &mut Value) {
    for_each_secret(value, &mut |text, kind| match kind {
        SecretKind::Named | SecretKind::Sealed => REDACTED.clone_into(text),
        SecretKind::UrlPassword => *text = redact_url_passwords(text).into_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_recognised_whatever_their_spelling() {
        for key in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "password",
            "DB_PASSWORD",
            "passwd",
            "secret",
            "client_secret",
            "token",
            "access_token",
            "refreshToken",
            "X-Auth-Token",
            "api_key",
            "apiKey",
            "x-api-key",
            "private_key",
            "secretAccessKey",
            "sslPassphrase",
        ] {
            assert!(is_secret_key(key), "{key} is a secret");
        }
    }

    #[test]
    fn gennaker_and_spinnaker_fields_are_not_secret() {
        for key in [
            "tokenId",
            "nextPageToken",
            "runToken",
            "tokenHash",
            "authentication",
            "propagateAuthenticationContext",
            "customHeaders",
            "url",
            "account",
            "credentials",
            "key",
            "keyPair",
            "user",
        ] {
            assert!(!is_secret_key(key), "{key} is no secret");
        }
    }

    #[test]
    fn keys_beyond_ascii_are_lower_cased_in_full() {
        // The Kelvin sign lower-cases to an ASCII `k`.
        assert!(is_secret_key("API_\u{212A}EY"));
        assert!(is_secret_key("Pässwort_token"));
        assert!(!is_secret_key("tökenId"));
        assert!(!is_secret_key("Passwört"));
        // Longer than the stack buffer.
        let long = format!("{}_Token", "x".repeat(80));
        assert!(is_secret_key(&long));
        assert!(!is_secret_key(&"x".repeat(80)));
    }

    #[test]
    fn url_passwords_are_hidden_and_the_rest_of_the_url_kept() {
        assert_eq!(
            redact_url_passwords("https://user:pw@example.com:8443/path?q=1"),
            "https://user:***@example.com:8443/path?q=1"
        );
        assert_eq!(
            redact_url_passwords("error sending request for url (http://u:p@ss@127.0.0.1:9/x)"),
            "error sending request for url (http://u:***@127.0.0.1:9/x)"
        );
        assert_eq!(
            redact_url_passwords("a http://a:1@h b https://b:2@i"),
            "a http://a:***@h b https://b:***@i"
        );
        // Characters a password may hold unencoded.
        assert_eq!(
            redact_url_passwords("https://deploy:s3cr,e't)@hooks.example.com/x"),
            "https://deploy:***@hooks.example.com/x"
        );
        assert_eq!(
            redact_url_passwords("url 'http://u:pw@h' is refused"),
            "url 'http://u:***@h' is refused"
        );
        // A URL right after another one's authority.
        assert_eq!(
            redact_url_passwords("mirrors=http://a;http://user:pw@b"),
            "mirrors=http://a;http://user:***@b"
        );
        for clear in [
            "https://user@example.com/",
            "https://example.com:8080/a@b",
            "http://host:80",
            "no url at all",
            "mailto:someone@example.com",
            "https://user:@host/",
        ] {
            assert!(!has_url_password(clear), "{clear}");
            assert_eq!(redact_url_passwords(clear), clear);
        }
    }

    #[test]
    fn redact_value_hides_secrets_everywhere_in_a_tree() {
        let mut value = json!({
            "stages": [{
                "type": "webhook",
                "url": "http://user:pa55@127.0.0.1:9/hook",
                "customHeaders": {
                    "Authorization": "Bearer s3cr3t",
                    "X-Multi": ["a", "b"],
                    "Cookie": ["c1", "c2"],
                },
                "payload": {"nested": {"client_secret": "cs", "name": "kept"}},
            }],
            "trigger": {"parameters": {"DB_PASSWORD": "pw", "region": "eu"}},
            "parameterConfig": [
                {"name": "apiToken", "default": "t", "options": [{"value": "o"}]},
                {"name": "region", "default": "eu"},
            ],
            "env": [{"name": "DB_PASSWORD", "value": "pw"}, {"name": "PORT", "value": "80"}],
            "variables": [{"key": "copied_token", "value": "Bearer x"}],
            "tasks": [{"runToken": 3}],
            "token": "",
            "sealed": "gnk-sealed:v1:abc",
        });
        redact_value(&mut value);
        assert_eq!(
            value,
            json!({
                "stages": [{
                    "type": "webhook",
                    "url": "http://user:***@127.0.0.1:9/hook",
                    "customHeaders": {
                        "Authorization": REDACTED,
                        "X-Multi": ["a", "b"],
                        "Cookie": [REDACTED, REDACTED],
                    },
                    "payload": {"nested": {"client_secret": REDACTED, "name": "kept"}},
                }],
                "trigger": {"parameters": {"DB_PASSWORD": REDACTED, "region": "eu"}},
                "parameterConfig": [
                    {"name": "apiToken", "default": REDACTED, "options": [{"value": REDACTED}]},
                    {"name": "region", "default": "eu"},
                ],
                "env": [
                    {"name": "DB_PASSWORD", "value": REDACTED},
                    {"name": "PORT", "value": "80"},
                ],
                "variables": [{"key": "copied_token", "value": REDACTED}],
                "tasks": [{"runToken": 3}],
                "token": "",
                "sealed": REDACTED,
            })
        );
        let once = value.clone();
        redact_value(&mut value);
        assert_eq!(value, once, "redacting twice changes nothing more");
    }

    #[test]
    fn every_secret_is_visited_with_its_kind() {
        let mut value = json!({
            "password": "p",
            "list": ["https://a:b@h", "plain"],
            "x": "gnk-sealed:v1:zz",
        });
        let mut seen = Vec::new();
        for_each_secret(&mut value, &mut |text, kind| {
            seen.push((text.clone(), kind))
        });
        assert_eq!(
            seen,
            vec![
                ("p".to_owned(), SecretKind::Named),
                ("https://a:b@h".to_owned(), SecretKind::UrlPassword),
                ("gnk-sealed:v1:zz".to_owned(), SecretKind::Sealed),
            ]
        );
    }
}
