//! Reading an artifact's content, for manifests and patch bodies from artifacts:
//!
//! - `embedded/base64` (and `remote/base64`, the same type to Spinnaker): the
//!   reference is the content, base64-encoded;
//! - `http/file`: the reference is a URL, fetched with the engine's client under the
//!   operator's `[outbound]` policy (the same one webhooks and the local provider's
//!   downloads obey), so a pipeline cannot make the server read 127.0.0.1 or the
//!   private network unless the operator allowed it;
//! - `github/file`: the reference is a file of GitHub's contents API
//!   (`<api>/repos/<owner>/<repo>/contents/<path>`), read at `version` (a branch, tag
//!   or commit: GitHub's `ref`) with `Accept: application/vnd.github.raw+json`
//!   through a `[[artifacts.github.accounts]]` entry. That API is the operator's, so it
//!   is reached with a plain client (timeouts, redirects on the same origin only)
//!   rather than under the outbound policy; the reference must lie under the
//!   account's `api_base_url`, so a pipeline cannot send the token anywhere else.
//!
//! Every read is bounded ([`MAX_ARTIFACT_BYTES`], and for `http/file` also
//! `[outbound] max_response_bytes`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gennaker_core::redact::redact_url_passwords;
use gennaker_outbound::{OutboundPolicy, read_capped, refusal_of};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::SettingsError;
use crate::settings::ArtifactSettings;

/// The largest artifact content read, in bytes (4 MiB of manifests is far more than
/// any one stage deploys, and the content is recorded with the execution).
pub const MAX_ARTIFACT_BYTES: usize = 4 << 20;

/// `embedded/base64`.
pub const EMBEDDED_BASE64: &str = "embedded/base64";
/// `remote/base64`.
pub const REMOTE_BASE64: &str = "remote/base64";
/// `http/file`.
pub const HTTP_FILE: &str = "http/file";
/// `github/file`.
pub const GITHUB_FILE: &str = "github/file";

/// The artifact types whose content can be read.
pub const READABLE_TYPES: [&str; 4] = [EMBEDDED_BASE64, REMOTE_BASE64, HTTP_FILE, GITHUB_FILE];

/// What GitHub is asked for: the file's bytes, not its JSON description.
const GITHUB_RAW: &str = "application/vnd.github.raw+json";
/// The REST API version the requests are written for.
const GITHUB_API_VERSION: &str = "2022-11-28";
/// How long one GitHub request may take, and its connection.
const GITHUB_TIMEOUT: Duration = Duration::from_secs(30);
const GITHUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most redirects a GitHub request follows (a renamed repository is one).
const GITHUB_MAX_REDIRECTS: usize = 5;

/// Why an artifact's content could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// A type whose content Gennaker cannot read.
    #[error(
        "artifacts of type '{kind}' cannot be read; use embedded/base64 (the content in reference), http/file (a URL) or github/file (a GitHub contents API URL)"
    )]
    UnsupportedType {
        /// The artifact's `type`.
        kind: String,
    },
    /// The artifact has no `reference`.
    #[error("the {kind} artifact has no reference: give {what} in \"reference\"")]
    NoReference {
        /// The artifact's `type`.
        kind: String,
        /// What the reference should hold.
        what: &'static str,
    },
    /// The content is not what the type says (bad base64, not a URL).
    #[error("{0}")]
    Invalid(String),
    /// Reading it is not allowed: the outbound policy refused the URL, or a GitHub
    /// reference lies outside its account's API.
    #[error("{0}")]
    Refused(String),
    /// No usable `[[artifacts.github.accounts]]` entry.
    #[error("{0}")]
    Account(String),
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}{hint}")]
    Status {
        /// The URL (password redacted).
        url: String,
        /// The status code.
        status: u16,
        /// What the status usually means here.
        hint: String,
    },
    /// The server could not be reached, or the answer broke off.
    #[error("{url} could not be read: {reason}")]
    Unreachable {
        /// The URL (password redacted).
        url: String,
        /// Why.
        reason: String,
    },
    /// The content is larger than allowed.
    #[error("the content is larger than {max} bytes, {limit}")]
    TooLarge {
        /// The limit in bytes.
        max: usize,
        /// Which limit, and what to do.
        limit: &'static str,
    },
}

