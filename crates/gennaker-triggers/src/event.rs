//! The events triggers react to, as recorded in the store's inbox, and what git
//! providers' payloads say.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

use crate::signature::Signatures;

/// The git providers `POST /webhooks/git/{provider}` accepts.
pub const GIT_PROVIDERS: [&str; 4] = ["github", "gitlab", "bitbucket", "stash"];

/// Something that arrived and may fire pipelines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Event {
    /// `POST /webhooks/webhook/{source}`.
    #[serde(rename_all = "camelCase")]
    Webhook {
        /// The path's source.
        source: String,
        /// The body as received (a JSON object).
        body: String,
        /// Its signatures, if any.
        signatures: Signatures,
        /// The sender's delivery id (`X-Event-Id`, `Idempotency-Key`), if it sent one.
        delivery: Option<String>,
    },
    /// `POST /webhooks/git/{provider}`.
    #[serde(rename_all = "camelCase")]
    Git {
        /// `github`, `gitlab`, `bitbucket` or `stash`.
        provider: String,
        /// The body as received (a JSON object).
        body: String,
        /// The provider's event name header (`X-GitHub-Event`, `X-Event-Key`, `X-Gitlab-Event`).
        event_name: Option<String>,
        /// Its signatures, if any.
        signatures: Signatures,
        /// The provider's delivery id (`X-GitHub-Delivery`, `X-Request-UUID`, `X-Gitlab-Event-UUID`).
        delivery: Option<String>,
    },
    /// A tag of a Docker registry repository that is new, or points at a new digest.
    #[serde(rename_all = "camelCase")]
    Docker {
        /// The `[[docker.accounts]]` name.
        account: String,
        /// The registry's host (and port), as image references name it.
        registry: String,
        /// The repository (`library/nginx`).
        repository: String,
        /// The tag.
        tag: String,
        /// Its manifest digest.
        digest: String,
    },
    /// An execution of a pipeline ended.
    #[serde(rename_all = "camelCase")]
    Pipeline {
        /// The execution's id.
        execution_id: String,
        /// Its application.
        application: String,
        /// Its pipeline's name.
        name: String,
        /// Its pipeline config's id.
        pipeline_config_id: String,
        /// Its final status (`SUCCEEDED`, `TERMINAL`, …).
        status: String,
        /// When it started and ended (epoch ms).
        start_time: Option<i64>,
        /// When it ended.
        end_time: Option<i64>,
    },
}

fn digest(parts: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl Event {
    /// `webhook`, `git`, `docker` or `pipeline`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Webhook { .. } => "webhook",
            Event::Git { .. } => "git",
            Event::Docker { .. } => "docker",
            Event::Pipeline { .. } => "pipeline",
        }
    }

    /// The key that identifies the event however often it arrives: the sender's
    /// delivery id when it sends one, else a hash of the body (the same body to the
    /// same source is the same event); a Docker tag at a digest; an execution's end.
    pub fn key(&self) -> String {
        let hashed = match self {
            Event::Webhook {
                source,
                body,
                delivery,
                ..
            } => match delivery {
                Some(id) => digest(&["delivery", source, id]),
                None => digest(&["body", source, body]),
            },
            Event::Git {
                provider,
                body,
                delivery,
                ..
            } => match delivery {
                Some(id) => digest(&["delivery", provider, id]),
                None => digest(&["body", provider, body]),
            },
            Event::Docker {
                account,
                repository,
                tag,
                digest: d,
                ..
            } => digest(&[account, repository, tag, d]),
            Event::Pipeline { execution_id, .. } => return format!("pipeline:{execution_id}"),
        };
        format!("{}:{hashed}", self.kind())
    }

    /// What the log shows of the event (never a signature or secret).
    pub fn summary(&self) -> Value {
        match self {
            Event::Webhook { source, .. } => json!({"type": "webhook", "source": source}),
            Event::Git {
                provider,
                body,
                event_name,
                ..
            } => {
                let push = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|payload| GitPush::parse(provider, event_name.as_deref(), &payload));
                match push {
                    Some(push) => {
                        json!({"type": "git", "source": provider, "project": push.project,
                        "slug": push.slug, "branch": push.branch, "hash": push.hash, "action": push.action})
                    }
                    None => json!({"type": "git", "source": provider}),
                }
            }
            Event::Docker {
                account,
                repository,
                tag,
                digest,
                ..
            } => json!({"type": "docker",
                "account": account, "repository": repository, "tag": tag, "digest": digest}),
            Event::Pipeline {
                execution_id,
                application,
                name,
                status,
                ..
            } => json!({"type": "pipeline",
                "executionId": execution_id, "application": application, "pipeline": name, "status": status}),
        }
    }
}

