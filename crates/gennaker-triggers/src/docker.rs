//! Polling a Docker registry (v2 API) for the tags of a repository and their digests.
//!
//! The registry is the operator's (`[[docker.accounts]]`), so requests go to it with
//! a plain client (timeouts, capped bodies), not under the outbound policy that guards
//! requests made on users' behalf; a trigger only chooses the repository path, which
//! is checked to be one.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::DockerAccount;

/// The most bytes of a tag list read.
const MAX_TAG_LIST_BYTES: usize = 4 * 1024 * 1024;
/// The most tags of one repository looked at.
const MAX_TAGS: usize = 1000;

/// The manifest types asked for, so the digest is the one `docker pull` resolves.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Whether `repository` is a registry repository name (`org/name`), not a path trick.
fn valid_repository(repository: &str) -> bool {
    !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        })
}

impl RegistryClient {
    /// A client with a 10 s connect and 30 s request timeout.
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| format!("cannot build the registry client: {err}"))?;
        Ok(Self { http })
    }

    fn request(
        &self,
        account: &DockerAccount,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}/v2/{path}", account.url.trim_end_matches('/'));
        let request = self.http.request(method, url);
        match &account.username {
            Some(user) => request.basic_auth(user, account.password.as_deref()),
            None => request,
        }
    }

    /// The repository's tags (at most 1000) with their manifest digests.
    pub async fn tags(
        &self,
        account: &DockerAccount,
        repository: &str,
    ) -> Result<Vec<(String, String)>, String> {
        if !valid_repository(repository) {
            return Err(format!(
                "repository '{repository}' is not a registry repository name (lower-case 'org/name')"
            ));
        }
        let where_ = format!("account '{}' repository '{repository}'", account.name);
        let response = self
            .request(
                account,
                reqwest::Method::GET,
                &format!("{repository}/tags/list"),
            )
            .send()
            .await
            .map_err(|err| format!("{where_}: listing tags failed: {err}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            return Err(format!(
                "{where_}: listing tags answered {}",
                response.status()
            ));
        }
        let body = gennaker_outbound::read_capped(response, MAX_TAG_LIST_BYTES)
            .await
            .map_err(|err| format!("{where_}: reading the tag list failed: {err}"))?;
        if body.truncated {
            return Err(format!(
                "{where_}: the tag list is larger than {MAX_TAG_LIST_BYTES} bytes"
            ));
        }
        let list: TagList = serde_json::from_slice(&body.bytes).map_err(|err| {
            format!("{where_}: the tag list is not JSON the registry API sends: {err}")
        })?;
        let mut tags = list.tags.unwrap_or_default();
        tags.sort();
        tags.truncate(MAX_TAGS);
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            let response = self
                .request(
                    account,
                    reqwest::Method::HEAD,
                    &format!("{repository}/manifests/{tag}"),
                )
                .header(reqwest::header::ACCEPT, MANIFEST_TYPES)
                .send()
                .await
                .map_err(|err| format!("{where_}: reading tag '{tag}' failed: {err}"))?;
            // A tag deleted between the list and the read is skipped.
            if !response.status().is_success() {
                continue;
            }
            if let Some(digest) = response
                .headers()
                .get("docker-content-digest")
                .and_then(|value| value.to_str().ok())
            {
                out.push((tag, digest.to_owned()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_cannot_escape_the_api_path() {
        assert!(valid_repository("library/nginx"));
        assert!(valid_repository("app"));
        assert!(!valid_repository("../v2"));
        assert!(!valid_repository("a//b"));
        assert!(!valid_repository("a/b?x=1"));
        assert!(!valid_repository("Upper"));
    }
}
