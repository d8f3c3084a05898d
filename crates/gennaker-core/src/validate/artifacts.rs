//! `expectedArtifacts[]`: ids present and unique, match and default artifacts well formed.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::fields::Fields;
use crate::artifacts::{MATCHED_FIELDS, compile_pattern};
use crate::problems::{Problem, ValidationReport};

/// Checks the pipeline's expected artifacts and returns every artifact id a stage or
/// trigger may refer to (the pipeline's and those stages declare they produce).
pub(super) fn check_expected_artifacts(
    pipeline: &Fields<'_>,
    report: &mut ValidationReport,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut first: HashMap<String, usize> = HashMap::new();
    for (index, artifact) in pipeline.objects("expectedArtifacts", "an expected artifact", report) {
        artifact.string("displayName", report);
        for key in [
            "useDefaultArtifact",
            "usePriorArtifact",
            "usePriorExecution",
        ] {
            artifact.boolean(key, report);
        }
        if let Some(id) = artifact.required_string("id", "the artifact id", report) {
            if let Some(at) = first.get(id) {
                report.push(Problem::error(
                    artifact.at("id"),
                    format!(
                        "expected artifact id '{id}' is already used by expectedArtifacts[{at}]"
                    ),
                ));
            } else {
                first.insert(id.to_owned(), index);
            }
            ids.insert(id.to_owned());
        }
        let matcher = artifact.object("matchArtifact", report);
        if let Some(matcher) = &matcher {
            check_patterns(matcher, report);
        }
        if matcher.is_none() && !artifact.has("matchArtifact") {
            report.push(
                Problem::warning(artifact.at("matchArtifact"), "the expected artifact has no matchArtifact, so no incoming artifact can match it")
                    .with_hint("e.g. {\"type\": \"docker/image\", \"name\": \"gcr.io/project/app\"}"),
            );
        }
        let default = artifact.object("defaultArtifact", report);
        if artifact.flag("useDefaultArtifact") == Some(true) {
            match default {
                Some(default) if default.has("type") => {}
                Some(default) => report.push(Problem::error(
                    default.at("type"),
                    "the default artifact has no type",
                )),
                None => report.push(Problem::error(
                    artifact.at("defaultArtifact"),
                    "useDefaultArtifact is on but there is no defaultArtifact",
                )),
            }
        }
    }
    // Stages may declare artifacts they produce, in `expectedArtifacts` or the older
    // singular `expectedArtifact`; those ids are valid references too.
    if let Some(Value::Array(stages)) = pipeline.get("stages") {
        for stage in stages {
            let produced = match stage.get("expectedArtifacts") {
                Some(Value::Array(list)) => list.iter().collect(),
                _ => Vec::new(),
            };
            let single = stage.get("expectedArtifact").filter(|a| a.is_object());
            ids.extend(
                produced
                    .into_iter()
                    .chain(single)
                    .filter_map(|a| a.get("id"))
                    .filter_map(Value::as_str)
                    .map(str::to_owned),
            );
        }
    }
    ids
}

/// Each `matchArtifact` field is matched as a regex over the whole value when the
/// execution starts: one that does not compile would fail every run, so it is refused.
fn check_patterns(matcher: &Fields<'_>, report: &mut ValidationReport) {
    for field in MATCHED_FIELDS {
        let Some(Value::String(pattern)) = matcher.get(field) else {
            continue;
        };
        if pattern.is_empty() || pattern.contains("${") {
            continue;
        }
        if let Err(err) = compile_pattern(pattern) {
            report.push(
                Problem::error(
                    matcher.at(field),
                    format!("'{pattern}' is not a valid regular expression: {err}"),
                )
                .with_hint("matchArtifact fields are regexes matched against the whole value: escape special characters (e.g. \\. for a dot)"),
            );
        }
    }
}