/// What a git provider's push (or pull request) says, in Spinnaker's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPush {
    /// The organisation, namespace or project key.
    pub project: String,
    /// The repository.
    pub slug: String,
    /// The branch (`refs/heads/` removed).
    pub branch: String,
    /// The commit.
    pub hash: String,
    /// `push:push`, `pull_request:opened`, …
    pub action: String,
    /// Where to clone it from, when the payload says.
    pub url: Option<String>,
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn branch_of(reference: &str) -> String {
    reference
        .strip_prefix("refs/heads/")
        .unwrap_or(reference)
        .to_owned()
}

impl GitPush {
    /// Reads a provider's payload; `None` for events that fire nothing (GitHub's ping,
    /// a deleted branch, an event without a repository).
    pub fn parse(provider: &str, event_name: Option<&str>, payload: &Value) -> Option<GitPush> {
        let push = match provider {
            "github" => {
                if payload.get("hook_id").is_some() && payload.get("zen").is_some() {
                    return None;
                }
                let event = event_name.unwrap_or("push");
                let slug = text(payload, "/repository/name")?;
                let url = text(payload, "/repository/clone_url");
                if let Some(pr) = payload.get("pull_request") {
                    GitPush {
                        project: text(payload, "/repository/owner/login")?,
                        slug,
                        branch: text(pr, "/head/ref").unwrap_or_default(),
                        hash: text(pr, "/head/sha").unwrap_or_default(),
                        action: format!(
                            "pull_request:{}",
                            text(payload, "/action").unwrap_or_default()
                        ),
                        url,
                    }
                } else {
                    GitPush {
                        project: text(payload, "/repository/owner/name")
                            .or_else(|| text(payload, "/repository/owner/login"))?,
                        slug,
                        branch: branch_of(&text(payload, "/ref").unwrap_or_default()),
                        hash: text(payload, "/after").unwrap_or_default(),
                        action: if event == "push" {
                            "push:push".to_owned()
                        } else {
                            format!("branch:{event}")
                        },
                        url,
                    }
                }
            }
            "gitlab" => GitPush {
                project: text(payload, "/project/namespace")?,
                slug: text(payload, "/project/name")?,
                branch: branch_of(&text(payload, "/ref").unwrap_or_default()),
                hash: text(payload, "/after")
                    .or_else(|| text(payload, "/checkout_sha"))
                    .unwrap_or_default(),
                action: text(payload, "/object_kind").unwrap_or_else(|| "push".to_owned()),
                url: text(payload, "/project/git_http_url"),
            },
            // Bitbucket Cloud (`repo:push`) and Bitbucket Server / Stash (`repo:refs_changed`).
            _ => {
                if let Some(change) = payload.pointer("/push/changes/0") {
                    GitPush {
                        project: text(payload, "/repository/owner/username")
                            .or_else(|| text(payload, "/repository/workspace/slug"))
                            .unwrap_or_default(),
                        slug: text(payload, "/repository/full_name")?,
                        branch: text(change, "/new/name").unwrap_or_default(),
                        hash: text(change, "/new/target/hash").unwrap_or_default(),
                        action: event_name.unwrap_or("repo:push").to_owned(),
                        url: text(payload, "/repository/links/html/href"),
                    }
                } else {
                    let change = payload.pointer("/changes/0")?;
                    GitPush {
                        project: text(payload, "/repository/project/key")?,
                        slug: text(payload, "/repository/slug")?,
                        branch: branch_of(
                            &text(change, "/ref/id")
                                .or_else(|| text(change, "/refId"))
                                .unwrap_or_default(),
                        ),
                        hash: text(change, "/toHash").unwrap_or_default(),
                        action: event_name.unwrap_or("repo:refs_changed").to_owned(),
                        url: None,
                    }
                }
            }
        };
        // A deleted branch "points" at 000000…: nothing to build.
        if push.hash.starts_with("000000000") {
            return None;
        }
        Some(push)
    }

