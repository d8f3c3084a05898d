//! `gennaker expr eval`: evaluates a template against a JSON context, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use gennaker_cli::OutputFormat;
use gennaker_expr::{FunctionRegistry, Limits, evaluate_template};
use serde_json::Value;

/// Expression commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ExprCommand {
    /// Evaluate TEXT (e.g. "${ parameters.env == 'prod' ? 3 : 1 }") and print the result as JSON.
    Eval {
        /// A JSON file with the context (`trigger`, `parameters`, `execution`, …).
        #[arg(long)]
        context: Option<PathBuf>,
        /// The template text.
        text: String,
    },
}

/// Exit status when the expression is wrong (as opposed to unreadable input).
const EXPRESSION_FAILED: u8 = 2;

/// Runs an expression command; errors go to stderr with their position.
pub(crate) fn run(command: ExprCommand, output: Option<OutputFormat>) -> ExitCode {
    let ExprCommand::Eval { context, text } = command;
    let context = match context {
        None => Value::Object(Default::default()),
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                gennaker_core::parse_document(
                    &text,
                    gennaker_core::detect_format(&path.to_string_lossy(), &text),
                )
                .map_err(|e| e.to_string())
            }) {
            Ok(value) => value,
            Err(err) => {
                eprintln!("error: cannot read the context {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    match evaluate_template(
        &text,
        &context,
        &FunctionRegistry::default(),
        &Limits::default(),
    ) {
        Ok(value) => {
            let printed = match output {
                Some(OutputFormat::Yaml) => {
                    gennaker_core::to_yaml_string(&value).map_err(|e| e.to_string())
                }
                _ => serde_json::to_string_pretty(&value).map_err(|e| e.to_string()),
            };
            match printed {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: cannot print the result: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXPRESSION_FAILED)
        }
    }
}
