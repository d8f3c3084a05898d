//! Which triggers of a pipeline an event fires, with Spinnaker's matching rules
//! (Echo's event handlers), and the `trigger` object the execution gets.
//!
//! | field | comparison |
//! |---|---|
//! | webhook `source` | exact, case-sensitive |
//! | webhook `payloadConstraints` values | regex, found anywhere in the value (anchor with `^…$`) |
//! | git `source`, `project`, `slug` | equal, ignoring case |
//! | git `branch`, docker `tag` | regex, full match; empty docker tag = every tag but `latest` |
//! | docker `account`, `repository` | exact |
//! | pipeline `pipeline` | the ended execution's pipeline config id; `status` its mapped status |

use gennaker_core::lenient::truthy;
use serde_json::{Map, Value, json};

use crate::event::{Event, GitPush};

/// The biggest compiled regex a trigger may use (patterns come from pipeline configs).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What an event means for one trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The trigger is about something else (another source, repository, pipeline): not
    /// logged.
    NotAddressed,
    /// The trigger is about this event but does not fire; why, for the log.
    Rejected(String),
    /// The trigger fires.
    Fire(Firing),
}

/// What a firing trigger hands the execution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Firing {
    /// The execution's `trigger` fields (the engine adds `user`, `parameters`,
    /// `artifacts` and `correlationId`).
    pub trigger: Map<String, Value>,
    /// Parameter values.
    pub parameters: Map<String, Value>,
    /// The trigger's artifacts, in Spinnaker's shape.
    pub artifacts: Vec<Value>,
}

/// A pipeline config's triggers, with their index in `triggers[]`.
pub fn triggers_of(config: &Value) -> impl Iterator<Item = (usize, &Map<String, Value>)> {
    config
        .get("triggers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, trigger)| trigger.as_object().map(|t| (index, t)))
}

fn field<'a>(trigger: &'a Map<String, Value>, name: &str) -> &'a str {
    trigger
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The trigger object's base: the trigger's config without its secret.
fn base(trigger: &Map<String, Value>) -> Map<String, Value> {
    let mut object = trigger.clone();
    object.remove("secret");
    object
}

fn compile(pattern: &str, full: bool) -> Result<regex::Regex, String> {
    let source = if full {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    regex::RegexBuilder::new(&source)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| format!("'{pattern}' is not a valid regular expression: {err}"))
}

