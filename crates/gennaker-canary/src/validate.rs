//! Validation of canary config documents before they are stored: every problem at once,
//! each with its JSON path (`$.metrics[2].analysisConfigurations.canary.direction`), in
//! the vocabulary pipeline validation uses ([`gennaker_core::Problem`]).
//!
//! Errors are what the judge or a metric source cannot work with: a missing name or
//! application, no metrics, duplicate metric names (results find their metric by
//! name), a query without a type Gennaker knows, a template that does not exist, a
//! setting of the wrong type (Kayenta aborts the whole judgement on those), impossible
//! effect sizes or outlier factors. Warnings are what Kayenta accepts but probably is
//! not meant: a value it silently reads as its default (`direction: "up"` is `either`),
//! a metric in no group, group weights that leave groups without weight or do not add
//! up to 100 — Kayenta enforces none of the weight rules (it uses the weights as they
//! are and shares what is left among groups without one), so neither does Gennaker,
//! but it says what the score will do.

use std::collections::{BTreeMap, BTreeSet};

use gennaker_core::{
    JsonPath, Problem, ValidationReport, display_name_problem, type_name, validate_application_name,
};
use serde_json::{Map, Value};

use crate::config::{CanaryConfig, lenient_bool, lenient_f64};

/// The longest config name accepted.
pub const MAX_CONFIG_NAME_LEN: usize = 256;
/// The longest metric name accepted.
pub const MAX_METRIC_NAME_LEN: usize = 256;
/// The most metrics a config may have: each is one query per side per judgement.
pub const MAX_METRICS: usize = 500;
/// The most templates a config may have.
pub const MAX_TEMPLATES: usize = 500;

/// The query types Gennaker has metric sources for.
pub const QUERY_TYPES: &[&str] = &["builtin", "prometheus"];

/// Kayenta's other query types: accepted (imports never fail for them), but no
/// Gennaker source can run them yet.
const KAYENTA_ONLY_QUERY_TYPES: &[&str] = &[
    "atlas",
    "datadog",
    "graphite",
    "influxdb",
    "newrelic",
    "signalfx",
    "stackdriver",
    "wavefront",
];

/// The judge Kayenta (and Gennaker) implements.
const JUDGE_NAME: &str = "NetflixACAJudge-v1.0";

/// Characters refused in config names, as in pipeline names: they break URLs.
const FORBIDDEN_NAME_CHARS: &[char] = &['/', '\\', '?', '%', '#'];

/// Validates a canary config document (Kayenta's JSON).
pub fn validate_config(document: &Value) -> ValidationReport {
    let mut report = ValidationReport::default();
    let root = JsonPath::root();
    let Value::Object(map) = document else {
        report.push(Problem::error(
            &root,
            format!(
                "a canary config must be a JSON object with name, applications and metrics, not {}",
                type_name(document)
            ),
        ));
        return report;
    };
    check_name(map, &root, &mut report);
    check_applications(map, &root, &mut report);
    let templates = check_templates(map, &root, &mut report);
    let weights = check_weights(map, &root, &mut report);
    let groups = check_metrics(map, &root, &templates, &mut report);
    if let (Some(weights), Some(groups)) = (weights, groups) {
        check_group_weights(&weights, &groups, &root, &mut report);
    }
    check_judge(map, &root, &mut report);
    // Everything the checks above passed must load as the judge reads it; a type they
    // do not look at (e.g. `scopeName: 3`) is caught here.
    if report.is_valid()
        && let Err(err) = serde_json::from_value::<CanaryConfig>(document.clone())
    {
        report.push(Problem::error(
            &root,
            format!("the document is not a canary config Gennaker can read: {err}"),
        ));
    }
    report
}

fn check_name(map: &Map<String, Value>, root: &JsonPath, report: &mut ValidationReport) {
    let path = root.key("name");
    match map.get("name") {
        None | Some(Value::Null) => report.push(
            Problem::error(&path, "the canary config needs a 'name'").with_hint(
                "stages refer to a config by its id or its name, e.g. \"checkout-latency\"",
            ),
        ),
        Some(Value::String(name)) if name.trim().is_empty() => {
            report.push(Problem::error(&path, "the canary config name is empty"));
        }
        Some(Value::String(name)) => {
            if let Some(problem) =
                display_name_problem("canary config name", name, MAX_CONFIG_NAME_LEN)
            {
                report.push(Problem::error(&path, problem));
            }
            if let Some(bad) = name.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c)) {
                report.push(Problem::error(
                    &path,
                    format!("the canary config name contains '{bad}'; names may not contain / \\ ? % or #"),
                ));
            }
        }
        Some(other) => report.push(Problem::error(
            &path,
            format!("'name' must be a string, not {}", type_name(other)),
        )),
    }
}