    /// The trigger's `git/repo` artifact: the repository at this commit.
    pub fn artifact(&self) -> Value {
        let reference = self
            .url
            .clone()
            .unwrap_or_else(|| format!("{}/{}", self.project, self.slug));
        json!({"type": "git/repo", "name": format!("{}/{}", self.project, self.slug),
            "reference": reference, "version": self.hash,
            "metadata": {"branch": self.branch, "sha": self.hash}})
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn providers_payloads_are_read() {
        let github = json!({"ref": "refs/heads/main", "after": "abc123",
            "repository": {"name": "web", "owner": {"name": "acme"}, "clone_url": "https://github.com/acme/web.git"}});
        let push = GitPush::parse("github", Some("push"), &github).unwrap();
        assert_eq!(
            (
                push.project.as_str(),
                push.slug.as_str(),
                push.branch.as_str(),
                push.hash.as_str(),
                push.action.as_str()
            ),
            ("acme", "web", "main", "abc123", "push:push")
        );
        assert_eq!(
            push.artifact()["reference"],
            "https://github.com/acme/web.git"
        );
        assert!(
            GitPush::parse("github", Some("ping"), &json!({"hook_id": 1, "zen": "hi"})).is_none()
        );
        let deleted = json!({"ref": "refs/heads/x", "after": "0000000000000000", "repository": {"name": "web", "owner": {"name": "acme"}}});
        assert!(GitPush::parse("github", Some("push"), &deleted).is_none());
        let gitlab = json!({"object_kind": "push", "ref": "refs/heads/dev", "after": "f00",
            "project": {"namespace": "grp", "name": "svc"}});
        let push = GitPush::parse("gitlab", None, &gitlab).unwrap();
        assert_eq!(
            (
                push.project.as_str(),
                push.slug.as_str(),
                push.branch.as_str()
            ),
            ("grp", "svc", "dev")
        );
        let bitbucket = json!({"repository": {"full_name": "team/app", "owner": {"username": "team"}},
            "push": {"changes": [{"new": {"name": "main", "target": {"hash": "b1"}}}]}});
        let push = GitPush::parse("bitbucket", Some("repo:push"), &bitbucket).unwrap();
        assert_eq!(
            (push.slug.as_str(), push.branch.as_str(), push.hash.as_str()),
            ("team/app", "main", "b1")
        );
    }

    #[test]
    fn event_keys_follow_delivery_ids_or_bodies() {
        let event = |delivery: Option<&str>, body: &str| Event::Webhook {
            source: "ci".into(),
            body: body.into(),
            signatures: Signatures::default(),
            delivery: delivery.map(str::to_owned),
        };
        assert_eq!(event(None, "{}").key(), event(None, "{}").key());
        assert_ne!(event(None, "{}").key(), event(None, "{\"a\":1}").key());
        assert_eq!(
            event(Some("d1"), "{}").key(),
            event(Some("d1"), "{\"a\":1}").key()
        );
        assert!(event(Some("d1"), "{}").key().starts_with("webhook:"));
    }
}
