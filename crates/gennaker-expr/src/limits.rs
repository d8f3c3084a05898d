//! Resource bounds for parsing and evaluation.

use serde::{Deserialize, Serialize};

/// Bounds that make every parse and evaluation finite and small.
///
/// Each bound, when exceeded, produces its own [`ErrorKind`](crate::ErrorKind) so a
/// user can tell "too deep" from "too long" from "too much work".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// Evaluation steps for one template: one per AST node visited, one per element of a
    /// selection or projection, plus a share for bulk work (copying values, scanning
    /// long strings) so that cheap-looking expressions cannot hide large costs.
    pub max_steps: u64,
    /// Nesting depth, for the parser and for the evaluator.
    pub max_depth: u32,
    /// Elements in any list or map an expression builds.
    pub max_collection_size: usize,
    /// Bytes in any string an expression builds, including the final template text.
    pub max_string_length: usize,
    /// Bytes in a template; Spinnaker's `expression.max-expression-length` default.
    pub max_expression_length: usize,
    /// Compiled size of one regular expression, in bytes (`RegexBuilder::size_limit`).
    pub max_regex_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 100_000,
            max_depth: 64,
            max_collection_size: 100_000,
            max_string_length: 1 << 20,
            max_expression_length: 10_000,
            max_regex_size: 1 << 20,
        }
    }
}
