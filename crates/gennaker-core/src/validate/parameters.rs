//! `parameterConfig[]`: unique names and consistent options.

use std::collections::HashMap;

use serde_json::Value;

use super::fields::Fields;
use crate::pipeline::scalar_text;
use crate::problems::{Problem, ValidationReport};

pub(super) fn check_parameters(pipeline: &Fields<'_>, report: &mut ValidationReport) {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    for (index, parameter) in pipeline.objects("parameterConfig", "a parameter", report) {
        for key in ["label", "description"] {
            parameter.string(key, report);
        }
        for key in ["required", "hasOptions", "pinned"] {
            parameter.boolean(key, report);
        }
        match parameter.required_string("name", "the parameter name", report) {
            Some(name) if name.trim().is_empty() => {
                report.push(Problem::error(
                    parameter.at("name"),
                    "the parameter name is blank",
                ));
            }
            Some(name) => {
                if let Some(first) = first_index.get(name) {
                    report.push(
                        Problem::error(
                            parameter.at("name"),
                            format!(
                                "parameter '{name}' is already defined at parameterConfig[{first}]"
                            ),
                        )
                        .with_hint("parameter names must be unique"),
                    );
                } else {
                    first_index.insert(name.to_owned(), index);
                }
            }
            None => {}
        }
        check_options(&parameter, report);
    }
}

fn check_options(parameter: &Fields<'_>, report: &mut ValidationReport) {
    let has_options = parameter.flag("hasOptions") == Some(true);
    let mut values = Vec::new();
    for (_, option) in parameter.objects("options", "an option", report) {
        match option.map.get("value") {
            Some(v) if scalar_text(v).is_some() => values.extend(scalar_text(v)),
            Some(Value::Null) | None => {
                report.push(Problem::error(
                    option.at("value"),
                    "the option has no value",
                ));
            }
            Some(_) => report.push(Problem::error(
                option.at("value"),
                "an option value must be a string or a number",
            )),
        }
    }
    if !has_options {
        return;
    }
    if values.is_empty() {
        report.push(
            Problem::warning(parameter.at("options"), "hasOptions is on but there are no options")
                .with_hint("add options like [{\"value\": \"staging\"}, {\"value\": \"prod\"}] or turn hasOptions off"),
        );
        return;
    }
    if let Some(default) = parameter.get("default").and_then(scalar_text)
        && !default.contains("${")
        && !values.contains(&default)
    {
        report.push(Problem::warning(
            parameter.at("default"),
            format!(
                "default '{default}' is not one of the options ({})",
                values.join(", ")
            ),
        ));
    }
}
