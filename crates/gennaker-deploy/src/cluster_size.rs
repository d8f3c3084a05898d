//! `clusterSize`: the precondition of `checkPreconditions` that counts a cluster's
//! server groups (Orca's `ClusterSizePreconditionTask`).
//!
//! Its context names the cluster (`cluster`, or `moniker`), the account (`credentials`
//! or `account`), `cloudProvider` (default `local`), `regions`, `comparison` (`==` by
//! default; `<`, `<=`, `>`, `>=`), `expected` (default 1) and
//! `onlyEnabledServerGroups` (default false: disabled groups count too). In each region
//! the cluster's server groups in the account, compared with `expected`, must hold.
//!
//! A provider has one region, named after it (the local provider's is `local`), as the
//! deploy stages record in `deploy.server.groups`. Orca requires `regions`; here no
//! `regions` checks that one region, and a region the provider does not have is
//! unsupported (TERMINAL), as an unconfigured cloud provider is, rather than a count
//! of 0.

use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Problem, ValidationReport};
use gennaker_engine::{
    Access, Precondition, PreconditionSite, StageRegistry, Task, TaskContext, TaskError,
    TaskResult, truthy,
};
use serde_json::{Map, Value};

use crate::authz::cluster_target;
use crate::cluster::server_groups;
use crate::fields::{ClusterRef, cloud_provider, text, whole};
use crate::provider::Providers;
use crate::rules::check_cloud_provider;

/// Registers the `clusterSize` precondition type.
pub(crate) fn register(registry: &mut StageRegistry, providers: &Providers) {
    registry.precondition(ClusterSizePrecondition {
        providers: providers.clone(),
    });
}

/// How the count compares with `expected`: Orca's `ComparisonConfig.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

/// Every comparison, as written.
const COMPARISONS: &[&str] = &["<", "<=", "==", ">=", ">"];

impl Comparison {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "<" => Self::Less,
            "<=" => Self::LessOrEqual,
            "==" => Self::Equal,
            ">=" => Self::GreaterOrEqual,
            ">" => Self::Greater,
            _ => return None,
        })
    }

    fn holds(self, actual: u64, expected: u64) -> bool {
        match self {
            Self::Less => actual < expected,
            Self::LessOrEqual => actual <= expected,
            Self::Equal => actual == expected,
            Self::GreaterOrEqual => actual >= expected,
            Self::Greater => actual > expected,
        }
    }
}

/// What one `clusterSize` precondition asks, read from its evaluated context.
struct Wanted {
    cluster: ClusterRef,
    regions: Vec<String>,
    comparison: (Comparison, String),
    expected: u64,
    only_enabled: bool,
}

impl Wanted {
    /// Reads the context; a malformed field fails the precondition, naming the field.
    fn read(site: &PreconditionSite<'_>, context: &Map<String, Value>) -> Result<Self, TaskError> {
        let label = site.label();
        let has_moniker = context.get("moniker").is_some_and(Value::is_object);
        if text(context, "cluster").is_none() && !has_moniker {
            return Err(TaskError::Permanent(format!(
                "{label} has no context.cluster: set {} to the cluster to count, e.g. \"shop-prod\"",
                site.field("cluster")
            )));
        }
        let cluster = ClusterRef::from_context(context)?;
        let written = text(context, "comparison").unwrap_or("==");
        let comparison = Comparison::parse(written).ok_or_else(|| {
            TaskError::Permanent(format!(
                "{label}: comparison '{written}' is not one of {}; fix {}",
                COMPARISONS.join(", "),
                site.field("comparison")
            ))
        })?;
        let expected = match context.get("expected") {
            None | Some(Value::Null) => 1,
            Some(value) => whole(context, "expected")
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "{label}: expected must be a whole number ≥ 0, not {value}; fix {}",
                        site.field("expected")
                    ))
                })?,
        };
        let regions = match context.get("regions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(|r| r.trim().to_owned()))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    TaskError::Permanent(format!(
                        "{label}: regions must be a list of region names, not {}; fix {}",
                        Value::Array(items.clone()),
                        site.field("regions")
                    ))
                })?,
            Some(other) => {
                return Err(TaskError::Permanent(format!(
                    "{label}: regions must be a list of region names, not {other}; fix {}",
                    site.field("regions")
                )));
            }
        };
        Ok(Self {
            cluster,
            regions,
            comparison: (comparison, written.to_owned()),
            expected,
            only_enabled: truthy(context.get("onlyEnabledServerGroups")),
        })
    }
}

/// Counts the cluster's server groups through the cluster's provider.
struct ClusterSizePrecondition {
    providers: Providers,
}

impl Precondition for ClusterSizePrecondition {
    fn precondition_type(&self) -> &'static str {
        "clusterSize"
    }

    fn check(
        &self,
        context: &Fields<'_>,
        check_context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_cluster_size(context, check_context, report);
    }
}