fn check_applications(map: &Map<String, Value>, root: &JsonPath, report: &mut ValidationReport) {
    let path = root.key("applications");
    let hint = "a config belongs to the applications it lists: their READ roles may read it, and changing it needs WRITE on all of them";
    let apps = match map.get("applications") {
        None | Some(Value::Null) => {
            report.push(
                Problem::error(
                    &path,
                    "the canary config needs 'applications', at least one",
                )
                .with_hint(hint),
            );
            return;
        }
        Some(Value::Array(apps)) => apps,
        Some(other) => {
            report.push(Problem::error(
                &path,
                format!(
                    "'applications' must be an array of application names, not {}",
                    type_name(other)
                ),
            ));
            return;
        }
    };
    if apps.is_empty() {
        report.push(
            Problem::error(
                &path,
                "'applications' is empty; name at least one application",
            )
            .with_hint(hint),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, app) in apps.iter().enumerate() {
        let at = path.index(i);
        match app {
            Value::String(name) => {
                validate_application_name(name, &at, report);
                if !seen.insert(name.to_lowercase()) {
                    report.push(Problem::warning(
                        &at,
                        format!("application '{name}' is listed twice"),
                    ));
                }
            }
            other => report.push(Problem::error(
                &at,
                format!(
                    "an application must be a name (a string), not {}",
                    type_name(other)
                ),
            )),
        }
    }
}

/// The template names, when `templates` is an object of strings.
fn check_templates(
    map: &Map<String, Value>,
    root: &JsonPath,
    report: &mut ValidationReport,
) -> BTreeSet<String> {
    let path = root.key("templates");
    let mut names = BTreeSet::new();
    match map.get("templates") {
        None | Some(Value::Null) => {}
        Some(Value::Object(templates)) => {
            if templates.len() > MAX_TEMPLATES {
                report.push(Problem::error(
                    &path,
                    format!(
                        "the config has {} templates; at most {MAX_TEMPLATES} are allowed",
                        templates.len()
                    ),
                ));
            }
            for (name, template) in templates {
                if !template.is_string() {
                    report.push(Problem::error(
                        path.key(name),
                        format!(
                            "template '{name}' must be a string, not {}",
                            type_name(template)
                        ),
                    ));
                }
                names.insert(name.clone());
            }
        }
        Some(other) => report.push(Problem::error(
            &path,
            format!(
                "'templates' must be an object of named filter templates, not {}",
                type_name(other)
            ),
        )),
    }
    names
}

/// The group weights, when they can be read.
fn check_weights(
    map: &Map<String, Value>,
    root: &JsonPath,
    report: &mut ValidationReport,
) -> Option<BTreeMap<String, f64>> {
    let classifier_path = root.key("classifier");
    let classifier = match map.get("classifier") {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Object(classifier)) => classifier,
        Some(other) => {
            report.push(Problem::error(
                &classifier_path,
                format!(
                    "'classifier' must be an object with 'groupWeights', not {}",
                    type_name(other)
                ),
            ));
            return None;
        }
    };
    let path = classifier_path.key("groupWeights");
    let weights = match classifier.get("groupWeights") {
        None | Some(Value::Null) => return Some(BTreeMap::new()),
        Some(Value::Object(weights)) => weights,
        Some(other) => {
            report.push(Problem::error(
                &path,
                format!(
                    "'groupWeights' must map group names to numbers, not {}",
                    type_name(other)
                ),
            ));
            return None;
        }
    };
    let mut read = BTreeMap::new();
    let mut ok = true;
    for (group, weight) in weights {
        match lenient_f64(weight) {
            Some(w) if w.is_finite() && w >= 0.0 => {
                read.insert(group.clone(), w);
            }
            _ => {
                ok = false;
                report.push(Problem::error(
                    path.key(group),
                    format!(
                        "the weight of group '{group}' must be a number from 0 to 100, not {weight}"
                    ),
                ));
            }
        }
    }
    ok.then_some(read)
}