impl FetchError {
    /// Whether trying again later may succeed (a server down or busy, a broken
    /// connection): everything else is the pipeline's or the operator's to fix.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }
}

/// An artifact's content, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their hex sha256, recorded with what the stage read.
    pub sha256: String,
    /// The GitHub account read through, if any.
    pub account: Option<String>,
}

impl Fetched {
    fn new(bytes: Vec<u8>, account: Option<String>) -> Self {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Self {
            bytes,
            sha256,
            account,
        }
    }
}

/// A GitHub artifact account, ready to read with.
struct GithubAccount {
    name: String,
    base: Url,
    token: Option<SecretString>,
}

/// The configured artifact accounts (`[artifacts]`), and the client GitHub is read
/// with. Cheap to clone.
#[derive(Clone, Default)]
pub struct ArtifactAccounts {
    github: BTreeMap<String, Arc<GithubAccount>>,
    /// Built with the first account: without one no GitHub request is made.
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for ArtifactAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactAccounts")
            .field("github", &self.github.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ArtifactAccounts {
    /// The accounts `settings` configure, checked ([`ArtifactSettings::validate`]).
    pub fn new(settings: &ArtifactSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        let mut github = BTreeMap::new();
        for (i, entry) in settings.github.accounts.iter().enumerate() {
            let mut base = Url::parse(&entry.api_base_url).map_err(|err| {
                SettingsError::new(
                    format!("artifacts.github.accounts[{i}].api_base_url"),
                    err.to_string(),
                )
            })?;
            // `…/api/v3` and `…/api/v3/` name the same API.
            let path = base.path().trim_end_matches('/').to_owned();
            base.set_path(&path);
            github.insert(
                entry.name.clone(),
                Arc::new(GithubAccount {
                    name: entry.name.clone(),
                    base,
                    token: entry.token.clone().map(SecretString::from),
                }),
            );
        }
        let client = if github.is_empty() {
            None
        } else {
            Some(github_client().map_err(|err| {
                SettingsError::new(
                    "artifacts.github",
                    format!("cannot build the HTTP client: {err}"),
                )
            })?)
        };
        Ok(Self { github, client })
    }

    /// The GitHub account names, sorted.
    pub fn github_names(&self) -> Vec<&str> {
        self.github.keys().map(String::as_str).collect()
    }

    /// Reads `artifact`'s content: `http/file` with `http` under `outbound` (the
    /// engine's client and policy), `github/file` through the account its
    /// `artifactAccount` names (or the only one configured).
    pub async fn fetch(
        &self,
        artifact: &Value,
        http: &reqwest::Client,
        outbound: &OutboundPolicy,
    ) -> Result<Fetched, FetchError> {
        let text = |key: &str| {
            artifact
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let kind = text("type");
        let reference = text("reference");
        let what = match kind {
            EMBEDDED_BASE64 | REMOTE_BASE64 => "the base64-encoded content",
            HTTP_FILE => "the file's http(s) URL",
            GITHUB_FILE => "the file's contents API URL",
            _ => {
                return Err(FetchError::UnsupportedType {
                    kind: kind.to_owned(),
                });
            }
        };
        if reference.is_empty() {
            return Err(FetchError::NoReference {
                kind: kind.to_owned(),
                what,
            });
        }
        match kind {
            HTTP_FILE => fetch_http(reference, http, outbound).await,
            GITHUB_FILE => {
                let account = self.github_account(text("artifactAccount"))?;
                self.fetch_github(&account, reference, text("version"))
                    .await
            }
            _ => decode_base64(reference).map(|bytes| Fetched::new(bytes, None)),
        }
    }

    /// The account `name` names; none named: the only one configured.
    fn github_account(&self, name: &str) -> Result<Arc<GithubAccount>, FetchError> {
        let configured = || {
            if self.github.is_empty() {
                "none is configured: add one to [[artifacts.github.accounts]] in gennaker.toml"
                    .to_owned()
            } else {
                format!("configured: {}", self.github_names().join(", "))
            }
        };
        if name.is_empty() {
            return match self.github.values().collect::<Vec<_>>().as_slice() {
                [only] => Ok((*only).clone()),
                _ => Err(FetchError::Account(format!(
                    "the github/file artifact names no artifactAccount; set \"artifactAccount\" (or the stage's \"manifestArtifactAccount\") to a GitHub artifact account ({})",
                    configured()
                ))),
            };
        }
        self.github.get(name).cloned().ok_or_else(|| {
            FetchError::Account(format!(
                "no GitHub artifact account '{name}' ({})",
                configured()
            ))
        })
    }

    async fn fetch_github(
        &self,
        account: &GithubAccount,
        reference: &str,
        version: &str,
    ) -> Result<Fetched, FetchError> {
        let mut url = github_url(account, reference)?;
        if !version.is_empty() {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(key, _)| key != "ref")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.query_pairs_mut()
                .clear()
                .extend_pairs(kept)
                .append_pair("ref", version);
        }
        let Some(client) = &self.client else {
            return Err(FetchError::Account(
                "no GitHub artifact account is configured".to_owned(),
            ));
        };
        let mut request = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, GITHUB_RAW)
            .header("X-GitHub-Api-Version", GITHUB_API_VERSION);
        if let Some(token) = &account.token {
            // Marked sensitive by reqwest: never shown in its debug output.
            request = request.bearer_auth(token.expose_secret());
        }
        let shown = url.to_string();
        let response = request
            .send()
            .await
            .map_err(|err| failed_request(&shown, &err))?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let hint = match status {
                401 => format!(
                    " (the token of artifact account '{}' was refused: renew it)",
                    account.name
                ),
                403 => format!(
                    " (artifact account '{}' may not read this repository, or its rate limit is spent)",
                    account.name
                ),
                404 => format!(
                    " (no such file at {}: check owner, repository, path and version, and that artifact account '{}' may read the repository)",
                    if version.is_empty() {
                        "the default branch".to_owned()
                    } else {
                        format!("version '{version}'")
                    },
                    account.name
                ),
                _ => String::new(),
            };
            return Err(FetchError::Status {
                url: shown,
                status,
                hint,
            });
        }
        let bytes = read_bounded(response, &shown, MAX_ARTIFACT_BYTES, SIZE_LIMIT).await?;
        Ok(Fetched::new(bytes, Some(account.name.clone())))
    }
}

