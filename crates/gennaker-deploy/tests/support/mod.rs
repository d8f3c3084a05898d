//! The engine's test kit with the deployment stages, acting on a fake cloud.
#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod canary;
pub(crate) mod cloud;

use std::ops::Deref;
use std::sync::Arc;

use gennaker_deploy::Providers;
use gennaker_engine::StageRegistry;
use gennaker_engine::testing::{self, TestBackend};
use serde_json::{Value, json};

pub(crate) use cloud::FakeCloud;

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a harness.
#[macro_export]
macro_rules! deploy_test {
    ($name:ident, |$h:ident| $body:block) => {
        gennaker_engine::engine_test!($name, |$h: support::Harness| $body);
    };
}

/// Registers the deployment stages, acting on `cloud`.
pub(crate) fn deploy_stages(
    cloud: &Arc<FakeCloud>,
) -> impl Fn(&mut StageRegistry) + Send + Sync + 'static {
    let providers = Providers::new().with(cloud.clone(), Some(cloud.clone()));
    move |registry| gennaker_deploy::register(registry, providers.clone())
}

/// The kit's harness with the deployment stages and the cloud they act on.
pub(crate) struct Harness {
    kit: testing::Harness,
    pub(crate) cloud: Arc<FakeCloud>,
}

impl Harness {
    pub(crate) async fn new(backend: TestBackend) -> Self {
        let cloud = Arc::new(FakeCloud::default());
        let kit = testing::Harness::with_stages(backend, deploy_stages(&cloud)).await;
        Harness { kit, cloud }
    }

    pub(crate) async fn stop(self) {
        self.kit.stop().await;
    }
}

impl Deref for Harness {
    type Target = testing::Harness;

    fn deref(&self) -> &testing::Harness {
        &self.kit
    }
}

/// A deploy stage of one cluster `shop-prod` running `version`, with extra fields.
pub(crate) fn deploy_stage(version: &str, extra: Value) -> Value {
    let mut cluster = json!({
        "application": "shop", "stack": "prod", "account": "local", "cloudProvider": "local",
        "capacity": {"min": 2, "max": 2, "desired": 2},
        "command": "./serve", "artifact": {"reference": version}, "loadBalancers": ["shop-lb"],
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut cluster, extra) {
        c.extend(e);
    }
    json!({"refId": "1", "name": "Deploy", "type": "deploy", "clusters": [cluster]})
}