/// The values at `key` in `payload`: a top-level key, else a JSONPath (`$.a.b`), else
/// a dotted path (`build.result`); scalars as text, arrays element by element.
fn values_at(payload: &Value, key: &str) -> Vec<String> {
    let found: Vec<&Value> = if let Some(value) = payload.get(key) {
        vec![value]
    } else if key.starts_with('$') {
        match serde_json_path::JsonPath::parse(key) {
            Ok(path) => path.query(payload).all(),
            Err(_) => Vec::new(),
        }
    } else {
        let mut current = Some(payload);
        for part in key.split('.') {
            current = current.and_then(|value| match value {
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                other => other.get(part),
            });
        }
        current.into_iter().collect()
    };
    let mut texts = Vec::new();
    for value in found {
        match value {
            Value::Array(items) => texts.extend(items.iter().filter_map(scalar_text)),
            other => texts.extend(scalar_text(other)),
        }
    }
    texts
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks `payloadConstraints` (Echo's rule: the regex is found in the value).
fn check_constraints(trigger: &Map<String, Value>, payload: &Value) -> Result<(), String> {
    let Some(constraints) = trigger.get("payloadConstraints").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, pattern) in constraints {
        let Some(pattern) = scalar_text(pattern) else {
            continue;
        };
        let regex = compile(&pattern, false).map_err(|err| format!("constraint '{key}': {err}"))?;
        let values = values_at(payload, key);
        if values.is_empty() {
            return Err(format!(
                "constraint '{key}' failed: the payload has no value at '{key}'"
            ));
        }
        if !values.iter().any(|value| regex.is_match(value)) {
            let shown: Vec<String> = values
                .iter()
                .take(3)
                .map(|v| v.chars().take(80).collect())
                .collect();
            return Err(format!(
                "constraint '{key}' failed: {shown:?} does not match '{pattern}'"
            ));
        }
    }
    Ok(())
}

fn disabled(trigger: &Map<String, Value>) -> Option<Verdict> {
    (!truthy(trigger.get("enabled")))
        .then(|| Verdict::Rejected("trigger disabled: set \"enabled\": true to let it fire".into()))
}

/// Whether `trigger` fires on `event`; `payload` is the event's parsed body (webhook
/// and git events) and `event_id` the id users see.
pub fn evaluate(
    trigger: &Map<String, Value>,
    event: &Event,
    payload: &Value,
    event_id: &str,
) -> Verdict {
    let kind = field(trigger, "type");
    match event {
        Event::Webhook {
            source,
            body,
            signatures,
            ..
        } => {
            if kind != "webhook" {
                return Verdict::NotAddressed;
            }
            let wanted = field(trigger, "source");
            if wanted != source {
                return if wanted.eq_ignore_ascii_case(source) {
                    Verdict::Rejected(format!(
                        "source '{wanted}' differs from '{source}' in case: webhook sources are case-sensitive"
                    ))
                } else {
                    Verdict::NotAddressed
                };
            }
            if let Some(verdict) = disabled(trigger) {
                return verdict;
            }
            let secret = trigger.get("secret").and_then(Value::as_str);
            if let Err(reason) = signatures.verify(secret, body.as_bytes()) {
                return Verdict::Rejected(reason);
            }
            if let Err(reason) = check_constraints(trigger, payload) {
                return Verdict::Rejected(reason);
            }
            let mut object = base(trigger);
            object.insert("type".into(), json!("webhook"));
            object.insert("source".into(), json!(source));
            object.insert("payload".into(), payload.clone());
            object.insert("eventId".into(), json!(event_id));
            Verdict::Fire(Firing {
                trigger: object,
                parameters: payload
                    .get("parameters")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                artifacts: payload
                    .get("artifacts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            })
        }
        Event::Git {
            provider,
            body,
            event_name,
            signatures,
            ..
        } => {
            if kind != "git" || !field(trigger, "source").eq_ignore_ascii_case(provider) {
                return Verdict::NotAddressed;
            }
            let Some(push) = GitPush::parse(provider, event_name.as_deref(), payload) else {
                return Verdict::NotAddressed;
            };
            if !field(trigger, "project").eq_ignore_ascii_case(&push.project)
                || !field(trigger, "slug").eq_ignore_ascii_case(&push.slug)
            {
                return Verdict::NotAddressed;
            }
            if let Some(verdict) = disabled(trigger) {
                return verdict;
            }
            let secret = trigger.get("secret").and_then(Value::as_str);
            if let Err(reason) = signatures.verify(secret, body.as_bytes()) {
                return Verdict::Rejected(reason);
            }
            let branch = field(trigger, "branch").trim();
            if !branch.is_empty() {
                match compile(branch, true) {
                    Ok(regex) if regex.is_match(&push.branch) => {}
                    Ok(_) => {
                        return Verdict::Rejected(format!(
                            "branch '{}' did not match '{branch}' (a full match)",
                            push.branch
                        ));
                    }
                    Err(err) => return Verdict::Rejected(format!("branch: {err}")),
                }
            }
            let events: Vec<&str> = trigger
                .get("events")
                .and_then(Value::as_array)
                .map(|events| events.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !events.is_empty() && !events.contains(&push.action.as_str()) {
                return Verdict::Rejected(format!(
                    "event '{}' is not one of the trigger's events {events:?}",
                    push.action
                ));
            }
            let mut object = base(trigger);
            for (key, value) in [
                ("type", "git"),
                ("source", provider.as_str()),
                ("project", &push.project),
                ("slug", &push.slug),
                ("branch", &push.branch),
                ("hash", &push.hash),
                ("action", &push.action),
                ("eventId", event_id),
            ] {
                object.insert(key.into(), json!(value));
            }
            object.insert("payload".into(), payload.clone());
            Verdict::Fire(Firing {
                trigger: object,
                parameters: Map::new(),
                artifacts: vec![push.artifact()],
            })
        }
        Event::Docker {
            account,
            registry,
            repository,
            tag,
            digest,
        } => {
            if kind != "docker"
                || field(trigger, "account") != account
                || field(trigger, "repository") != repository
            {
                return Verdict::NotAddressed;
            }
            if let Some(verdict) = disabled(trigger) {
                return verdict;
            }
            let pattern = field(trigger, "tag").trim();
            if pattern.is_empty() {
                if tag == "latest" {
                    return Verdict::Rejected(
                        "tag 'latest' fires only a trigger whose tag pattern names it".into(),
                    );
                }
            } else {
                match compile(pattern, true) {
                    Ok(regex) if regex.is_match(tag) => {}
                    Ok(_) => {
                        return Verdict::Rejected(format!(
                            "tag '{tag}' did not match '{pattern}' (a full match)"
                        ));
                    }
                    Err(err) => return Verdict::Rejected(format!("tag: {err}")),
                }
            }
            let name = format!("{registry}/{repository}");
            let mut object = base(trigger);
            for (key, value) in [
                ("type", "docker"),
                ("account", account.as_str()),
                ("registry", registry),
                ("repository", repository),
                ("tag", tag),
                ("digest", digest),
                ("eventId", event_id),
            ] {
                object.insert(key.into(), json!(value));
            }
            let artifact = json!({"type": "docker/image", "name": name, "version": tag,
                "reference": format!("{name}:{tag}"), "metadata": {"digest": digest, "account": account}});
            Verdict::Fire(Firing {
                trigger: object,
                parameters: Map::new(),
                artifacts: vec![artifact],
            })
        }
        Event::Pipeline {
            execution_id,
            application,
            name,
            pipeline_config_id,
            status,
            start_time,
            end_time,
        } => {
            if kind != "pipeline" || field(trigger, "pipeline") != pipeline_config_id {
                return Verdict::NotAddressed;
            }
            if let Some(verdict) = disabled(trigger) {
                return verdict;
            }
            // Orca's DependentPipelineExecutionListener: everything else counts as failed.
            let mapped = match status.as_str() {
                "SUCCEEDED" => "successful",
                "CANCELED" => "canceled",
                "SUSPENDED" => "suspended",
                _ => "failed",
            };
            let statuses: Vec<String> = trigger
                .get("status")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_lowercase)
                        .collect()
                })
                .unwrap_or_default();
            if !statuses.iter().any(|s| s == mapped) {
                return Verdict::Rejected(format!(
                    "the parent ended {status} ('{mapped}'), not one of the trigger's statuses {statuses:?}"
                ));
            }
            let mut object = base(trigger);
            object.insert("type".into(), json!("pipeline"));
            object.insert(
                "parentExecution".into(),
                json!({"id": execution_id, "application": application,
                "name": name, "pipelineConfigId": pipeline_config_id, "status": status,
                "startTime": start_time, "endTime": end_time}),
            );
            object.insert("parentPipelineId".into(), json!(pipeline_config_id));
            object.insert("parentPipelineName".into(), json!(name));
            object.insert("parentPipelineApplication".into(), json!(application));
            object.insert("parentStatus".into(), json!(status));
            object.insert("eventId".into(), json!(event_id));
            Verdict::Fire(Firing {
                trigger: object,
                ..Firing::default()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::signature::{Signatures, github_signature_256};

    fn webhook(body: &Value, signatures: Signatures) -> (Event, Value) {
        let text = body.to_string();
        (
            Event::Webhook {
                source: "ci".into(),
                body: text,
                signatures,
                delivery: None,
            },
            body.clone(),
        )
    }

    fn trigger(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn rejected(verdict: Verdict) -> String {
        match verdict {
            Verdict::Rejected(reason) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn webhook_constraints_follow_echo() {
        let t = trigger(json!({"type": "webhook", "enabled": true, "source": "ci",
            "payloadConstraints": {"env": "prod|staging", "build.result": "^SUCCESS$", "$.tags[*]": "^rc$"}}));
        let good = json!({"env": "preprod", "build": {"result": "SUCCESS"}, "tags": ["x", "rc"], "parameters": {"v": "1"}});
        let (event, payload) = webhook(&good, Signatures::default());
        let Verdict::Fire(firing) = evaluate(&t, &event, &payload, "e1") else {
            panic!()
        };
        assert_eq!(firing.trigger["payload"], good);
        assert_eq!(firing.trigger["source"], "ci");
        assert_eq!(firing.parameters["v"], "1");
        let (event, payload) = webhook(
            &json!({"env": "dev", "build": {"result": "SUCCESS"}, "tags": ["rc"]}),
            Signatures::default(),
        );
        assert_eq!(
            rejected(evaluate(&t, &event, &payload, "e")),
            "constraint 'env' failed: [\"dev\"] does not match 'prod|staging'"
        );
        let (event, payload) = webhook(
            &json!({"env": "prod", "tags": ["rc"]}),
            Signatures::default(),
        );
        assert_eq!(
            rejected(evaluate(&t, &event, &payload, "e")),
            "constraint 'build.result' failed: the payload has no value at 'build.result'"
        );
        let other = trigger(json!({"type": "webhook", "enabled": true, "source": "other"}));
        assert_eq!(
            evaluate(&other, &event, &payload, "e"),
            Verdict::NotAddressed
        );
        let case = trigger(json!({"type": "webhook", "enabled": true, "source": "CI"}));
        assert!(rejected(evaluate(&case, &event, &payload, "e")).contains("case-sensitive"));
        let off = trigger(json!({"type": "webhook", "enabled": false, "source": "ci"}));
        assert!(rejected(evaluate(&off, &event, &payload, "e")).starts_with("trigger disabled"));
    }

    #[test]
    fn webhook_secrets_need_a_valid_signature() {
        let t = trigger(
            json!({"type": "webhook", "enabled": true, "source": "ci", "secret": "s3cr3t"}),
        );
        let body = json!({"a": 1});
        let sig = github_signature_256("s3cr3t", body.to_string().as_bytes());
        let (event, payload) = webhook(&body, Signatures::new(Some(&sig), None, None));
        let Verdict::Fire(firing) = evaluate(&t, &event, &payload, "e") else {
            panic!()
        };
        assert!(
            firing.trigger.get("secret").is_none(),
            "the secret is not handed to the execution"
        );
        let bad = github_signature_256("nope", body.to_string().as_bytes());
        let (event, payload) = webhook(&body, Signatures::new(Some(&bad), None, None));
        assert!(rejected(evaluate(&t, &event, &payload, "e")).starts_with("signature invalid"));
        let (event, payload) = webhook(&body, Signatures::default());
        assert!(rejected(evaluate(&t, &event, &payload, "e")).starts_with("signature missing"));
    }

    #[test]
    fn git_branches_match_fully_and_artifacts_name_the_commit() {
        let t = trigger(
            json!({"type": "git", "enabled": true, "source": "github", "project": "ACME", "slug": "web", "branch": "main|release/.*"}),
        );
        let payload = |branch: &str| {
            json!({"ref": format!("refs/heads/{branch}"), "after": "abc",
            "repository": {"name": "web", "owner": {"name": "acme"}}})
        };
        let event = |payload: &Value| Event::Git {
            provider: "github".into(),
            body: payload.to_string(),
            event_name: Some("push".into()),
            signatures: Signatures::default(),
            delivery: None,
        };
        let p = payload("release/1.2");
        let Verdict::Fire(firing) = evaluate(&t, &event(&p), &p, "e") else {
            panic!()
        };
        assert_eq!(firing.trigger["branch"], "release/1.2");
        assert_eq!(firing.trigger["hash"], "abc");
        assert_eq!(firing.artifacts[0]["type"], "git/repo");
        assert_eq!(firing.artifacts[0]["version"], "abc");
        let p = payload("mainline");
        assert_eq!(
            rejected(evaluate(&t, &event(&p), &p, "e")),
            "branch 'mainline' did not match 'main|release/.*' (a full match)"
        );
        let elsewhere = trigger(
            json!({"type": "git", "enabled": true, "source": "github", "project": "acme", "slug": "api"}),
        );
        assert_eq!(
            evaluate(&elsewhere, &event(&p), &p, "e"),
            Verdict::NotAddressed
        );
    }

    #[test]
    fn docker_tags_and_pipeline_statuses() {
        let event = |tag: &str| Event::Docker {
            account: "hub".into(),
            registry: "127.0.0.1:5000".into(),
            repository: "app/web".into(),
            tag: tag.into(),
            digest: "sha256:1".into(),
        };
        let any = trigger(
            json!({"type": "docker", "enabled": true, "account": "hub", "repository": "app/web"}),
        );
        let Verdict::Fire(firing) = evaluate(&any, &event("1.0"), &Value::Null, "e") else {
            panic!()
        };
        assert_eq!(
            firing.artifacts[0],
            json!({"type": "docker/image", "name": "127.0.0.1:5000/app/web", "version": "1.0",
            "reference": "127.0.0.1:5000/app/web:1.0", "metadata": {"digest": "sha256:1", "account": "hub"}})
        );
        assert!(rejected(evaluate(&any, &event("latest"), &Value::Null, "e")).contains("latest"));
        let semver = trigger(
            json!({"type": "docker", "enabled": true, "account": "hub", "repository": "app/web", "tag": "\\d+\\.\\d+"}),
        );
        assert!(
            rejected(evaluate(&semver, &event("1.0-rc"), &Value::Null, "e"))
                .contains("did not match")
        );

        let parent = |status: &str| Event::Pipeline {
            execution_id: "x1".into(),
            application: "a".into(),
            name: "build".into(),
            pipeline_config_id: "p1".into(),
            status: status.into(),
            start_time: None,
            end_time: None,
        };
        let t = trigger(
            json!({"type": "pipeline", "enabled": true, "application": "a", "pipeline": "p1", "status": ["successful"]}),
        );
        let Verdict::Fire(firing) = evaluate(&t, &parent("SUCCEEDED"), &Value::Null, "e") else {
            panic!()
        };
        assert_eq!(firing.trigger["parentExecution"]["id"], "x1");
        assert!(
            rejected(evaluate(&t, &parent("TERMINAL"), &Value::Null, "e")).contains("('failed')")
        );
    }
}
