//! Deploying for real: the [`Provider`] and [`TrafficRouter`] boundaries every cloud
//! implements (the local one first, Kubernetes next), and the deployment stages and
//! strategies built on them.
//!
//! A provider owns server groups: immutable, versioned sets of identical instances
//! (`app-stack-detail-v007`). Stages never name a provider: they look one up by the
//! `cloudProvider` (default `local`) in [`Providers`].

pub mod model;
pub mod provider;

pub use model::{
    Capacity, CreateServerGroup, HealthState, Instance, LoadBalancer, LoadBalancerSpec,
    ServerGroup, ServerGroupOrigin,
};
pub use provider::{DeployError, Provider, Providers, TrafficRouter};
