//! Expected artifacts: matching an incoming artifact against `matchArtifact`, binding a
//! pipeline's `expectedArtifacts` when an execution starts, and finding what an
//! expected artifact id stands for at a stage (bound when the execution started, or
//! produced by an upstream stage).
//!
//! The rules are Spinnaker's (kork's `ExpectedArtifact.matches`, Orca's
//! `ArtifactUtils.resolveArtifacts`):
//! - each of `type`, `name`, `version`, `location`, `reference` given in `matchArtifact`
//!   must equal the candidate's value or match it as a regex over the WHOLE value;
//!   `artifactAccount`, `metadata`, `provenance` and `uuid` are not compared (Deck fills
//!   `artifactAccount` in match artifacts while trigger artifacts often have none);
//!   `embedded/base64` and `remote/base64` are the same type;
//! - an expected artifact binds to the one received artifact it matches; none → the
//!   artifact its id was bound to in the pipeline's last successful execution (with
//!   `usePriorArtifact`) → `defaultArtifact` (with `useDefaultArtifact`); still none and
//!   the trigger lists its id in `expectedArtifactIds` → the execution cannot start;
//!   more than one match → the execution cannot start (ambiguous).
//!
//! Results take Spinnaker's places in the trigger: `expectedArtifacts` (the pipeline's),
//! `resolvedExpectedArtifacts` (each bound one, with `boundArtifact`) and `artifacts`
//! (the received ones plus every bound one).

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use crate::execution::StageExecution;
use crate::lenient::truthy;
use crate::redact::redact_url_passwords;

/// The fields of `matchArtifact` that are compared (kork's list).
pub const MATCHED_FIELDS: [&str; 5] = ["type", "name", "version", "location", "reference"];

/// The biggest compiled `matchArtifact` regex (patterns come from pipeline configs).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How long one artifact's summary in a message may be.
const MAX_SUMMARY_CHARS: usize = 200;

/// How many artifacts an error message lists.
const MAX_LISTED: usize = 10;

/// The two spellings of an inline artifact, interchangeable when matching.
const BASE64_TYPES: [&str; 2] = ["embedded/base64", "remote/base64"];

/// Why expected artifacts could not be bound; the execution fails before any stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A required expected artifact matched nothing and had no prior or default.
    #[error(
        "expected artifact {label} is required by the trigger (expectedArtifactIds) but could not be resolved: no artifact matched {wanted}{fallbacks}; offered: {offered}. Send a matching artifact, fix matchArtifact, or set useDefaultArtifact with a defaultArtifact"
    )]
    Unmatched {
        /// `'displayName' (id …)`.
        label: String,
        /// The match artifact, summarised.
        wanted: String,
        /// What was tried besides the received artifacts.
        fallbacks: String,
        /// The received artifacts, summarised.
        offered: String,
    },
    /// An expected artifact matched several received artifacts.
    #[error(
        "expected artifact {label} is ambiguous: {wanted} matches {count} artifacts: {candidates}. Make matchArtifact more specific (e.g. a full name or a version pattern)"
    )]
    Ambiguous {
        /// `'displayName' (id …)`.
        label: String,
        /// The match artifact, summarised.
        wanted: String,
        /// How many matched.
        count: usize,
        /// The matching artifacts, summarised.
        candidates: String,
    },
    /// A `matchArtifact` field is not a valid regular expression.
    #[error(
        "expected artifact {label}: matchArtifact.{field} '{pattern}' is not a valid regular expression: {reason}"
    )]
    InvalidPattern {
        /// `'displayName' (id …)`.
        label: String,
        /// The field.
        field: String,
        /// The pattern.
        pattern: String,
        /// The regex engine's complaint.
        reason: String,
    },
}

/// Compiles a `matchArtifact` pattern to match a whole value, as Java's `matches()`.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A JSON scalar as the text Jackson would coerce it to; `None` for anything else.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A `matchArtifact` with its patterns compiled once, to test many candidates.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The given fields: name, pattern text, compiled whole-value regex.
    fields: Vec<(&'static str, String, Regex)>,
}

