//! The `prometheus` metric source: Kayenta's Prometheus query construction
//! (`PrometheusMetricsService.buildQuery`) and response conversion
//! (`PrometheusResponseConverter`), over `GET /api/v1/query_range`.
//!
//! The operator configures Prometheus accounts, so requests do not go through the
//! outbound policy; they are limited instead to http(s), to redirects on the same
//! host, to a timeout and to a response size.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::template;
use super::{MetricSet, MetricSource, ScopeQuery, SourceError};
use crate::config::{CanaryConfig, CanaryMetricConfig, MetricQuery};
use crate::settings::{CanarySettingsError, Secret};

/// The largest Prometheus answer read by default (bytes).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// How a Prometheus account authenticates.
#[derive(Clone, Default)]
pub enum PrometheusAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

impl std::fmt::Debug for PrometheusAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which kind only: credentials are never printed.
        f.write_str(match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer(<redacted>)",
            Self::Basic { .. } => "Basic(<redacted>)",
        })
    }
}

/// One configured Prometheus account.
#[derive(Debug, Clone)]
pub struct PrometheusAccount {
    /// The account name stages refer to (`metricsAccountName`).
    pub name: String,
    /// The server's base URL (`http://prometheus:9090`, or with a path prefix).
    pub url: url::Url,
    /// Credentials.
    pub auth: PrometheusAuth,
    /// How long one query may take, body included.
    pub timeout: Duration,
    /// The label the `gce_instance` resource type matches the scope against
    /// (Kayenta's `scopeLabel`, default `instance`).
    pub scope_label: String,
    /// The largest answer read; a larger one is an error.
    pub max_response_bytes: usize,
}

/// Range queries against one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    account: PrometheusAccount,
    client: reqwest::Client,
}

impl PrometheusSource {
    /// A source for `account`; refuses URLs that are not http(s) or carry credentials
    /// (they belong in `bearer_token` or `username`/`password`, which are never shown).
    pub fn new(account: PrometheusAccount) -> Result<Self, CanarySettingsError> {
        let invalid = |message: String| CanarySettingsError::Account {
            account: account.name.clone(),
            message,
        };
        if !matches!(account.url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "url must be http:// or https://, not {}://",
                account.url.scheme()
            )));
        }
        if !account.url.username().is_empty() || account.url.password().is_some() {
            return Err(invalid(
                "url must not contain credentials; set username and password (or bearer_token) instead"
                    .to_owned(),
            ));
        }
        let origin = account.url.origin();
        let client = reqwest::Client::builder()
            .timeout(account.timeout)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                // Credentials must not travel to another host.
                if attempt.url().origin() != origin {
                    attempt.stop()
                } else if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { account, client })
    }

    /// The account this source queries.
    pub fn account(&self) -> &PrometheusAccount {
        &self.account
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.account.url.as_str().trim_end_matches('/'))
    }

    fn failed(&self, query: &str, message: impl Into<String>) -> SourceError {
        SourceError::QueryFailed {
            account: self.account.name.clone(),
            query: query.to_owned(),
            message: message.into(),
        }
    }

    /// Sends one GET to the API and returns the `data` of a successful answer.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<PromData, SourceError> {
        let mut request = self.client.get(self.endpoint(path)).query(params);
        request = match &self.account.auth {
            PrometheusAuth::None => request,
            PrometheusAuth::Bearer(token) => request.bearer_auth(token.expose()),
            PrometheusAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        let timeout = || SourceError::Timeout {
            account: self.account.name.clone(),
            query: query.to_owned(),
            seconds: self.account.timeout.as_secs(),
        };
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                timeout()
            } else {
                // Without the URL: reqwest's text would repeat it, and it is in the config.
                self.failed(
                    query,
                    format!("cannot reach {}: {}", self.account.url, e.without_url()),
                )
            }
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(self.failed(
                query,
                format!(
                    "Prometheus answered {status}, a redirect to another host (not followed); set url to the address it redirects to"
                ),
            ));
        }
        let body = gennaker_outbound::read_capped(response, self.account.max_response_bytes)
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    timeout()
                } else {
                    self.failed(
                        query,
                        format!("reading the answer failed: {}", e.without_url()),
                    )
                }
            })?;
        if body.truncated {
            return Err(self.failed(
                query,
                format!(
                    "the answer is larger than {} bytes; narrow the query (labelBindings, groupByFields) or the window, or raise max_response_bytes",
                    self.account.max_response_bytes
                ),
            ));
        }
        let answer: PromAnswer = serde_json::from_slice(&body.bytes).map_err(|e| {
            let start = String::from_utf8_lossy(&body.bytes[..body.bytes.len().min(200)]).into_owned();
            self.failed(
                query,
                format!("Prometheus answered {status} with a body that is not its JSON ({e}): {start:?}; is url a Prometheus server?"),
            )
        })?;
        match answer {
            PromAnswer {
                status: s,
                data: Some(data),
                ..
            } if s == "success" => Ok(data),
            PromAnswer {
                error_type, error, ..
            } => Err(self.failed(
                query,
                format!(
                    "Prometheus answered {status}: {}{}",
                    error_type.map(|t| format!("{t}: ")).unwrap_or_default(),
                    error.unwrap_or_else(|| "no error text".to_owned())
                ),
            )),
        }
    }

    /// Whether any series of `metric_name` exists in the window: an empty answer for a
    /// name Prometheus has never seen is a typo to report, not missing data.
    async fn metric_exists(
        &self,
        metric_name: &str,
        scope: &ScopeQuery,
    ) -> Result<bool, SourceError> {
        let selector = format!(
            "{{__name__=\"{}\"}}",
            metric_name.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let data = self
            .get(
                "api/v1/series",
                &[
                    ("match[]", selector.clone()),
                    ("start", scope.start.to_string()),
                    ("end", scope.end.to_string()),
                ],
                &selector,
            )
            .await?;
        Ok(!data.series_is_empty())
    }
}

