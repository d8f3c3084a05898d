//! Deploying for real: the [`Provider`] and [`TrafficRouter`] boundaries every cloud
//! implements (the local one first, Kubernetes next), and the deployment stages and
//! strategies built on them.
//!
//! A provider owns server groups: immutable, versioned sets of identical instances
//! (`app-stack-detail-v007`). Stages never name a provider: they look one up by the
//! `cloudProvider` (default `local`) in [`Providers`].
//!
//! [`register`] adds Spinnaker's deployment stage types to an engine's registry:
//! `deploy` (with the `redblack`, `highlander`, `rollingredblack` and `canary`
//! strategies; a canary release's own `canaryTraffic` and `removeCanaryServerGroups`),
//! `createServerGroup`, `resizeServerGroup`, `enableServerGroup`, `disableServerGroup`,
//! `destroyServerGroup`, `rollbackServerGroup`, `rollbackCluster`, `shrinkCluster`,
//! `scaleDownCluster`, `disableCluster`, `findImageFromCluster`, `upsertLoadBalancer`,
//! `deleteLoadBalancer`, `upsertSecurityGroup`, and Gennaker's `shiftTraffic`; the
//! `deployCanaryServerGroups` and `cleanupCanaryClusters` a `kayentaCanary` stage with
//! `deployments` plans (see `canary_deployments`); and the
//! `clusterSize` precondition of `checkPreconditions`. Every one of them checks, right
//! before it acts, that the execution may act on the resource's application (the
//! engine's `Services::authorize`; what each needs is in the `authz` module).

mod authz;
mod canary;
mod canary_deployments;
mod cluster;
mod cluster_ops;
mod cluster_size;
mod deploy;
mod fields;
mod find_image;
mod load_balancer;
pub mod model;
pub mod provider;
mod rollback;
mod rules;
mod server_group;
mod strategy;

use gennaker_engine::StageRegistry;

pub use model::{
    Capacity, CreateServerGroup, HealthState, Instance, LoadBalancer, LoadBalancerSpec,
    ServerGroup, ServerGroupOrigin,
};
pub use provider::{DeployError, Provider, Providers, SpecProblem, TrafficRouter};

/// Adds every deployment stage type and its tasks, acting through `providers`. The
/// composition root records which providers exist with
/// [`StageRegistry::set_cloud_providers`], so stages naming another one are reported at
/// save time.
pub fn register(registry: &mut StageRegistry, providers: Providers) {
    deploy::register(registry, &providers);
    canary::register(registry, &providers);
    canary_deployments::register(registry, &providers);
    server_group::register(registry, &providers);
    cluster_ops::register(registry, &providers);
    rollback::register(registry, &providers);
    find_image::register(registry, &providers);
    load_balancer::register(registry, &providers);
    cluster_size::register(registry, &providers);
}