impl Matcher {
    /// Compiles the given fields of `matcher`; `Err((field, pattern, reason))` when
    /// one is not a valid regex.
    pub fn new(matcher: &Map<String, Value>) -> Result<Self, (String, String, String)> {
        let mut fields = Vec::new();
        for field in MATCHED_FIELDS {
            let Some(pattern) = text(matcher.get(field)).filter(|p| !p.is_empty()) else {
                continue;
            };
            let regex = compile_pattern(&pattern)
                .map_err(|err| (field.to_owned(), pattern.clone(), err.to_string()))?;
            fields.push((field, pattern, regex));
        }
        Ok(Self { fields })
    }

    /// Whether `candidate` has every given field, equal or matching as a whole.
    pub fn matches(&self, candidate: &Value) -> bool {
        self.fields.iter().all(|(field, pattern, regex)| {
            let Some(value) = text(candidate.get(*field)) else {
                return false;
            };
            (*field == "type"
                && BASE64_TYPES.contains(&pattern.as_str())
                && BASE64_TYPES.contains(&value.as_str()))
                || *pattern == value
                || regex.is_match(&value)
        })
    }
}

/// Whether `candidate` matches `matcher` (a `matchArtifact`); `Err((field, pattern,
/// reason))` when a given field is not a valid regex.
pub fn artifact_matches(
    matcher: &Map<String, Value>,
    candidate: &Value,
) -> Result<bool, (String, String, String)> {
    Ok(Matcher::new(matcher)?.matches(candidate))
}

/// An artifact in one line: `type name@version (reference)`.
pub fn summarize(artifact: &Value) -> String {
    let part = |key: &str| text(artifact.get(key)).unwrap_or_default();
    let mut line = part("type");
    let name = part("name");
    if !name.is_empty() {
        line = format!("{line} {name}");
    }
    let version = part("version");
    if !version.is_empty() {
        line = format!("{line}@{version}");
    }
    let reference = part("reference");
    // Inline content is not a useful (or safe) thing to echo.
    let inline = BASE64_TYPES.contains(&part("type").as_str());
    if !reference.is_empty() && !inline {
        line = format!("{line} ({reference})");
    }
    if line.is_empty() {
        return "{}".into();
    }
    if line.chars().count() > MAX_SUMMARY_CHARS {
        line = line.chars().take(MAX_SUMMARY_CHARS).collect::<String>() + "…";
    }
    line
}

fn summarize_all(artifacts: &[&Value]) -> String {
    if artifacts.is_empty() {
        return "none".into();
    }
    // Bounded: a webhook may bring thousands, and the message is stored and shown.
    let mut listed = artifacts
        .iter()
        .take(MAX_LISTED)
        .map(|a| summarize(a))
        .collect::<Vec<_>>()
        .join(", ");
    if artifacts.len() > MAX_LISTED {
        listed.push_str(&format!(" and {} more", artifacts.len() - MAX_LISTED));
    }
    listed
}

/// `'displayName' (id …)`, or `'id'` when it has no display name.
fn label(expected: &Value) -> String {
    let id = text(expected.get("id")).unwrap_or_default();
    match text(expected.get("displayName")).filter(|d| !d.is_empty() && *d != id) {
        Some(display) => format!("'{display}' (id {id})"),
        None => format!("'{id}'"),
    }
}

/// Whether an expected artifact falls back to the prior execution's artifact (also
/// under its old spelling, `usePriorExecution`).
pub fn uses_prior(expected: &Value) -> bool {
    truthy(expected.get("usePriorArtifact")) || truthy(expected.get("usePriorExecution"))
}

/// What the execution's trigger gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolution {
    /// Each expected artifact that was bound, with `boundArtifact`.
    pub resolved: Vec<Value>,
    /// The received artifacts followed by every bound artifact not among them.
    pub artifacts: Vec<Value>,
}