#[async_trait::async_trait]
impl MetricSource for PrometheusSource {
    fn kind(&self) -> &'static str {
        "prometheus"
    }

    async fn query(
        &self,
        config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        let built = build_query(config, metric, scope, &self.account.scope_label)?;
        let step = scope.step_seconds.max(1);
        let data = self
            .get(
                "api/v1/query_range",
                &[
                    ("query", built.query.clone()),
                    ("start", scope.start.to_string()),
                    ("end", scope.end.to_string()),
                    ("step", step.to_string()),
                ],
                &built.query,
            )
            .await?;
        let sets = convert(data, &built.query, scope).map_err(|m| self.failed(&built.query, m))?;
        if sets.iter().all(|s| s.values.is_empty())
            && let Some(name) = &built.metric_name
            && !self.metric_exists(name, scope).await?
        {
            return Err(self.failed(
                &built.query,
                format!(
                    "metric {name:?} was not found: Prometheus has no series of that name between {} and {}; check metricName in canary config metric {:?}",
                    scope.start, scope.end, metric.name
                ),
            ));
        }
        Ok(sets)
    }
}

/// A query as built: the PromQL text and, unless it was given whole (`PromQL:`), the
/// metric it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltQuery {
    /// The PromQL sent to Prometheus.
    pub query: String,
    /// The metric name of a built selector.
    pub metric_name: Option<String>,
}

fn text_field<'a>(query: &'a MetricQuery, key: &str) -> Option<&'a str> {
    query
        .fields
        .get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

fn list_field(query: &MetricQuery, key: &str) -> Result<Vec<String>, String> {
    match query.fields.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("query.{key} must be a list of strings, found {item}"))
            })
            .collect(),
        Some(other) => Err(format!(
            "query.{key} must be a list of strings, found {other}"
        )),
    }
}

