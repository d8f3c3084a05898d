//! The local provider's process spec: what `CreateServerGroup.spec` holds for `local`.
//!
//! Parsed strictly (unknown fields are refused) so a typo in a pipeline fails the deploy
//! stage at once instead of starting processes that silently ignore a setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::LocalError;

/// Where an artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ArtifactSource {
    /// A file on this machine (absolute path).
    Path(String),
    /// An `http://` or `https://` URL.
    Url(String),
    /// The file's bytes, base64-encoded (an `embedded/base64` artifact), at most
    /// [`MAX_EMBEDDED_BYTES`] decoded: the spec is stored with the server group.
    Base64(String),
}

/// The largest embedded artifact (decoded): a script, not a release binary.
pub const MAX_EMBEDDED_BYTES: usize = 256 * 1024;

/// Decodes an embedded artifact, naming what is wrong.
pub(crate) fn decode_embedded(data: &str) -> Result<Vec<u8>, LocalError> {
    use base64::Engine as _;
    // Checked on the text first, so an oversized one is never decoded.
    if data.len() > MAX_EMBEDDED_BYTES.div_ceil(3) * 4 + 4 {
        return Err(LocalError::InvalidSpec(format!(
            "the embedded artifact is larger than {MAX_EMBEDDED_BYTES} bytes: serve it over http(s) and deploy it as an http/file artifact"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            LocalError::InvalidSpec(format!("the embedded artifact is not valid base64: {e}"))
        })?;
    if bytes.len() > MAX_EMBEDDED_BYTES {
        return Err(LocalError::InvalidSpec(format!(
            "the embedded artifact is larger than {MAX_EMBEDDED_BYTES} bytes: serve it over http(s) and deploy it as an http/file artifact"
        )));
    }
    Ok(bytes)
}

/// How an instance's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// `GET` this path; any 2xx passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only check that the port accepts a TCP connection.
    #[serde(default)]
    pub tcp: bool,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        Self {
            path: Some("/health".to_owned()),
            tcp: false,
        }
    }
}

/// What every instance of a server group runs. In a pipeline (camelCase JSON):
///
/// ```json
/// {
///   "artifact": {"path": "/abs/demo-app"},
///   "args": ["--version", "v2"],
///   "env": {"RUST_LOG": "info"},
///   "healthCheck": {"path": "/health"},
///   "gracePeriodSeconds": 10
/// }
/// ```
///
/// `artifact` may instead be `{"url": "https://…"}` or `{"base64": "…"}` (the bytes); `command` (default: the cached
/// artifact) and `workingDir` are optional; `healthCheck` may be `{"tcp": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSpec {
    /// The file to fetch into the cache and pin by sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactSource>,
    /// The program; defaults to the (cached) artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment (`PORT`, `INSTANCE_ID`, `SERVER_GROUP`, `CLUSTER` and
    /// `APPLICATION` are set by the provider).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory; defaults to the instance's directory under the data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The health check; defaults to `GET /health`.
    #[serde(default)]
    pub health_check: HealthCheckSpec,
    /// Seconds between SIGTERM and SIGKILL when an instance stops.
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
}

fn default_grace() -> u64 {
    10
}

impl ProcessSpec {
    /// Parses and checks a spec, naming what is wrong.
    pub fn parse(spec: &Value) -> Result<Self, LocalError> {
        let parsed: Self = serde_json::from_value(spec.clone())
            .map_err(|e| LocalError::InvalidSpec(format!("local process spec: {e}")))?;
        match &parsed.artifact {
            Some(ArtifactSource::Path(path)) if !path.starts_with('/') => {
                return Err(LocalError::InvalidSpec(format!(
                    "artifact path '{path}' must be absolute"
                )));
            }
            Some(ArtifactSource::Url(url))
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                return Err(LocalError::InvalidSpec(format!(
                    "artifact url '{url}' must be http:// or https://"
                )));
            }
            Some(ArtifactSource::Base64(data)) => {
                decode_embedded(data)?;
            }
            _ => {}
        }
        if parsed.artifact.is_none() && parsed.command.is_none() {
            return Err(LocalError::InvalidSpec(
                "a local process spec needs an artifact or a command".to_owned(),
            ));
        }
        if let Some(path) = &parsed.health_check.path
            && !path.starts_with('/')
        {
            return Err(LocalError::InvalidSpec(format!(
                "health check path '{path}' must start with '/'"
            )));
        }
        if parsed.health_check.path.is_none() && !parsed.health_check.tcp {
            return Err(LocalError::InvalidSpec(
                "healthCheck needs a path or \"tcp\": true".to_owned(),
            ));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_shape() {
        let spec = ProcessSpec::parse(&json!({
            "artifact": {"path": "/bin/true"},
            "args": ["--version", "v2"],
            "env": {"A": "1"},
            "healthCheck": {"tcp": true},
            "gracePeriodSeconds": 3
        }))
        .unwrap();
        assert_eq!(
            spec.artifact,
            Some(ArtifactSource::Path("/bin/true".into()))
        );
        assert!(spec.health_check.tcp);
        assert_eq!(spec.grace_period_seconds, 3);
        let defaults = ProcessSpec::parse(&json!({"command": "/bin/sleep"})).unwrap();
        assert_eq!(defaults.health_check.path.as_deref(), Some("/health"));
        assert_eq!(defaults.grace_period_seconds, 10);
    }

    #[test]
    fn refuses_what_cannot_run() {
        for bad in [
            json!({}),
            json!({"artifact": {"path": "relative"}}),
            json!({"artifact": {"url": "ftp://x"}}),
            json!({"command": "/bin/true", "comand": "typo"}),
            json!({"command": "/bin/true", "healthCheck": {"path": "health"}}),
        ] {
            assert!(ProcessSpec::parse(&bad).is_err(), "{bad}");
        }
    }
}
