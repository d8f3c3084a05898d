//! A thin JSON client for `/api/v1`: builds URLs from raw path segments, adds the bearer
//! token and turns every failure into a [`CliError`] that says what to check.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::config::{Settings, TokenSource};
use crate::error::{CliError, RequestContext};

/// Generous: saving a large pipeline on a busy PostgreSQL may take a while, but a hung
/// server should not hang a CI job forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An event stream has no overall deadline, but the server sends a keep-alive every
/// 15 s: this much silence means the connection is dead.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("gennaker-cli/", env!("CARGO_PKG_VERSION"));

/// A client bound to one server and token.
#[derive(Debug)]
pub(crate) struct ApiClient {
    http: reqwest::Client,
    base: Url,
    /// The URL as the user wrote it, for messages.
    display_url: String,
    token: Option<String>,
    token_source: TokenSource,
}

impl ApiClient {
    pub(crate) fn new(settings: Settings) -> Result<Self, CliError> {
        let invalid = |reason: String| CliError::InvalidUrl {
            url: settings.url.clone(),
            reason,
        };
        let base = Url::parse(&settings.url).map_err(|err| invalid(err.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("it has no host".to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| invalid(err.to_string()))?;
        Ok(Self {
            http,
            display_url: settings.url.trim_end_matches('/').to_owned(),
            base,
            token: settings.token,
            token_source: settings.token_source,
        })
    }

    /// The server URL as configured.
    pub(crate) fn url(&self) -> &str {
        &self.display_url
    }

    /// `base/api/v1/<segments…>`, each segment percent-encoded: pipeline names contain
    /// spaces and may contain characters that mean something in a path.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            // A base like http://host/gennaker/ keeps its prefix.
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// GET, returning the JSON body.
    pub(crate) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.call(Method::GET, segments, query, None).await
    }

    /// GET of a document that is not JSON (the canary report's HTML): its text.
    pub(crate) async fn get_text(&self, segments: &[&str]) -> Result<String, CliError> {
        let url = self.endpoint(segments);
        let mut request = self.http.get(url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        if !status.is_success() {
            return Err(self.failure(&Method::GET, &url, status, &text));
        }
        Ok(text)
    }

    /// POST with a JSON body.
    pub(crate) async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// PUT with a JSON body.
    pub(crate) async fn put(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.call(Method::PUT, segments, &[], Some(body)).await
    }

    /// DELETE; the body, if any (tokens return the revoked record), else `null`.
    pub(crate) async fn delete(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::DELETE, segments, &[], None).await
    }

    /// GET of a server-sent event stream: the response, once its status is a success.
    /// It has no overall timeout; a minute of silence ends it.
    pub(crate) async fn stream(&self, segments: &[&str]) -> Result<reqwest::Response, CliError> {
        let url = self.endpoint(segments);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STREAM_READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        let mut request = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        Err(self.failure(&Method::GET, &url, status, &text))
    }

    fn failure(&self, method: &Method, url: &Url, status: StatusCode, body: &str) -> CliError {
        let context = RequestContext {
            base_url: self.display_url.clone(),
            request: format!("{method} {}", url.path()),
            token_source: self.token_source.clone(),
        };
        CliError::from_response(status.as_u16(), body, &context)
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = self.endpoint(segments);
        let mut request = self.http.request(method.clone(), url.clone());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| CliError::from_transport(&err, &self.display_url))?;
        if !status.is_success() {
            return Err(self.failure(&method, &url, status, &text));
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|err| {
            CliError::InvalidResponse(format!(
                "{method} {} returned a body that is not JSON ({err})",
                url.path()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<ApiClient, CliError> {
        ApiClient::new(Settings {
            url: url.to_owned(),
            token: None,
            token_source: TokenSource::Missing,
        })
    }

    #[test]
    fn segments_are_percent_encoded() {
        let c = client("http://127.0.0.1:7777").unwrap();
        let url = c.endpoint(&["applications", "shop", "pipelines", "deploy to prod/eu?#%"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7777/api/v1/applications/shop/pipelines/deploy%20to%20prod%2Feu%3F%23%25"
        );
    }

    #[test]
    fn a_base_path_is_kept() {
        let c = client("https://ci.example.com/gennaker/").unwrap();
        assert_eq!(
            c.endpoint(&["me"]).as_str(),
            "https://ci.example.com/gennaker/api/v1/me"
        );
        assert_eq!(c.url(), "https://ci.example.com/gennaker");
    }

    #[test]
    fn bad_urls_are_refused_up_front() {
        for url in ["127.0.0.1:7777", "ftp://host", "not a url", "mailto:a@b"] {
            let err = client(url).unwrap_err();
            assert!(matches!(err, CliError::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(err.to_string().contains("GENNAKER_URL"), "{err}");
        }
    }
}