/// Binds `expected` (the pipeline's `expectedArtifacts`) against `received` (the
/// trigger's artifacts). `required` are the trigger's `expectedArtifactIds`; `prior`
/// maps an expected artifact id to what it was bound to in the pipeline's last
/// successful execution.
pub fn resolve_expected_artifacts(
    expected: &[Value],
    received: &[Value],
    required: &[String],
    prior: &HashMap<String, Value>,
) -> Result<Resolution, ResolveError> {
    let mut resolution = Resolution {
        resolved: Vec::new(),
        artifacts: received.to_vec(),
    };
    for entry in expected {
        let Some(object) = entry.as_object() else {
            continue;
        };
        let id = text(object.get("id")).unwrap_or_default();
        let empty = Map::new();
        let matcher = object
            .get("matchArtifact")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut matched = Vec::new();
        // An expected artifact without a matchArtifact matches nothing (not everything).
        if !matcher.is_empty() {
            // Compiled once per expected artifact: a webhook may bring many artifacts.
            let compiled = Matcher::new(matcher).map_err(|(field, pattern, reason)| {
                ResolveError::InvalidPattern {
                    label: label(entry),
                    field,
                    pattern,
                    reason,
                }
            })?;
            matched.extend(received.iter().filter(|c| compiled.matches(c)));
        }
        let wanted = || summarize(&Value::Object(matcher.clone()));
        let bound = match matched.as_slice() {
            [one] => Some((*one).clone()),
            [] => {
                let from_prior = uses_prior(entry).then(|| prior.get(&id).cloned()).flatten();
                let from_default = || {
                    truthy(object.get("useDefaultArtifact"))
                        .then(|| object.get("defaultArtifact").cloned())
                        .flatten()
                        .filter(Value::is_object)
                };
                from_prior.or_else(from_default)
            }
            many => {
                return Err(ResolveError::Ambiguous {
                    label: label(entry),
                    wanted: wanted(),
                    count: many.len(),
                    candidates: summarize_all(many),
                });
            }
        };
        let Some(bound) = bound else {
            if required.contains(&id) {
                let mut tried = Vec::new();
                if uses_prior(entry) {
                    tried.push("no prior successful execution bound it");
                }
                if truthy(object.get("useDefaultArtifact")) {
                    tried.push("defaultArtifact is missing");
                }
                let fallbacks = if tried.is_empty() {
                    " (usePriorArtifact and useDefaultArtifact are off)".to_owned()
                } else {
                    format!(" ({})", tried.join(", "))
                };
                return Err(ResolveError::Unmatched {
                    label: label(entry),
                    wanted: wanted(),
                    fallbacks,
                    offered: summarize_all(&received.iter().collect::<Vec<_>>()),
                });
            }
            continue;
        };
        if !resolution.artifacts.contains(&bound) {
            resolution.artifacts.push(bound.clone());
        }
        let mut resolved = object.clone();
        resolved.insert("boundArtifact".into(), bound);
        resolution.resolved.push(Value::Object(resolved));
    }
    Ok(resolution)
}

/// The artifact the expected artifact `id` was bound to when the execution started
/// (`trigger.resolvedExpectedArtifacts[].boundArtifact`). Stages that take an
/// `artifactId`/`expectedArtifactId` look their artifact up here; a missing
/// `artifactAccount` is filled from `matchArtifact`, as Orca does.
pub fn bound_artifact(trigger: &Map<String, Value>, id: &str) -> Option<Value> {
    let entry = trigger
        .get("resolvedExpectedArtifacts")?
        .as_array()?
        .iter()
        .find(|e| text(e.get("id")).as_deref() == Some(id))?;
    let bound = entry.get("boundArtifact")?.as_object()?.clone();
    Some(with_match_account(bound, entry))
}

/// Fills a missing `artifactAccount` of `artifact` from the expected artifact's
/// `matchArtifact`, as Orca does.
fn with_match_account(mut artifact: Map<String, Value>, expected: &Value) -> Value {
    if text(artifact.get("artifactAccount")).is_none_or(|a| a.is_empty())
        && let Some(account) = text(
            expected
                .get("matchArtifact")
                .and_then(|m| m.get("artifactAccount")),
        )
    {
        artifact.insert("artifactAccount".into(), Value::String(account));
    }
    Value::Object(artifact)
}