#[async_trait]
impl Task for ClusterSizePrecondition {
    fn name(&self) -> &'static str {
        "clusterSizePreconditionTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let site = PreconditionSite::of(ctx.stage);
        let label = site.label();
        let context = match site.evaluated_context(ctx) {
            Ok(context) => context,
            Err(why) => return Ok(TaskResult::terminal(why)),
        };
        let wanted = Wanted::read(&site, &context)?;
        // Unsupported, not failed: the execution ends TERMINAL whatever `failPipeline`
        // says, and the message says where this precondition is.
        let unsupported = |why: String, key: &str| {
            TaskError::Unsupported(format!(
                "{label} of stage '{}': {why}; fix {}",
                site.stage_name(ctx.execution),
                site.field(key)
            ))
        };
        let provider = self
            .providers
            .provider(wanted.cluster.cloud_provider.as_deref())
            .map_err(|e| unsupported(e.to_string(), "cloudProvider"))?;
        // The provider's one region (see the module docs).
        let region = provider.name();
        let mut regions = wanted.regions.clone();
        regions.dedup();
        if regions.is_empty() {
            regions.push(region.to_owned());
        }
        if let Some(other) = regions.iter().find(|r| r.as_str() != region) {
            let why = format!(
                "region '{other}' is not a region of cloudProvider '{region}' (its one region is '{region}')"
            );
            return Err(unsupported(why, "regions"));
        }
        ctx.authorize(cluster_target(&wanted.cluster), Access::Read)
            .await?;
        let groups = server_groups(provider.as_ref(), &wanted.cluster).await?;
        let counted: Vec<&str> = groups
            .iter()
            .filter(|g| !wanted.only_enabled || !g.disabled)
            .map(|g| g.name.as_str())
            .collect();
        let actual = counted.len() as u64;
        let (comparison, written) = &wanted.comparison;
        if comparison.holds(actual, wanted.expected) {
            return Ok(TaskResult::succeeded());
        }
        let found = if counted.is_empty() {
            String::new()
        } else {
            format!(": {}", counted.join(", "))
        };
        Ok(TaskResult::terminal(format!(
            "{label} failed: expected {} {}server groups in cluster {} (comparison {written}) in region {region} of account {} but found {actual}{found}",
            wanted.expected,
            if wanted.only_enabled { "enabled " } else { "" },
            wanted.cluster.cluster,
            wanted.cluster.account,
        )))
    }

    /// Orca's: a provider that is briefly unavailable is asked again 5 s later.
    fn backoff(&self, _stage: &gennaker_engine::StageExecution) -> Duration {
        Duration::from_secs(5)
    }

    /// Orca's: the count is given up after 30 s of an unavailable provider.
    fn timeout(&self, _stage: &gennaker_engine::StageExecution) -> Option<Duration> {
        Some(Duration::from_secs(30))
    }
}

/// Save-time rules of a `clusterSize` context.
fn check_cluster_size(
    context: &Fields<'_>,
    check_context: &CheckContext<'_>,
    report: &mut ValidationReport,
) {
    if context.has("moniker") {
        context.object("moniker", report);
        context.string("cluster", report);
    } else {
        context.required_string("cluster", "the cluster to count", report);
    }
    if !context.has("credentials") && !context.has("account") {
        context.require_account(report);
    }
    check_cloud_provider(context, check_context, report);
    context.one_of("comparison", COMPARISONS, report);
    context.non_negative("expected", report);
    context.boolean("onlyEnabledServerGroups", report);
    let regions = context.strings("regions", report);
    let provider = cloud_provider(context.map).unwrap_or(Providers::DEFAULT);
    let configured = check_context
        .cloud_providers
        .is_some_and(|known| known.contains(provider));
    if !configured {
        return;
    }
    for (i, region) in regions {
        if region != provider && !region.contains("${") {
            report.push(
                Problem::warning(
                    context.at("regions").index(i),
                    format!(
                        "region '{region}' is not a region of cloud provider '{provider}' (its one region is '{provider}'): the pipeline is accepted, but a run stops (TERMINAL) at this precondition"
                    ),
                )
                .with_hint(format!("use \"regions\": [\"{provider}\"], or leave regions out")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_are_orcas() {
        let cases = [
            ("<", 1, 2, true),
            ("<", 2, 2, false),
            ("<=", 2, 2, true),
            ("<=", 3, 2, false),
            ("==", 2, 2, true),
            ("==", 1, 2, false),
            (">=", 2, 2, true),
            (">=", 1, 2, false),
            (">", 3, 2, true),
            (">", 2, 2, false),
        ];
        for (written, actual, expected, holds) in cases {
            let comparison = Comparison::parse(written).unwrap_or_else(|| panic!("{written}"));
            assert_eq!(
                comparison.holds(actual, expected),
                holds,
                "{actual} {written} {expected}"
            );
        }
        assert_eq!(Comparison::parse("!="), None, "Orca has no !=");
        assert_eq!(Comparison::parse("=~"), None);
    }
}