/// What a body over [`MAX_ARTIFACT_BYTES`] is told.
const SIZE_LIMIT: &str =
    "the most an artifact may hold here: split the manifests into several artifacts";
/// What an `http/file` body over the outbound cap is told.
const OUTBOUND_LIMIT: &str = "the outbound policy's cap on a response: an operator can raise [outbound] max_response_bytes in gennaker.toml";

/// The plain client GitHub is read with: its own timeouts, redirects followed only on
/// the same origin (reqwest drops the token on any other anyway).
fn github_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("gennaker/", env!("CARGO_PKG_VERSION")))
        .timeout(GITHUB_TIMEOUT)
        .connect_timeout(GITHUB_CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if !same_origin {
                attempt.stop()
            } else if attempt.previous().len() > GITHUB_MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }))
        .build()
}

/// The reference as a URL of `account`'s API: same scheme, host and port, a path
/// `<base>/repos/<owner>/<repo>/contents/<path>`.
fn github_url(account: &GithubAccount, reference: &str) -> Result<Url, FetchError> {
    let expected = format!(
        "{}/repos/<owner>/<repo>/contents/<path>",
        account.base.as_str().trim_end_matches('/')
    );
    let outside = || {
        FetchError::Refused(format!(
            "the github/file reference '{}' is not a file of artifact account '{}''s API: write {expected}",
            redact_url_passwords(reference),
            account.name
        ))
    };
    let url = Url::parse(reference).map_err(|_| outside())?;
    if url.origin() != account.base.origin()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(outside());
    }
    let base_path = account.base.path().trim_end_matches('/');
    let rest = url
        .path()
        .strip_prefix(base_path)
        .and_then(|rest| rest.strip_prefix("/repos/"))
        .ok_or_else(outside)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let well_formed = segments.len() >= 4
        && segments[2] == "contents"
        && segments
            .iter()
            .all(|s| !s.is_empty() && *s != ".." && *s != ".");
    if !well_formed {
        return Err(outside());
    }
    Ok(url)
}