/// Checks every metric; returns the groups they use (with the path of the first use),
/// when `metrics` could be read.
fn check_metrics(
    map: &Map<String, Value>,
    root: &JsonPath,
    templates: &BTreeSet<String>,
    report: &mut ValidationReport,
) -> Option<BTreeMap<String, JsonPath>> {
    let path = root.key("metrics");
    let metrics = match map.get("metrics") {
        None | Some(Value::Null) => {
            report.push(Problem::error(
                &path,
                "the canary config needs 'metrics', at least one",
            ));
            return None;
        }
        Some(Value::Array(metrics)) => metrics,
        Some(other) => {
            report.push(Problem::error(
                &path,
                format!("'metrics' must be an array, not {}", type_name(other)),
            ));
            return None;
        }
    };
    if metrics.is_empty() {
        report.push(
            Problem::error(&path, "'metrics' is empty; a canary config compares at least one metric")
                .with_hint("add e.g. {\"name\": \"errors\", \"query\": {\"type\": \"builtin\", \"metricName\": \"error_rate\"}, \"groups\": [\"errors\"]}"),
        );
    }
    if metrics.len() > MAX_METRICS {
        report.push(Problem::error(
            &path,
            format!(
                "the config has {} metrics; at most {MAX_METRICS} are allowed",
                metrics.len()
            ),
        ));
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (i, metric) in metrics.iter().enumerate() {
        let at = path.index(i);
        let Value::Object(metric) = metric else {
            report.push(Problem::error(
                &at,
                format!("a metric must be an object, not {}", type_name(metric)),
            ));
            continue;
        };
        if let Some(name) = check_metric_name(metric, &at, report) {
            let first = *names.entry(name).or_insert(i);
            if first != i {
                report.push(
                    Problem::error(
                        at.key("name"),
                        format!("metric name '{name}' is used by metrics[{first}] too"),
                    )
                    .with_hint("results find their metric by name: give each metric its own"),
                );
            }
        }
        check_query(metric, &at, templates, report);
        check_metric_groups(metric, &at, &mut groups, report);
        check_scope_name(metric, &at, report);
        check_analysis(metric, &at, report);
    }
    Some(groups)
}

fn check_metric_name<'a>(
    metric: &'a Map<String, Value>,
    at: &JsonPath,
    report: &mut ValidationReport,
) -> Option<&'a str> {
    let path = at.key("name");
    match metric.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {
            if let Some(problem) = display_name_problem("metric name", name, MAX_METRIC_NAME_LEN) {
                report.push(Problem::error(&path, problem));
            }
            Some(name)
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            report.push(Problem::error(&path, "the metric needs a 'name'"));
            None
        }
        Some(other) => {
            report.push(Problem::error(
                &path,
                format!("'name' must be a string, not {}", type_name(other)),
            ));
            None
        }
    }
}

