//! Finding the processes again after a server restart.
//!
//! The store is written before anything is started (a group is persisted with its origin
//! before its first process runs), so after a crash at any point a restarted server finds
//! every group it may have started processes for. Each recorded instance whose process
//! still runs (same pid AND start time, or found by its marker when its pid was never
//! recorded) is adopted and probed at once; the missing ones are started again;
//! processes carrying this data directory's marker that belong to no instance are
//! stopped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::LocalError;
use crate::group::{Group, Live};
use crate::health;
use crate::instances::Instances;
use crate::process::{InstanceProcess, marked_processes, start_time};
use crate::records::InstanceRecord;
use crate::spec::ProcessSpec;
use crate::supervisor::Start;

/// Knows every stored group again, supervises its instances (adopted or started anew),
/// stops orphaned processes, then brings each group to its capacity.
pub(crate) async fn restore_groups(instances: &Arc<Instances>) -> Result<(), LocalError> {
    let registry = &instances.registry;
    // Marked processes by instance key; what is left after adoption is orphaned.
    let mut marked: HashMap<String, i32> = marked_processes(instances.data_dir())
        .into_iter()
        .map(|(pid, key)| (key, pid))
        .collect();
    let mut restored = Vec::new();
    let mut adopted = Vec::new();
    for record in registry.load_records().await? {
        let spec = ProcessSpec::parse(&record.spec).map_err(|e| LocalError::Corrupt {
            kind: "server group",
            key: record.key(),
            reason: e.to_string(),
        })?;
        let recorded = record.instances.clone();
        let group = Arc::new(Group::new(record, spec));
        registry.insert(group.clone());
        for (index, instance) in &recorded {
            let start = adopt(&group, *index, instance, &mut marked);
            if matches!(start, Start::Adopted(_)) {
                adopted.push((group.clone(), *index));
            }
            group.state().live.insert(*index, Live::starting());
            instances.start_supervisor(&group, *index, start);
        }
        restored.push(group);
    }
    stop_orphans(marked).await;
    probe_adopted(instances, adopted).await;
    for group in restored {
        registry.persist(&group).await;
        instances
            .reconcile(&group)
            .await
            .map_err(|e| LocalError::Spawn {
                program: group.key.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Probes every adopted instance once, all together, so the load balancers route those
/// that answer as soon as they listen again: health lives only in memory, and the
/// supervisor of an instance that was up probes it next a whole health interval later.
async fn probe_adopted(instances: &Arc<Instances>, adopted: Vec<(Arc<Group>, u32)>) {
    let mut probes = tokio::task::JoinSet::new();
    for (group, index) in adopted {
        let Some(port) = group.state().record.instances.get(&index).map(|i| i.port) else {
            continue;
        };
        let instances = instances.clone();
        probes.spawn(async move {
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let result = health::probe(&instances.http, address, &group.spec.health_check).await;
            instances.record_probe(&group, index, &result);
        });
    }
    while probes.join_next().await.is_some() {}
}

/// How instance `index`'s supervision begins: with its process when that still runs
/// (taken out of `marked`, and its pid and start time recorded), else with a new one.
fn adopt(
    group: &Group,
    index: u32,
    instance: &InstanceRecord,
    marked: &mut HashMap<String, i32>,
) -> Start {
    let instance_key = format!("{}/{index}", group.key);
    let found = marked.remove(&instance_key);
    let adopted = match (instance.pid, instance.start_time) {
        (Some(pid), Some(start)) => InstanceProcess::adopt(pid, start),
        _ => None,
    }
    // Started but never recorded (a crash in between): found by its marker.
    .or_else(|| {
        found.and_then(|pid| start_time(pid).and_then(|start| InstanceProcess::adopt(pid, start)))
    });
    match adopted {
        Some(process) => {
            tracing::info!(instance = %instance.id, pid = process.pid, "instance adopted");
            if let Some(rec) = group.state().record.instances.get_mut(&index) {
                rec.pid = Some(process.pid);
                rec.start_time = Some(process.start_time);
            }
            // A marked process of this instance that is not the adopted one is a stray
            // duplicate.
            if let Some(other) = found.filter(|p| *p != process.pid) {
                marked.insert(format!("{instance_key}/stray"), other);
            }
            Start::Adopted(Box::new(process))
        }
        None if instance.pid.is_some() => Start::Lost,
        None => Start::Fresh,
    }
}

/// Stops whatever carries this data directory's marker but belongs to no instance: left
/// by a destroyed group (or a crash mid-destroy).
async fn stop_orphans(marked: HashMap<String, i32>) {
    for (key, pid) in marked {
        if let Some(start) = start_time(pid)
            && let Some(mut orphan) = InstanceProcess::adopt(pid, start)
        {
            tracing::warn!(pid, instance = %key, "stopping an orphaned instance");
            orphan.stop(Duration::from_secs(5)).await;
        }
    }
}