/// The artifact `stage` produced for its own expected artifact `id`: the one its
/// outputs bound (`outputs.resolvedExpectedArtifacts`, Orca's `bindProducedArtifacts`),
/// else the first of its `outputs.artifacts` matching the expected artifact it declares
/// (`expectedArtifacts`, or the older singular `expectedArtifact`), else that expected
/// artifact's default (with `useDefaultArtifact`).
pub fn produced_artifact(stage: &StageExecution, id: &str) -> Option<Value> {
    let has_id = |e: &&Value| text(e.get("id")).as_deref() == Some(id);
    if let Some(bound) = stage
        .outputs
        .get("resolvedExpectedArtifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(has_id)
        .and_then(|e| Some((e, e.get("boundArtifact")?.as_object()?.clone())))
    {
        return Some(with_match_account(bound.1, bound.0));
    }
    let declared = stage
        .context
        .get("expectedArtifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(stage.context.get("expectedArtifact"))
        .find(has_id)?;
    let matched = declared
        .get("matchArtifact")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .and_then(|m| Matcher::new(m).ok())
        .and_then(|matcher| {
            stage
                .outputs
                .get("artifacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|a| matcher.matches(a))
                .cloned()
        });
    let fallback = || {
        truthy(declared.get("useDefaultArtifact"))
            .then(|| declared.get("defaultArtifact").cloned())
            .flatten()
    };
    let artifact = matched.or_else(fallback)?;
    Some(with_match_account(artifact.as_object()?.clone(), declared))
}

/// What expected artifact `id` stands for at a stage whose upstream stages are
/// `upstream` (nearest first): what it was bound to when the execution started
/// ([`bound_artifact`]), else what the nearest upstream stage declaring it produced
/// ([`produced_artifact`]).
pub fn artifact_for_id(
    trigger: &Map<String, Value>,
    upstream: &[&StageExecution],
    id: &str,
) -> Option<Value> {
    bound_artifact(trigger, id).or_else(|| upstream.iter().find_map(|s| produced_artifact(s, id)))
}

/// An artifact as a stage records what it used: its identity without inline content
/// (an `embedded/base64` reference is the content itself) and without a password in
/// a URL.
pub fn artifact_identity(artifact: &Value) -> Value {
    let mut kept = Map::new();
    let inline = text(artifact.get("type")).is_some_and(|t| BASE64_TYPES.contains(&t.as_str()));
    for key in MATCHED_FIELDS.iter().copied().chain(["artifactAccount"]) {
        if key == "reference" && inline {
            continue;
        }
        if let Some(value) = text(artifact.get(key)).filter(|v| !v.is_empty()) {
            let value = redact_url_passwords(&value).into_owned();
            kept.insert(key.to_owned(), Value::String(value));
        }
    }
    Value::Object(kept)
}

/// What [`bound_artifact`] says when `id` is not bound, for a stage's error.
pub fn unbound_message(trigger: &Map<String, Value>, id: &str) -> String {
    let bound: Vec<String> = trigger
        .get("resolvedExpectedArtifacts")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(label).collect())
        .unwrap_or_default();
    format!(
        "expected artifact '{id}' was not bound when the execution started (bound: {}): send a matching artifact with the trigger, or give the expected artifact a default (useDefaultArtifact) or usePriorArtifact",
        if bound.is_empty() {
            "none".to_owned()
        } else {
            bound.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn git(version: &str) -> Value {
        json!({"type": "git/repo", "name": "acme/web", "version": version,
            "reference": "https://git.example/acme/web.git", "metadata": {"branch": "main"}})
    }

    fn expected(extra: Value) -> Value {
        let mut base = json!({"id": "repo-id", "displayName": "repo",
            "matchArtifact": {"type": "git/repo", "name": "acme/.*", "artifactAccount": "github"}});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn resolve(
        expected: &[Value],
        received: &[Value],
        required: &[&str],
        prior: &[(&str, Value)],
    ) -> Result<Resolution, ResolveError> {
        let required: Vec<String> = required.iter().map(|s| (*s).to_owned()).collect();
        let prior = prior
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        resolve_expected_artifacts(expected, received, &required, &prior)
    }

    #[test]
    fn one_match_is_bound_and_account_is_not_compared() {
        let r = resolve(&[expected(json!({}))], &[git("abc")], &["repo-id"], &[]).unwrap();
        assert_eq!(r.resolved.len(), 1);
        assert_eq!(r.resolved[0]["boundArtifact"]["version"], "abc");
        assert_eq!(r.resolved[0]["displayName"], "repo");
        assert_eq!(r.artifacts, vec![git("abc")]);
        let trigger = json!({"resolvedExpectedArtifacts": r.resolved});
        let bound = bound_artifact(trigger.as_object().unwrap(), "repo-id").unwrap();
        assert_eq!(
            bound["artifactAccount"], "github",
            "filled from matchArtifact"
        );
        assert!(bound_artifact(trigger.as_object().unwrap(), "other").is_none());
    }

    #[test]
    fn patterns_match_whole_values() {
        let matcher = json!({"name": "acme"});
        assert!(!artifact_matches(matcher.as_object().unwrap(), &git("1")).unwrap());
        let matcher = json!({"name": "acme/web", "version": "[0-9]+"});
        assert!(artifact_matches(matcher.as_object().unwrap(), &git("42")).unwrap());
        assert!(!artifact_matches(matcher.as_object().unwrap(), &git("42a")).unwrap());
        let matcher = json!({"type": "remote/base64"});
        assert!(
            artifact_matches(
                matcher.as_object().unwrap(),
                &json!({"type": "embedded/base64"})
            )
            .unwrap()
        );
        let matcher = json!({"name": "("});
        assert_eq!(
            artifact_matches(matcher.as_object().unwrap(), &git("1"))
                .unwrap_err()
                .0,
            "name"
        );
    }

    #[test]
    fn no_match_falls_back_to_prior_then_default() {
        let default = json!({"type": "git/repo", "name": "acme/web", "version": "stable"});
        let both = expected(json!({"usePriorArtifact": true, "useDefaultArtifact": true,
            "defaultArtifact": default}));
        let other = json!({"type": "docker/image", "name": "x"});
        let r = resolve(
            std::slice::from_ref(&both),
            std::slice::from_ref(&other),
            &["repo-id"],
            &[("repo-id", git("prior"))],
        )
        .unwrap();
        assert_eq!(r.resolved[0]["boundArtifact"]["version"], "prior");
        assert_eq!(r.artifacts, vec![other.clone(), git("prior")]);
        let r = resolve(&[both], &[other], &["repo-id"], &[]).unwrap();
        assert_eq!(r.resolved[0]["boundArtifact"]["version"], "stable");
    }

    #[test]
    fn a_required_artifact_with_nothing_to_bind_fails_naming_it_and_the_offer() {
        let err = resolve(
            &[expected(json!({}))],
            &[json!({"type": "docker/image", "name": "gcr.io/x", "version": "1"})],
            &["repo-id"],
            &[],
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("'repo' (id repo-id)"), "{message}");
        assert!(message.contains("docker/image gcr.io/x@1"), "{message}");
        assert!(message.contains("git/repo acme/.*"), "{message}");
        // Not required: left unbound, no failure.
        let r = resolve(&[expected(json!({}))], &[], &[], &[]).unwrap();
        assert!(r.resolved.is_empty());
    }

    fn stage(context: Value, outputs: Value) -> StageExecution {
        serde_json::from_value(json!({
            "id": "s1", "refId": "1", "type": "bakeManifest", "name": "bake",
            "status": "SUCCEEDED", "context": context, "outputs": outputs
        }))
        .unwrap()
    }

    #[test]
    fn an_upstream_stage_produces_the_artifact_it_declares() {
        let baked = json!({"type": "embedded/base64", "name": "manifest", "reference": "YTogMQ=="});
        let declares = json!({"expectedArtifacts": [{"id": "baked",
            "matchArtifact": {"type": "embedded/base64", "name": "manifest", "artifactAccount": "embedded-artifact"}}]});
        let bake = stage(
            declares.clone(),
            json!({"artifacts": [{"type": "docker/image", "name": "x"}, baked]}),
        );
        let found = produced_artifact(&bake, "baked").unwrap();
        assert_eq!(found["reference"], "YTogMQ==");
        assert_eq!(found["artifactAccount"], "embedded-artifact");
        assert!(produced_artifact(&bake, "other").is_none());

        // Bound in the outputs (Orca's bindProducedArtifacts) wins over matching again.
        let bound = stage(
            declares.clone(),
            json!({"artifacts": [baked], "resolvedExpectedArtifacts": [
                {"id": "baked", "boundArtifact": {"type": "embedded/base64", "name": "other", "reference": "Yjog"}}]}),
        );
        assert_eq!(produced_artifact(&bound, "baked").unwrap()["name"], "other");

        // Nothing produced: the declared default, only with useDefaultArtifact.
        let nothing = stage(declares, json!({}));
        assert!(produced_artifact(&nothing, "baked").is_none());
        let defaulted = stage(
            json!({"expectedArtifacts": [{"id": "baked", "useDefaultArtifact": true,
                "matchArtifact": {"type": "embedded/base64"}, "defaultArtifact": baked}]}),
            json!({}),
        );
        assert_eq!(
            produced_artifact(&defaulted, "baked").unwrap()["name"],
            "manifest"
        );

        // The trigger's binding comes first, then the nearest producer.
        let trigger = json!({"resolvedExpectedArtifacts": [{"id": "baked",
            "boundArtifact": {"type": "http/file", "reference": "https://h/x"}}]});
        let near = stage(
            json!({"expectedArtifact": {"id": "baked", "matchArtifact": {"name": "manifest"}}}),
            json!({"artifacts": [{"type": "embedded/base64", "name": "manifest", "reference": "bmVhcg=="}]}),
        );
        let upstream = [&near, &bake];
        assert_eq!(
            artifact_for_id(trigger.as_object().unwrap(), &upstream, "baked").unwrap()["type"],
            "http/file"
        );
        assert_eq!(
            artifact_for_id(&Map::new(), &upstream, "baked").unwrap()["reference"],
            "bmVhcg=="
        );
    }

    #[test]
    fn a_recorded_artifact_keeps_no_inline_content_nor_url_password() {
        let inline = json!({"type": "embedded/base64", "name": "m", "reference": "c2VjcmV0",
            "metadata": {"x": 1}});
        assert_eq!(
            artifact_identity(&inline),
            json!({"type": "embedded/base64", "name": "m"})
        );
        let http = json!({"type": "http/file", "reference": "https://u:pw@h.example/m.yaml",
            "artifactAccount": "web", "version": ""});
        assert_eq!(
            artifact_identity(&http),
            json!({"type": "http/file", "reference": "https://u:***@h.example/m.yaml", "artifactAccount": "web"})
        );
    }

    #[test]
    fn two_matches_are_ambiguous() {
        let err = resolve(&[expected(json!({}))], &[git("a"), git("b")], &[], &[]).unwrap_err();
        assert!(matches!(err, ResolveError::Ambiguous { count: 2, .. }));
        let message = err.to_string();
        assert!(
            message.contains("acme/web@a") && message.contains("acme/web@b"),
            "{message}"
        );
        // Many matches are listed in part: the message is stored and shown.
        let many: Vec<Value> = (0..25).map(|i| git(&i.to_string())).collect();
        let message = resolve(&[expected(json!({}))], &many, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(message.contains("matches 25 artifacts"), "{message}");
        assert!(
            message.contains("and 15 more") && !message.contains("@24"),
            "{message}"
        );
    }
}