fn check_query(
    metric: &Map<String, Value>,
    at: &JsonPath,
    templates: &BTreeSet<String>,
    report: &mut ValidationReport,
) {
    let path = at.key("query");
    let query = match metric.get("query") {
        Some(Value::Object(query)) => query,
        None | Some(Value::Null) => {
            report.push(
                Problem::error(&path, "the metric needs a 'query'").with_hint(
                    "e.g. {\"type\": \"prometheus\", \"metricName\": \"http_requests_total\"}",
                ),
            );
            return;
        }
        Some(other) => {
            report.push(Problem::error(
                &path,
                format!("'query' must be an object, not {}", type_name(other)),
            ));
            return;
        }
    };
    let known = QUERY_TYPES.join(", ");
    let kind = match query.get("type") {
        Some(Value::String(kind)) if QUERY_TYPES.contains(&kind.as_str()) => Some(kind.as_str()),
        Some(Value::String(kind)) if KAYENTA_ONLY_QUERY_TYPES.contains(&kind.as_str()) => {
            report.push(
                Problem::warning(
                    path.key("type"),
                    format!("query type '{kind}' is Kayenta's, but Gennaker has no {kind} metric source; a canary run fails on this metric"),
                )
                .with_hint(format!("Gennaker's sources: {known}")),
            );
            None
        }
        Some(Value::String(kind)) => {
            report.push(Problem::error(
                path.key("type"),
                format!("unknown query type '{kind}'; use one of: {known}"),
            ));
            None
        }
        None | Some(Value::Null) => {
            report.push(Problem::error(
                path.key("type"),
                format!("the query needs a 'type': one of {known}"),
            ));
            None
        }
        Some(other) => {
            report.push(Problem::error(
                path.key("type"),
                format!(
                    "'type' must be a string ({known}), not {}",
                    type_name(other)
                ),
            ));
            None
        }
    };
    if let (Some(kind), Some(Value::String(service))) = (kind, query.get("serviceType"))
        && service != kind
    {
        report.push(Problem::warning(
            path.key("serviceType"),
            format!("'serviceType' is '{service}' but 'type' is '{kind}'; Kayenta expects the same string in both, Gennaker reads 'type'"),
        ));
    }
    for key in ["metricName", "customInlineTemplate", "customFilterTemplate"] {
        if let Some(value) = query.get(key).filter(|v| !v.is_null() && !v.is_string()) {
            report.push(Problem::error(
                path.key(key),
                format!("'{key}' must be a string, not {}", type_name(value)),
            ));
        }
    }
    let text = |key: &str| {
        query
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let inline = text("customInlineTemplate");
    if let Some(template) = text("customFilterTemplate") {
        if inline.is_some() {
            report.push(Problem::warning(
                path.key("customFilterTemplate"),
                "both 'customInlineTemplate' and 'customFilterTemplate' are set; the inline template wins and this one is ignored",
            ));
        } else if !templates.contains(template) {
            let available = if templates.is_empty() {
                "the config has no 'templates'".to_owned()
            } else {
                format!(
                    "its templates: {}",
                    templates
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            report.push(Problem::error(
                path.key("customFilterTemplate"),
                format!("template '{template}' does not exist; {available}"),
            ));
        }
    }
    let promql = inline.is_some_and(|t| t.trim_start().starts_with("PromQL:"));
    if kind == Some("prometheus") && !promql && text("metricName").is_none() {
        report.push(
            Problem::error(
                path.key("metricName"),
                "a prometheus query needs a 'metricName'",
            )
            .with_hint("or write the whole query as customInlineTemplate \"PromQL:<expression>\""),
        );
    }
    if kind == Some("builtin") && text("metricName").is_none() {
        report.push(Problem::error(
            path.key("metricName"),
            "a builtin query needs a 'metricName': one of the load balancer's series for a server group",
        ));
    }
}

fn check_metric_groups(
    metric: &Map<String, Value>,
    at: &JsonPath,
    groups: &mut BTreeMap<String, JsonPath>,
    report: &mut ValidationReport,
) {
    let path = at.key("groups");
    match metric.get("groups") {
        Some(Value::Array(list)) if !list.is_empty() => {
            for (i, group) in list.iter().enumerate() {
                match group {
                    Value::String(group) if !group.trim().is_empty() => {
                        groups.entry(group.clone()).or_insert_with(|| path.index(i));
                    }
                    Value::String(_) => report.push(Problem::error(path.index(i), "a group name is empty")),
                    other => report.push(Problem::error(
                        path.index(i),
                        format!("a group must be a name (a string), not {}", type_name(other)),
                    )),
                }
            }
        }
        Some(Value::Array(_)) | None | Some(Value::Null) => report.push(
            Problem::warning(&path, "the metric is in no group, so it never counts in the score (only a critical failure or missing data affects the canary)")
                .with_hint("add a group, e.g. \"groups\": [\"latency\"], and give it a weight in classifier.groupWeights"),
        ),
        Some(other) => report.push(Problem::error(
            &path,
            format!("'groups' must be an array of group names, not {}", type_name(other)),
        )),
    }
}

fn check_scope_name(metric: &Map<String, Value>, at: &JsonPath, report: &mut ValidationReport) {
    match metric.get("scopeName") {
        None | Some(Value::Null) => {}
        Some(Value::String(scope)) if !scope.trim().is_empty() => {}
        Some(Value::String(_)) => report.push(Problem::error(
            at.key("scopeName"),
            "'scopeName' is empty; leave it out for the scope \"default\"",
        )),
        Some(other) => report.push(Problem::error(
            at.key("scopeName"),
            format!("'scopeName' must be a string, not {}", type_name(other)),
        )),
    }
}

/// An object member that must be an object when present; reports otherwise.
fn object_at<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &JsonPath,
    report: &mut ValidationReport,
) -> Option<&'a Map<String, Value>> {
    match map.get(key) {
        Some(Value::Object(inner)) => Some(inner),
        None | Some(Value::Null) => None,
        Some(other) => {
            report.push(Problem::error(
                path.key(key),
                format!("'{key}' must be an object, not {}", type_name(other)),
            ));
            None
        }
    }
}

/// A string setting Kayenta compares against fixed words, reading anything else as its
/// default: a warning, since the document says something the judge will not do.
fn check_word(
    map: &Map<String, Value>,
    key: &str,
    words: &[&str],
    default: &str,
    path: &JsonPath,
    report: &mut ValidationReport,
) {
    match map.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(word)) if words.contains(&word.as_str()) => {}
        Some(Value::String(word)) => report.push(Problem::warning(
            path.key(key),
            format!(
                "'{key}' is '{word}', which the judge reads as '{default}'; use one of: {}",
                words.join(", ")
            ),
        )),
        Some(other) => report.push(Problem::error(
            path.key(key),
            format!(
                "'{key}' must be one of {}, not {}",
                words.join(", "),
                type_name(other)
            ),
        )),
    }
}

