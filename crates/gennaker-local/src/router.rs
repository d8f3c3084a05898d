//! The local provider's [`TrafficRouter`]: load balancer specs persisted in the store,
//! listeners run by [`LoadBalancers`](crate::lb::LoadBalancers), routing tables computed
//! by [`routing`](crate::routing) whenever groups, health or weights change.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use async_trait::async_trait;
use gennaker_deploy::{DeployError, LoadBalancer, LoadBalancerSpec, TrafficRouter};
use gennaker_store::ExpectedVersion;

use crate::lb::{LbError, ListenerSpec};
use crate::provider::{Inner, LocalProvider, lock};
use crate::records::{BalancerRecord, LOAD_BALANCER, PROVIDER, record_key};
use crate::routing::shares;

fn lb_error(err: LbError) -> DeployError {
    match err {
        LbError::BadCidr(_) => DeployError::Invalid(err.to_string()),
        LbError::Bind { .. } | LbError::Unknown(_) => DeployError::Unavailable(err.to_string()),
    }
}

/// Starts or changes the listener of a record; returns where it listens. A spec asking
/// for port 0 keeps the port it was given before, so clients find it after a restart.
pub(crate) async fn listen(
    inner: &Inner,
    record: &BalancerRecord,
) -> Result<SocketAddr, DeployError> {
    let asked: SocketAddr = record.spec.listen.parse().map_err(|_| {
        DeployError::Invalid(format!(
            "listen '{}' is not an address (write e.g. 127.0.0.1:8080)",
            record.spec.listen
        ))
    })?;
    let listen = match record.address.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(previous)) if asked.port() == 0 && previous.ip() == asked.ip() => previous,
        _ => asked,
    };
    inner
        .lbs
        .upsert(ListenerSpec {
            name: record.spec.name.clone(),
            listen,
            allowed_cidrs: record.spec.allowed_cidrs.clone(),
            ejection_failures: record.spec.ejection_failures,
        })
        .await
        .map_err(lb_error)
}

fn view(inner: &Inner, key: &str, record: &BalancerRecord) -> LoadBalancer {
    LoadBalancer {
        spec: record.spec.clone(),
        address: record.address.clone().unwrap_or_default(),
        weights: shares(&inner.routes_of(key)),
    }
}

async fn save(inner: &Inner, key: &str, record: &BalancerRecord) -> Result<(), DeployError> {
    let document = serde_json::to_value(record)
        .map_err(|e| DeployError::Invalid(format!("load balancer: {e}")))?;
    inner
        .store
        .put_resource(
            PROVIDER,
            LOAD_BALANCER,
            key,
            &document,
            ExpectedVersion::Any,
        )
        .await
        .map_err(|e| DeployError::from(crate::error::LocalError::from(e)))?;
    lock(&inner.balancers).insert(key.to_owned(), record.clone());
    Ok(())
}

/// Stops a listener and forgets it (missing: nothing to do).
pub(crate) async fn delete_balancer(
    inner: &Inner,
    account: &str,
    name: &str,
) -> Result<(), DeployError> {
    let key = record_key(account, name);
    inner.lbs.remove(name).await;
    inner
        .store
        .delete_resource(PROVIDER, LOAD_BALANCER, &key)
        .await
        .map_err(|e| DeployError::from(crate::error::LocalError::from(e)))?;
    lock(&inner.balancers).remove(&key);
    inner.forget_routes(&key);
    Ok(())
}

#[async_trait]
impl TrafficRouter for LocalProvider {
    async fn upsert_load_balancer(
        &self,
        spec: LoadBalancerSpec,
    ) -> Result<LoadBalancer, DeployError> {
        let inner = &self.inner;
        let key = record_key(&spec.account, &spec.name);
        let previous = lock(&inner.balancers).get(&key).cloned();
        let mut record = BalancerRecord {
            address: previous.as_ref().and_then(|p| p.address.clone()),
            weights: previous.map(|p| p.weights).unwrap_or_default(),
            spec,
        };
        // Listening first: a spec that cannot listen (bad address or CIDR) is refused
        // without being stored.
        let address = listen(inner, &record).await?;
        record.address = Some(address.to_string());
        save(inner, &key, &record).await?;
        inner.sync_routes(&key);
        Ok(view(inner, &key, &record))
    }

    async fn delete_load_balancer(&self, account: &str, name: &str) -> Result<(), DeployError> {
        delete_balancer(&self.inner, account, name).await
    }

    async fn load_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError> {
        let key = record_key(account, name);
        let record = lock(&self.inner.balancers).get(&key).cloned();
        Ok(record.map(|r| view(&self.inner, &key, &r)))
    }

    async fn load_balancers(&self, application: &str) -> Result<Vec<LoadBalancer>, DeployError> {
        let records: Vec<(String, BalancerRecord)> = lock(&self.inner.balancers)
            .iter()
            .filter(|(_, r)| r.spec.application == application)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        Ok(records
            .iter()
            .map(|(key, record)| view(&self.inner, key, record))
            .collect())
    }

    async fn set_weights(
        &self,
        account: &str,
        load_balancer: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError> {
        let inner = &self.inner;
        let key = record_key(account, load_balancer);
        let Some(mut record) = lock(&inner.balancers).get(&key).cloned() else {
            return Err(DeployError::no_load_balancer(load_balancer));
        };
        record.weights = weights;
        save(inner, &key, &record).await?;
        inner.sync_routes(&key);
        Ok(view(inner, &key, &record))
    }
}