/// Builds the PromQL of `metric` for one side of a scope, exactly as Kayenta's
/// `PrometheusMetricsService.buildQuery` does: a `PromQL:` template is the whole
/// query; otherwise `avg(metricName{template filters, labelBindings}) by (groupByFields)`,
/// with resource-type filters when there is no template.
pub fn build_query(
    config: &CanaryConfig,
    metric: &CanaryMetricConfig,
    scope: &ScopeQuery,
    scope_label: &str,
) -> Result<BuiltQuery, SourceError> {
    let bad = |message: String| SourceError::BadQuery {
        metric: metric.name.clone(),
        source_kind: "prometheus".to_owned(),
        message,
    };
    let query = &metric.query;
    if let Some(kind) = query.kind.as_deref()
        && kind != "prometheus"
    {
        return Err(bad(format!(
            "query.type is {kind:?}, but this metrics account is a Prometheus one; use a {kind} account or write a prometheus query"
        )));
    }
    if query
        .fields
        .get("customFilter")
        .is_some_and(|v| !v.is_null())
    {
        return Err(bad(
            "query.customFilter is no longer supported (as in Kayenta): move it to customInlineTemplate".to_owned(),
        ));
    }
    let resource_type = text_field(query, "resourceType")
        .map(str::to_owned)
        .or_else(|| {
            scope
                .extended_params
                .get("resourceType")
                .filter(|s| !s.is_empty())
                .cloned()
        });
    let filter = expand_custom_filter(config, query, scope).map_err(&bad)?;
    if let Some(filter) = &filter
        && let Some(promql) = filter.strip_prefix("PromQL:")
    {
        return Ok(BuiltQuery {
            query: promql.to_owned(),
            metric_name: None,
        });
    }
    let Some(metric_name) = query.metric_name.as_deref().filter(|n| !n.is_empty()) else {
        return Err(bad(
            "query.metricName is required (or a customInlineTemplate starting with \"PromQL:\")"
                .to_owned(),
        ));
    };
    let mut filters = list_field(query, "labelBindings").map_err(&bad)?;
    match (&filter, resource_type.as_deref()) {
        (Some(filter), _) if !filter.is_empty() => {
            // The template's comma-separated matchers come first.
            filters.splice(0..0, filter.split(',').map(str::to_owned));
        }
        (_, Some("gce_instance")) => {
            let project = scope
                .extended_params
                .get("project")
                .filter(|p| !p.is_empty())
                .map(|p| format!("projects/{p}/"))
                .unwrap_or_default();
            filters.push(format!("{scope_label}=~\"{}-.{{4}}\"", scope.scope));
            filters.push(format!(
                "zone=~\".+/{project}zones/{}-.{{1}}\"",
                scope.location
            ));
        }
        (_, Some("aws_ec2_instance")) => {
            filters.push(format!("asg_groupName=\"{}\"", scope.scope));
            filters.push(format!("zone=~\"{}.{{1}}\"", scope.location));
        }
        (_, other) => {
            return Err(bad(format!(
                "Either a resource type or a custom filter is required (resourceType {:?} is not supported: use gce_instance, aws_ec2_instance, or a customInlineTemplate / customFilterTemplate such as server_group=\"${{scope}}\")",
                other.unwrap_or("")
            )));
        }
    }
    let mut text = format!("avg({metric_name}");
    if !filters.is_empty() {
        text.push('{');
        text.push_str(&filters.join(","));
        text.push('}');
    }
    text.push(')');
    let group_by = list_field(query, "groupByFields").map_err(&bad)?;
    if !group_by.is_empty() {
        text.push_str(" by (");
        text.push_str(&group_by.join(","));
        text.push(')');
    }
    Ok(BuiltQuery {
        query: text,
        metric_name: Some(metric_name.to_owned()),
    })
}

/// Kayenta's `QueryConfigUtils.expandCustomFilter`: the inline template, else the
/// named one, expanded with the scope's fields, the query's and `extendedScopeParams`.
fn expand_custom_filter(
    config: &CanaryConfig,
    query: &MetricQuery,
    scope: &ScopeQuery,
) -> Result<Option<String>, String> {
    let inline = query
        .custom_inline_template
        .as_deref()
        .filter(|t| !t.is_empty());
    let template = match (inline, query.custom_filter_template.as_deref().filter(|t| !t.is_empty())) {
        (Some(inline), _) => inline,
        (None, Some(name)) => config.templates.get(name).map(String::as_str).ok_or_else(|| {
            format!(
                "Custom filter template '{name}' was not found; the canary config's templates are: {}",
                if config.templates.is_empty() {
                    "none".to_owned()
                } else {
                    config.templates.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })?,
        (None, None) => return Ok(None),
    };
    let mut bindings = BTreeMap::new();
    // Scope fields first (an empty one is unset, like Kayenta's null), then the query's
    // fields of the same names, then every extended scope parameter.
    for (name, value) in [("scope", &scope.scope), ("location", &scope.location)] {
        if !value.is_empty() {
            bindings.insert(name.to_owned(), value.clone());
        }
    }
    for name in ["project", "resourceType", "scope", "location"] {
        if let Some(value) = text_field(query, name) {
            bindings.insert(name.to_owned(), value.to_owned());
        }
    }
    bindings.extend(scope.extended_params.clone());
    template::expand(template, &bindings).map(Some)
}

/// Prometheus's answer envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromAnswer {
    status: String,
    data: Option<PromData>,
    error_type: Option<String>,
    error: Option<String>,
}

/// `data`: a range query's matrix, or a series listing.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromData {
    Matrix {
        #[serde(rename = "resultType")]
        result_type: String,
        result: serde_json::Value,
    },
    Series(Vec<serde_json::Value>),
}