fn check_analysis(metric: &Map<String, Value>, at: &JsonPath, report: &mut ValidationReport) {
    let Some(configurations) = object_at(metric, "analysisConfigurations", at, report) else {
        return;
    };
    let configurations_path = at.key("analysisConfigurations");
    let Some(canary) = object_at(configurations, "canary", &configurations_path, report) else {
        return;
    };
    let path = configurations_path.key("canary");
    check_word(
        canary,
        "direction",
        &["increase", "decrease", "either"],
        "either",
        &path,
        report,
    );
    check_word(
        canary,
        "nanStrategy",
        &["remove", "replace", "none"],
        "remove",
        &path,
        report,
    );
    for key in ["critical", "mustHaveData", "muted"] {
        if let Some(value) = canary.get(key).filter(|v| !v.is_null())
            && lenient_bool(value).is_none()
        {
            report.push(Problem::error(
                path.key(key),
                format!("'{key}' must be true or false, not {value}; Kayenta aborts the whole judgement on it"),
            ));
        }
    }
    if let Some(outliers) = object_at(canary, "outliers", &path, report) {
        let outliers_path = path.key("outliers");
        check_word(
            outliers,
            "strategy",
            &["keep", "remove"],
            "keep",
            &outliers_path,
            report,
        );
        if let Some(factor) = outliers.get("outlierFactor").filter(|v| !v.is_null()) {
            match lenient_f64(factor) {
                Some(f) if f.is_finite() && f > 0.0 => {}
                _ => report.push(Problem::error(
                    outliers_path.key("outlierFactor"),
                    format!("'outlierFactor' must be a number above 0 (Kayenta's default is 3.0), not {factor}"),
                )),
            }
        }
    }
    if let Some(effect) = object_at(canary, "effectSize", &path, report) {
        check_effect_size(effect, &path.key("effectSize"), report);
    }
}

fn check_effect_size(effect: &Map<String, Value>, path: &JsonPath, report: &mut ValidationReport) {
    check_word(
        effect,
        "measure",
        &["meanRatio", "cles"],
        "meanRatio",
        path,
        report,
    );
    let cles = effect.get("measure").and_then(Value::as_str) == Some("cles");
    let mut gates = BTreeMap::new();
    for key in [
        "allowedIncrease",
        "allowedDecrease",
        "criticalIncrease",
        "criticalDecrease",
    ] {
        let Some(value) = effect.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let at = path.key(key);
        match lenient_f64(value) {
            Some(gate) if !gate.is_finite() || gate < 0.0 => report.push(Problem::error(
                &at,
                format!("'{key}' must be a finite number of at least 0, not {value}"),
            )),
            Some(gate) if cles && gate > 1.0 => report.push(Problem::error(
                &at,
                format!("'{key}' is {gate}, but a CLES effect size is a probability from 0 to 1 (its neutral value is 0.5)"),
            )),
            Some(gate) => {
                gates.insert(key, gate);
            }
            None => report.push(Problem::error(
                &at,
                format!("'{key}' must be a number, not {value}; Kayenta aborts the whole judgement on it"),
            )),
        }
    }
    // With the mean ratio, 1.0 means "no change": an increase gate below it (or a
    // decrease gate above it) lets any significant change fail, which is the default.
    if !cles {
        for key in ["allowedIncrease", "criticalIncrease"] {
            if let Some(gate) = gates.get(key).filter(|g| **g < 1.0) {
                report.push(Problem::warning(
                    path.key(key),
                    format!("'{key}' is {gate}, below 1.0 (no change): it gates nothing; use e.g. 1.1 to tolerate a 10% increase"),
                ));
            }
        }
        for key in ["allowedDecrease", "criticalDecrease"] {
            if let Some(gate) = gates.get(key).filter(|g| **g > 1.0) {
                report.push(Problem::warning(
                    path.key(key),
                    format!("'{key}' is {gate}, above 1.0 (no change): it gates nothing; use e.g. 0.9 to tolerate a 10% decrease"),
                ));
            }
        }
    }
}