/// Fetches an `http/file` URL under the outbound policy.
async fn fetch_http(
    reference: &str,
    http: &reqwest::Client,
    outbound: &OutboundPolicy,
) -> Result<Fetched, FetchError> {
    let shown = redact_url_passwords(reference).into_owned();
    let url = Url::parse(reference).map_err(|err| {
        FetchError::Invalid(format!(
            "the http/file reference '{shown}' is not a URL ({err}): write an http:// or https:// URL"
        ))
    })?;
    // Refused before any connection is made; names are judged by the client's
    // resolver, and every redirect again.
    outbound.check_url(&url).map_err(|refusal| {
        FetchError::Refused(redact_url_passwords(&refusal.to_string()).into_owned())
    })?;
    let response = http
        .get(url)
        .timeout(outbound.request_timeout())
        .send()
        .await
        .map_err(|err| match refusal_of(&err) {
            Some(refusal) => {
                FetchError::Refused(redact_url_passwords(&refusal.to_string()).into_owned())
            }
            None => failed_request(&shown, &err),
        })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        let hint = match status {
            401 | 403 => " (the server wants credentials Gennaker does not send for http/file: serve the file without them, or use a github/file artifact)".to_owned(),
            404 => " (no file there: check the URL)".to_owned(),
            _ => String::new(),
        };
        return Err(FetchError::Status {
            url: shown,
            status,
            hint,
        });
    }
    let (max, limit) = if outbound.max_response_bytes() < MAX_ARTIFACT_BYTES {
        (outbound.max_response_bytes(), OUTBOUND_LIMIT)
    } else {
        (MAX_ARTIFACT_BYTES, SIZE_LIMIT)
    };
    let bytes = read_bounded(response, &shown, max, limit).await?;
    Ok(Fetched::new(bytes, None))
}

/// The body, refused at once when announced larger than `max`, else read up to it.
async fn read_bounded(
    response: reqwest::Response,
    shown: &str,
    max: usize,
    limit: &'static str,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge { max, limit };
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large());
    }
    let body = read_capped(response, max)
        .await
        .map_err(|err| failed_request(shown, &err))?;
    if body.truncated {
        return Err(too_large());
    }
    Ok(body.bytes)
}

/// A request that failed on the way: the error and its causes in one line (reqwest's
/// own text hides why), URL passwords hidden.
fn failed_request(url: &str, err: &reqwest::Error) -> FetchError {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    FetchError::Unreachable {
        url: url.to_owned(),
        reason: redact_url_passwords(&reason).into_owned(),
    }
}

