//! Whole-pipeline validation: the core's structural rules plus the templates' static check.

use gennaker_core::{Problem, Severity, StageCatalog, ValidationReport, validate_pipeline_value};
use serde_json::Value;

use crate::check::{KnownFunctions, TemplateProblem, check_templates};

/// Validates a pipeline config with the stage types of `catalog`: everything
/// [`validate_pipeline_value`] checks, plus every
/// `${…}` in it (syntax, sandbox, unknown functions) against the helpers a Spinnaker
/// pipeline may call.
///
/// Template problems are warnings, not errors: Spinnaker saves such pipelines and only
/// the stage that evaluates the expression fails (or keeps the raw text), so an import
/// must not be refused for them — but the user sees each one, with its path and column.
pub fn validate_pipeline(config: &Value, catalog: &StageCatalog) -> ValidationReport {
    let mut report = validate_pipeline_value(config, catalog);
    let known = KnownFunctions::spinnaker();
    report.problems.extend(
        check_templates(config, &known)
            .into_iter()
            .map(template_warning),
    );
    report
}

fn template_warning(problem: TemplateProblem) -> Problem {
    let place = if problem.in_key {
        "map key"
    } else {
        "expression"
    };
    let error = problem.error;
    Problem {
        severity: Severity::Warning,
        path: problem.path,
        message: format!(
            "{place} `{}` will fail when evaluated: {} (column {})",
            error.expression, error.message, error.column
        ),
        hint: error.hint,
    }
}

#[cfg(test)]
mod tests {
    use super::validate_pipeline;
    use gennaker_core::{Severity, StageCatalog};
    use serde_json::json;

    #[test]
    fn template_problems_are_warnings_with_paths() {
        let config = json!({
            "application": "app", "name": "p",
            "stages": [{"refId": "1", "type": "noop", "name": "${ #nope('x') }", "waitTime": "${ parameters.t + }"}]
        });
        let report = validate_pipeline(&config, &StageCatalog::spinnaker());
        assert!(report.is_valid(), "{report:?}");
        let paths: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
            .map(|p| p.path.as_str())
            .collect();
        assert!(paths.contains(&"$.stages[0].name"), "{paths:?}");
        assert!(paths.contains(&"$.stages[0].waitTime"), "{paths:?}");
    }
}