/// Kayenta's scorer: a group's weight counts as configured; groups without one share
/// what is left of 100; weights of groups no metric uses are lost; nothing is
/// normalised. None of it is refused, so these are warnings that say what the score
/// will do.
fn check_group_weights(
    weights: &BTreeMap<String, f64>,
    groups: &BTreeMap<String, JsonPath>,
    root: &JsonPath,
    report: &mut ValidationReport,
) {
    let path = root.key("classifier").key("groupWeights");
    let configured: f64 = weights.values().sum();
    let unweighted: Vec<&String> = groups
        .keys()
        .filter(|g| !weights.contains_key(*g))
        .collect();
    if !unweighted.is_empty() {
        let share = (100.0 - configured) / unweighted.len() as f64;
        let names = unweighted
            .iter()
            .map(|g| format!("'{g}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let effect = if share > 0.0 {
            format!("they share what is left of 100 ({share} each)")
        } else {
            "the other weights already reach 100, so they count for nothing".to_owned()
        };
        report.push(
            Problem::warning(&path, format!("group(s) {names} have no weight; {effect}"))
                .with_hint("give every group a weight, the weights adding up to 100"),
        );
    } else if !groups.is_empty() && (configured - 100.0).abs() > 1e-9 {
        report.push(Problem::warning(
            &path,
            format!("the group weights add up to {configured}, not 100; Kayenta uses them as they are, so a perfect canary scores {configured}"),
        ));
    }
    for group in weights.keys().filter(|g| !groups.contains_key(*g)) {
        report.push(Problem::warning(
            path.key(group),
            format!(
                "no metric is in group '{group}'; its weight is lost, so no canary can score 100"
            ),
        ));
    }
}

fn check_judge(map: &Map<String, Value>, root: &JsonPath, report: &mut ValidationReport) {
    let Some(judge) = object_at(map, "judge", root, report) else {
        return;
    };
    match judge.get("name") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) if name == JUDGE_NAME => {}
        Some(name) => report.push(Problem::warning(
            root.key("judge").key("name"),
            format!("judge {name} is not one Gennaker has; it judges with {JUDGE_NAME}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use gennaker_core::Severity;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "name": "checkout-canary",
            "applications": ["checkout"],
            "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
            "metrics": [
                {"name": "errors", "groups": ["errors"],
                 "query": {"type": "builtin", "metricName": "error_rate"},
                 "analysisConfigurations": {"canary": {"direction": "increase", "critical": true}}},
                {"name": "p99", "groups": ["latency"],
                 "query": {"type": "prometheus", "metricName": "http_seconds", "customFilterTemplate": "by-pod"},
                 "analysisConfigurations": {"canary": {"direction": "increase", "nanStrategy": "replace",
                    "effectSize": {"allowedIncrease": "1.1"}, "outliers": {"strategy": "remove", "outlierFactor": 2}}}}
            ],
            "templates": {"by-pod": "pod=~\"${scope}-.*\""},
            "classifier": {"groupWeights": {"errors": 60, "latency": "40"}}
        })
    }

    fn problems(doc: &Value) -> Vec<(Severity, String, String)> {
        validate_config(doc)
            .problems
            .into_iter()
            .map(|p| (p.severity, p.path, p.message))
            .collect()
    }

    fn has(doc: &Value, severity: Severity, path: &str, needle: &str) {
        let found = problems(doc);
        assert!(
            found
                .iter()
                .any(|(s, p, m)| *s == severity && p == path && m.contains(needle)),
            "no {severity} at {path} containing {needle:?} in {found:#?}"
        );
    }

    #[test]
    fn a_good_config_has_no_problem() {
        assert_eq!(problems(&valid()), vec![]);
    }

    #[test]
    fn identity_is_required_and_bounded() {
        has(&json!([]), Severity::Error, "$", "must be a JSON object");
        let mut doc = valid();
        doc.as_object_mut().unwrap().remove("name");
        has(&doc, Severity::Error, "$.name", "needs a 'name'");
        doc["name"] = json!("a/b");
        has(&doc, Severity::Error, "$.name", "contains '/'");
        doc["name"] = json!("x".repeat(MAX_CONFIG_NAME_LEN + 1));
        has(&doc, Severity::Error, "$.name", "at most 256");
        let mut doc = valid();
        doc["applications"] = json!([]);
        has(&doc, Severity::Error, "$.applications", "is empty");
        doc["applications"] = json!(["ok", 3, "bad app", "OK"]);
        has(&doc, Severity::Error, "$.applications[1]", "not a number");
        has(&doc, Severity::Error, "$.applications[2]", "");
        has(&doc, Severity::Warning, "$.applications[3]", "listed twice");
        doc.as_object_mut().unwrap().remove("applications");
        has(&doc, Severity::Error, "$.applications", "at least one");
    }

    #[test]
    fn metrics_are_required_unique_and_typed() {
        let mut doc = valid();
        doc["metrics"] = json!([]);
        has(&doc, Severity::Error, "$.metrics", "is empty");
        let mut doc = valid();
        doc["metrics"][1]["name"] = json!("errors");
        has(
            &doc,
            Severity::Error,
            "$.metrics[1].name",
            "used by metrics[0] too",
        );
        let mut doc = valid();
        doc["metrics"][0]["query"]["type"] = json!("graphiteish");
        has(
            &doc,
            Severity::Error,
            "$.metrics[0].query.type",
            "use one of: builtin, prometheus",
        );
        doc["metrics"][0]["query"]["type"] = json!("datadog");
        has(
            &doc,
            Severity::Warning,
            "$.metrics[0].query.type",
            "no datadog metric source",
        );
        doc["metrics"][0].as_object_mut().unwrap().remove("query");
        has(
            &doc,
            Severity::Error,
            "$.metrics[0].query",
            "needs a 'query'",
        );
        let mut doc = valid();
        doc["metrics"][1]["query"]
            .as_object_mut()
            .unwrap()
            .remove("metricName");
        has(
            &doc,
            Severity::Error,
            "$.metrics[1].query.metricName",
            "needs a 'metricName'",
        );
        // PromQL mode needs none.
        doc["metrics"][1]["query"]["customInlineTemplate"] = json!("PromQL:sum(rate(x[1m]))");
        has(
            &doc,
            Severity::Warning,
            "$.metrics[1].query.customFilterTemplate",
            "inline template wins",
        );
        assert!(validate_config(&doc).is_valid());
    }

    #[test]
    fn templates_must_exist() {
        let mut doc = valid();
        doc["metrics"][1]["query"]["customFilterTemplate"] = json!("by-node");
        has(
            &doc,
            Severity::Error,
            "$.metrics[1].query.customFilterTemplate",
            "template 'by-node' does not exist; its templates: by-pod",
        );
        doc.as_object_mut().unwrap().remove("templates");
        has(
            &doc,
            Severity::Error,
            "$.metrics[1].query.customFilterTemplate",
            "has no 'templates'",
        );
    }

    #[test]
    fn analysis_settings_are_checked_with_paths() {
        let mut doc = valid();
        let canary = &mut doc["metrics"][1]["analysisConfigurations"]["canary"];
        canary["direction"] = json!("up");
        canary["nanStrategy"] = json!("Replace");
        canary["critical"] = json!("yes");
        canary["effectSize"] = json!({"allowedIncrease": "lots", "criticalIncrease": -1, "allowedDecrease": 1.2, "measure": "median"});
        canary["outliers"] = json!({"strategy": "drop", "outlierFactor": 0});
        let base = "$.metrics[1].analysisConfigurations.canary";
        has(
            &doc,
            Severity::Warning,
            &format!("{base}.direction"),
            "reads as 'either'",
        );
        has(
            &doc,
            Severity::Warning,
            &format!("{base}.nanStrategy"),
            "reads as 'remove'",
        );
        has(
            &doc,
            Severity::Error,
            &format!("{base}.critical"),
            "true or false",
        );
        has(
            &doc,
            Severity::Error,
            &format!("{base}.effectSize.allowedIncrease"),
            "must be a number",
        );
        has(
            &doc,
            Severity::Error,
            &format!("{base}.effectSize.criticalIncrease"),
            "at least 0",
        );
        has(
            &doc,
            Severity::Warning,
            &format!("{base}.effectSize.allowedDecrease"),
            "gates nothing",
        );
        has(
            &doc,
            Severity::Warning,
            &format!("{base}.effectSize.measure"),
            "reads as 'meanRatio'",
        );
        has(
            &doc,
            Severity::Warning,
            &format!("{base}.outliers.strategy"),
            "reads as 'keep'",
        );
        has(
            &doc,
            Severity::Error,
            &format!("{base}.outliers.outlierFactor"),
            "above 0",
        );
        let mut doc = valid();
        doc["metrics"][0]["analysisConfigurations"]["canary"]["effectSize"] =
            json!({"measure": "cles", "allowedIncrease": 1.5});
        has(
            &doc,
            Severity::Error,
            "$.metrics[0].analysisConfigurations.canary.effectSize.allowedIncrease",
            "probability",
        );
    }

    #[test]
    fn every_error_the_judge_would_abort_on_is_caught() {
        // What `settings()` refuses, validation refuses first, at the setting's path.
        let mut doc = valid();
        doc["metrics"][0]["analysisConfigurations"]["canary"]["mustHaveData"] = json!(2);
        has(
            &doc,
            Severity::Error,
            "$.metrics[0].analysisConfigurations.canary.mustHaveData",
            "true or false",
        );
        let config: CanaryConfig = serde_json::from_value(doc).unwrap();
        assert!(config.metrics[0].settings().is_err());
    }

    #[test]
    fn group_weights_follow_kayenta() {
        let mut doc = valid();
        doc["classifier"]["groupWeights"] = json!({"errors": 60});
        has(
            &doc,
            Severity::Warning,
            "$.classifier.groupWeights",
            "'latency' have no weight; they share what is left of 100 (40 each)",
        );
        doc["classifier"]["groupWeights"] = json!({"errors": 100});
        has(
            &doc,
            Severity::Warning,
            "$.classifier.groupWeights",
            "count for nothing",
        );
        doc["classifier"]["groupWeights"] = json!({"errors": 50, "latency": 30});
        has(
            &doc,
            Severity::Warning,
            "$.classifier.groupWeights",
            "add up to 80",
        );
        doc["classifier"]["groupWeights"] = json!({"errors": 50, "latency": 50, "spare": 0});
        has(
            &doc,
            Severity::Warning,
            "$.classifier.groupWeights.spare",
            "no metric is in group 'spare'",
        );
        doc["classifier"]["groupWeights"] = json!({"errors": "heavy", "latency": -5});
        has(
            &doc,
            Severity::Error,
            "$.classifier.groupWeights.errors",
            "from 0 to 100",
        );
        has(
            &doc,
            Severity::Error,
            "$.classifier.groupWeights.latency",
            "from 0 to 100",
        );
        let mut doc = valid();
        doc["metrics"][0]["groups"] = json!([]);
        has(
            &doc,
            Severity::Warning,
            "$.metrics[0].groups",
            "in no group",
        );
        // Only warnings: the config is still saved.
        assert!(validate_config(&doc).is_valid());
    }

    #[test]
    fn other_judges_and_unreadable_fields() {
        let mut doc = valid();
        doc["judge"]["name"] = json!("dredd-1.0");
        has(
            &doc,
            Severity::Warning,
            "$.judge.name",
            "NetflixACAJudge-v1.0",
        );
        let mut doc = valid();
        doc["metrics"][0]["scopeName"] = json!(3);
        has(
            &doc,
            Severity::Error,
            "$.metrics[0].scopeName",
            "must be a string",
        );
        let mut doc = valid();
        doc["templates"] = json!({"by-pod": 1});
        has(
            &doc,
            Severity::Error,
            "$.templates['by-pod']",
            "must be a string",
        );
    }
}