/// Decodes an `embedded/base64` reference (standard alphabet, padding optional, line
/// breaks allowed), refusing one whose content would exceed [`MAX_ARTIFACT_BYTES`]
/// before decoding it.
pub fn decode_base64(reference: &str) -> Result<Vec<u8>, FetchError> {
    let compact: String = reference
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.len() / 4 * 3 > MAX_ARTIFACT_BYTES + 3 {
        return Err(FetchError::TooLarge {
            max: MAX_ARTIFACT_BYTES,
            limit: SIZE_LIMIT,
        });
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(compact.as_bytes()).map_err(|err| {
        FetchError::Invalid(format!(
            "the embedded/base64 reference is not base64 ({err}): put the base64-encoded content in \"reference\""
        ))
    })?;
    if bytes.len() > MAX_ARTIFACT_BYTES {
        return Err(FetchError::TooLarge {
            max: MAX_ARTIFACT_BYTES,
            limit: SIZE_LIMIT,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{GITHUB_API, GithubAccountSettings, GithubArtifactSettings};
    use serde_json::json;

    fn accounts(entries: &[(&str, &str)]) -> ArtifactAccounts {
        let accounts = entries
            .iter()
            .map(|(name, base)| GithubAccountSettings {
                name: (*name).into(),
                api_base_url: (*base).into(),
                token: Some("ghp_s3cr3t".into()),
            })
            .collect();
        ArtifactAccounts::new(&ArtifactSettings {
            github: GithubArtifactSettings { accounts },
        })
        .unwrap()
    }

    #[test]
    fn base64_content_decodes_with_or_without_padding_and_line_breaks() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("kind: List\nitems: []\n");
        assert_eq!(
            decode_base64(&encoded).unwrap(),
            b"kind: List\nitems: []\n".to_vec()
        );
        let wrapped = format!("{}\n{}", &encoded[..8], encoded[8..].trim_end_matches('='));
        assert_eq!(
            decode_base64(&wrapped).unwrap(),
            b"kind: List\nitems: []\n".to_vec()
        );
        let err = decode_base64("not base64!").unwrap_err();
        assert!(matches!(err, FetchError::Invalid(_)), "{err}");
    }

    #[test]
    fn base64_content_over_the_limit_is_refused_before_decoding() {
        let big = "A".repeat((MAX_ARTIFACT_BYTES / 3 + 2) * 4);
        assert!(matches!(
            decode_base64(&big),
            Err(FetchError::TooLarge {
                max: MAX_ARTIFACT_BYTES,
                ..
            })
        ));
        let at_limit =
            base64::engine::general_purpose::STANDARD.encode(vec![b'x'; MAX_ARTIFACT_BYTES]);
        assert_eq!(decode_base64(&at_limit).unwrap().len(), MAX_ARTIFACT_BYTES);
        let over =
            base64::engine::general_purpose::STANDARD.encode(vec![b'x'; MAX_ARTIFACT_BYTES + 1]);
        assert!(matches!(
            decode_base64(&over),
            Err(FetchError::TooLarge { .. })
        ));
    }

    #[test]
    fn github_references_must_be_files_of_the_account_api() {
        let all = accounts(&[
            ("github", GITHUB_API),
            ("ghe", "https://ghe.example.com/api/v3/"),
        ]);
        let public = all.github_account("github").unwrap();
        assert!(
            github_url(
                &public,
                "https://api.github.com/repos/acme/web/contents/k8s/web.yaml"
            )
            .is_ok()
        );
        let ghe = all.github_account("ghe").unwrap();
        assert!(
            github_url(
                &ghe,
                "https://ghe.example.com/api/v3/repos/acme/web/contents/web.yaml"
            )
            .is_ok()
        );
        for reference in [
            "https://evil.example/repos/acme/web/contents/web.yaml",
            "http://api.github.com/repos/acme/web/contents/web.yaml",
            "https://api.github.com:8443/repos/acme/web/contents/web.yaml",
            "https://api.github.com/user",
            "https://api.github.com/repos/acme/web/contents",
            "https://api.github.com/repos/acme/web/git/blobs/abc",
            "https://x:y@api.github.com/repos/acme/web/contents/a.yaml",
            "acme/web/contents/web.yaml",
        ] {
            let err = github_url(&public, reference).unwrap_err().to_string();
            assert!(
                err.contains("https://api.github.com/repos/<owner>/<repo>/contents/<path>"),
                "{reference}: {err}"
            );
            assert!(!err.contains(":y@"), "{err}");
        }
        // The GHE account's API is under /api/v3 only.
        assert!(
            github_url(
                &ghe,
                "https://ghe.example.com/repos/acme/web/contents/web.yaml"
            )
            .is_err()
        );
    }

    #[test]
    fn the_github_account_is_the_named_one_or_the_only_one() {
        let one = accounts(&[("github", GITHUB_API)]);
        assert_eq!(one.github_account("").unwrap().name, "github");
        let err = one
            .github_account("other")
            .err()
            .map(|e| e.to_string())
            .unwrap();
        assert!(
            err.contains("'other'") && err.contains("configured: github"),
            "{err}"
        );
        let two = accounts(&[("a", GITHUB_API), ("b", GITHUB_API)]);
        let err = two.github_account("").err().map(|e| e.to_string()).unwrap();
        assert!(err.contains("names no artifactAccount"), "{err}");
        let none = ArtifactAccounts::default();
        let err = none
            .github_account("")
            .err()
            .map(|e| e.to_string())
            .unwrap();
        assert!(err.contains("[[artifacts.github.accounts]]"), "{err}");
        assert!(!format!("{two:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn unreadable_types_and_missing_references_are_named() {
        let accounts = ArtifactAccounts::default();
        let http = reqwest::Client::new();
        let outbound = OutboundPolicy::default();
        let err = accounts
            .fetch(
                &json!({"type": "gcs/object", "reference": "gs://b/o"}),
                &http,
                &outbound,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("'gcs/object'"), "{err}");
        let err = accounts
            .fetch(&json!({"type": "http/file"}), &http, &outbound)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("http(s) URL in \"reference\""),
            "{err}"
        );
        let fetched = accounts
            .fetch(
                &json!({"type": "remote/base64", "reference": "YTogMQ=="}),
                &http,
                &outbound,
            )
            .await
            .unwrap();
        assert_eq!(fetched.bytes, b"a: 1".to_vec());
        assert_eq!(fetched.sha256.len(), 64);
    }

    /// Serves `/big` (over the outbound cap, no length announced), `/small`, `/down`
    /// (503) and `/gone` (404) on 127.0.0.1.
    async fn file_server() -> String {
        use axum::body::Body;
        use axum::http::StatusCode;
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/big",
                get(|| async {
                    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024]));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route("/small", get(|| async { "kind: List\nitems: []\n" }))
            .route(
                "/down",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "later") }),
            )
            .route("/gone", get(|| async { (StatusCode::NOT_FOUND, "no") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn http_files_are_bounded_and_their_statuses_named() {
        let base = file_server().await;
        let outbound = OutboundPolicy::new(&gennaker_outbound::OutboundSettings {
            allow: vec!["127.0.0.1/32".into()],
            max_response_bytes: 32 * 1024,
            ..gennaker_outbound::OutboundSettings::default()
        })
        .unwrap();
        let http = outbound.client().unwrap();
        let accounts = ArtifactAccounts::default();
        let fetch = |path: &str| {
            let artifact = json!({"type": "http/file", "reference": format!("{base}{path}")});
            let (accounts, http, outbound) = (&accounts, &http, &outbound);
            async move { accounts.fetch(&artifact, http, outbound).await }
        };
        assert_eq!(
            fetch("/small").await.unwrap().bytes,
            b"kind: List\nitems: []\n".to_vec()
        );
        let err = fetch("/big").await.unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { max: 32768, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("[outbound] max_response_bytes"),
            "{err}"
        );
        let err = fetch("/down").await.unwrap_err();
        assert!(
            err.is_transient() && err.to_string().ends_with("answered HTTP 503"),
            "{err}"
        );
        let err = fetch("/gone").await.unwrap_err();
        assert!(
            !err.is_transient() && err.to_string().contains("HTTP 404 (no file there"),
            "{err}"
        );
        // Not in the allow-list: refused before any connection, with the entry to add.
        let refused = OutboundPolicy::default();
        let artifact = json!({"type": "http/file", "reference": format!("{base}/small")});
        let err = accounts
            .fetch(&artifact, &http, &refused)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
        assert!(
            err.to_string().contains("allow = [\"127.0.0.1/32\"]"),
            "{err}"
        );
    }

    #[test]
    fn only_unavailability_is_worth_retrying() {
        let status = |status| FetchError::Status {
            url: "u".into(),
            status,
            hint: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(404).is_transient());
        assert!(!FetchError::Refused("r".into()).is_transient());
    }
}