impl PromData {
    fn series_is_empty(&self) -> bool {
        match self {
            Self::Matrix { result, .. } => result.as_array().is_none_or(Vec::is_empty),
            Self::Series(series) => series.is_empty(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PromSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Kayenta's `PrometheusResponseConverter`: one set per series, tags = labels minus
/// `__name__`, values as Prometheus wrote them ("NaN", "+Inf", "-Inf" included), gaps
/// not filled; no series at all is one empty set (NoData for the judge).
fn convert(data: PromData, query: &str, scope: &ScopeQuery) -> Result<Vec<MetricSet>, String> {
    let PromData::Matrix {
        result_type,
        result,
    } = data
    else {
        return Err("Prometheus answered something other than a range query result".to_owned());
    };
    if result_type != "matrix" {
        return Err(format!(
            "Prometheus answered a {result_type}, not a matrix; the query must select series (not a scalar or string)"
        ));
    }
    let result: Vec<PromSeries> = serde_json::from_value(result)
        .map_err(|e| format!("Prometheus answered a matrix this source cannot read: {e}"))?;
    if result.is_empty() {
        return Ok(vec![MetricSet {
            tags: BTreeMap::new(),
            values: Vec::new(),
            start: scope.start,
            step_seconds: scope.step_seconds,
            query: query.to_owned(),
        }]);
    }
    result
        .into_iter()
        .map(|series| {
            let mut tags = series.metric;
            tags.remove("__name__");
            let values = series
                .values
                .iter()
                .map(|(_, v)| parse_value(v))
                .collect::<Result<Vec<_>, _>>()?;
            let start = match series.values.first() {
                Some((at, _)) => timestamp(*at)?,
                None => scope.start,
            };
            let step_seconds = match series.values.as_slice() {
                [(a, _), (b, _), ..] => ((b - a).round() as u64).max(1),
                _ => scope.step_seconds,
            };
            Ok(MetricSet {
                tags,
                values,
                start,
                step_seconds,
                query: query.to_owned(),
            })
        })
        .collect()
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| format!("Prometheus answered a value that is not a number: {other:?}")),
    }
}

fn timestamp(seconds: f64) -> Result<jiff::Timestamp, String> {
    jiff::Timestamp::from_millisecond((seconds * 1000.0).round() as i64)
        .map_err(|e| format!("Prometheus answered a timestamp out of range ({seconds}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(extended: &[(&str, &str)]) -> ScopeQuery {
        ScopeQuery {
            scope: "myapp-v010".to_owned(),
            location: "us-east1".to_owned(),
            start: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            end: jiff::Timestamp::from_second(1_700_000_600).unwrap(),
            step_seconds: 60,
            extended_params: extended
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn metric(query: serde_json::Value) -> CanaryMetricConfig {
        serde_json::from_value(json!({"name": "cpu", "query": query})).unwrap()
    }

    fn build(
        config: serde_json::Value,
        query: serde_json::Value,
        s: &ScopeQuery,
    ) -> Result<String, SourceError> {
        let config: CanaryConfig = serde_json::from_value(config).unwrap();
        build_query(&config, &metric(query), s, "instance").map(|b| b.query)
    }

    fn message(e: SourceError) -> String {
        e.to_string()
    }

    // The cases of Kayenta's PrometheusMetricsServiceTest / QueryConfigUtilsTest.
    #[test]
    fn gce_and_ec2_resource_types() {
        let q = json!({"type": "prometheus", "metricName": "cpu", "resourceType": "gce_instance"});
        assert_eq!(
            build(json!({}), q, &scope(&[])).unwrap(),
            "avg(cpu{instance=~\"myapp-v010-.{4}\",zone=~\".+/zones/us-east1-.{1}\"})"
        );
        let q = json!({"metricName": "cpu", "labelBindings": ["job=\"x\""], "groupByFields": ["a", "b"]});
        assert_eq!(
            build(
                json!({}),
                q,
                &scope(&[("resourceType", "gce_instance"), ("project", "p1")])
            )
            .unwrap(),
            "avg(cpu{job=\"x\",instance=~\"myapp-v010-.{4}\",zone=~\".+/projects/p1/zones/us-east1-.{1}\"}) by (a,b)"
        );
        let q = json!({"metricName": "cpu", "resourceType": "aws_ec2_instance"});
        assert_eq!(
            build(json!({}), q, &scope(&[])).unwrap(),
            "avg(cpu{asg_groupName=\"myapp-v010\",zone=~\"us-east1.{1}\"})"
        );
    }

    #[test]
    fn templates_are_prepended_to_label_bindings() {
        let config =
            json!({"templates": {"by-pod": "namespace=\"${location}\",pod=~\"${scope}-.*\""}});
        let q = json!({"metricName": "http_request_duration_seconds", "customFilterTemplate": "by-pod",
            "labelBindings": ["quantile=\"0.99\""], "groupByFields": []});
        assert_eq!(
            build(config, q, &scope(&[])).unwrap(),
            "avg(http_request_duration_seconds{namespace=\"us-east1\",pod=~\"myapp-v010-.*\",quantile=\"0.99\"})"
        );
        // The inline template wins over the named one, and extended params bind too.
        let config = json!({"templates": {"t": "unused=\"1\""}});
        let q = json!({"metricName": "m", "customFilterTemplate": "t",
            "customInlineTemplate": "ns=\"$\\{namespace}\",sg=\"${scope}\""});
        assert_eq!(
            build(config, q, &scope(&[("namespace", "prod")])).unwrap(),
            "avg(m{ns=\"prod\",sg=\"myapp-v010\"})"
        );
    }

    #[test]
    fn promql_templates_are_the_whole_query() {
        let q = json!({"customInlineTemplate":
            "PromQL:sum(rate(demo_requests_total{server_group=\"${scope}\",status=~\"5..\"}[1m]))"});
        let config: CanaryConfig = serde_json::from_value(json!({})).unwrap();
        let built = build_query(&config, &metric(q), &scope(&[]), "instance").unwrap();
        assert_eq!(
            built.query,
            "sum(rate(demo_requests_total{server_group=\"myapp-v010\",status=~\"5..\"}[1m]))"
        );
        assert_eq!(built.metric_name, None);
    }

    #[test]
    fn what_kayenta_refuses_is_refused_with_a_reason() {
        let e = message(build(json!({}), json!({"metricName": "m"}), &scope(&[])).unwrap_err());
        assert!(
            e.contains("Either a resource type or a custom filter is required"),
            "{e}"
        );
        let e = message(
            build(
                json!({}),
                json!({"metricName": "m", "customFilterTemplate": "nope"}),
                &scope(&[]),
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("Custom filter template 'nope' was not found"),
            "{e}"
        );
        let e = message(
            build(
                json!({}),
                json!({"metricName": "m", "customInlineTemplate": "ns=\"${namespace}\""}),
                &scope(&[]),
            )
            .unwrap_err(),
        );
        assert!(e.contains("${namespace} is not defined"), "{e}");
        let e = message(
            build(
                json!({}),
                json!({"customInlineTemplate": "a=\"b\""}),
                &scope(&[]),
            )
            .unwrap_err(),
        );
        assert!(e.contains("metricName is required"), "{e}");
        let e = message(
            build(
                json!({}),
                json!({"type": "builtin", "metricName": "m"}),
                &scope(&[]),
            )
            .unwrap_err(),
        );
        assert!(e.contains("query.type is \"builtin\""), "{e}");
        let e = message(
            build(
                json!({}),
                json!({"metricName": "m", "customFilter": "x"}),
                &scope(&[]),
            )
            .unwrap_err(),
        );
        assert!(e.contains("customFilter is no longer supported"), "{e}");
        // An empty location is unset, as Kayenta's null.
        let mut s = scope(&[]);
        s.location.clear();
        let e = message(
            build(
                json!({}),
                json!({"metricName": "m", "customInlineTemplate": "z=\"${location}\""}),
                &s,
            )
            .unwrap_err(),
        );
        assert!(e.contains("${location} is not defined"), "{e}");
    }

    #[test]
    fn matrices_convert_like_kayenta() {
        let data: PromData = serde_json::from_value(json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "values": [[1700000000, "1"], [1700000060, "NaN"], [1700000180, "+Inf"]]},
            {"metric": {"job": "b"}, "values": [[1700000000.5, "-Inf"]]}
        ]}))
        .unwrap();
        let sets = convert(data, "q", &scope(&[])).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            sets[0].tags,
            BTreeMap::from([("job".to_owned(), "a".to_owned())])
        );
        assert_eq!(
            sets[0].values.len(),
            3,
            "the gap at 1700000120 is not filled"
        );
        assert!(sets[0].values[1].is_nan() && sets[0].values[2] == f64::INFINITY);
        assert_eq!(sets[0].step_seconds, 60);
        assert_eq!(sets[1].values, [f64::NEG_INFINITY]);
        assert_eq!(sets[1].start.as_millisecond(), 1_700_000_000_500);
        let empty: PromData =
            serde_json::from_value(json!({"resultType": "matrix", "result": []})).unwrap();
        let sets = convert(empty, "q", &scope(&[])).unwrap();
        assert_eq!(sets.len(), 1);
        assert!(sets[0].values.is_empty() && sets[0].tags.is_empty());
        let scalar: PromData =
            serde_json::from_value(json!({"resultType": "scalar", "result": [1700000000, "1"]}))
                .unwrap();
        assert!(
            convert(scalar, "q", &scope(&[]))
                .unwrap_err()
                .contains("not a matrix")
        );
    }
}
