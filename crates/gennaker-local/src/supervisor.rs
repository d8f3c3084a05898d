//! One task per instance: starts (or adopts) its process, restarts it when it crashes
//! (exponential backoff, capped, counted in `restarts`), probes its health on an interval
//! and reports changes so the load balancers follow.
//!
//! Two ways to end: the instance's `stop` token (resize down, destroy) stops the process
//! gracefully first; the provider's shutdown token only ends supervision and leaves the
//! process running, for the next server to adopt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gennaker_deploy::HealthState;
use tokio_util::sync::CancellationToken;

use crate::group::{Group, Live};
use crate::health;
use crate::process::InstanceProcess;
use crate::provider::Inner;

/// How an instance's supervision begins.
#[derive(Debug)]
pub(crate) enum Start {
    /// Start a new process.
    Fresh,
    /// Its recorded process is gone: start a new one, counted as a restart.
    Lost,
    /// Its process still runs: watch it.
    Adopted(Box<InstanceProcess>),
}

/// Why a wait ended early.
enum Interrupted {
    Stop,
    Detach,
}

async fn pause(
    duration: Duration,
    stop: &CancellationToken,
    detach: &CancellationToken,
) -> Option<Interrupted> {
    tokio::select! {
        () = stop.cancelled() => Some(Interrupted::Stop),
        () = detach.cancelled() => Some(Interrupted::Detach),
        () = tokio::time::sleep(duration) => None,
    }
}

fn backoff(inner: &Inner, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    inner
        .settings
        .restart_backoff
        .saturating_mul(factor)
        .min(inner.settings.max_restart_backoff)
}

/// Supervises instance `index` of `group` until stopped or detached.
/// How often an instance that has not passed a probe yet is probed.
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) async fn supervise(
    inner: Arc<Inner>,
    group: Arc<Group>,
    index: u32,
    start: Start,
    stop: CancellationToken,
) {
    let detach = inner.shutdown.clone();
    let grace = Duration::from_secs(group.spec.grace_period_seconds);
    let mut came_up = matches!(start, Start::Adopted(_));
    let (mut process, mut restart) = match start {
        Start::Adopted(process) => (Some(*process), false),
        Start::Fresh => (None, false),
        Start::Lost => (None, true),
    };
    let mut attempt: u32 = 0;
    loop {
        if process.is_none() {
            if attempt > 0
                && pause(backoff(&inner, attempt), &stop, &detach)
                    .await
                    .is_some()
            {
                return;
            }
            match inner.spawn_instance(&group, index, restart).await {
                Ok(started) => {
                    process = Some(started);
                    came_up = false;
                }
                Err(e) => {
                    tracing::warn!(group = %group.key, index, error = %e, "instance did not start");
                    inner.set_live(&group, index, HealthState::Down, Some(e.to_string()));
                    attempt = attempt.saturating_add(1);
                    restart = true;
                    continue;
                }
            }
        }
        let Some(running) = process.as_mut() else {
            continue;
        };
        // Until its first passing probe an instance is probed quickly, so a deploy
        // learns it is Up within a fraction of a second, not a whole interval.
        let interval = if came_up {
            inner.settings.health_interval
        } else {
            STARTUP_PROBE_INTERVAL.min(inner.settings.health_interval)
        };
        match pause(interval, &stop, &detach).await {
            Some(Interrupted::Stop) => {
                running.stop(grace).await;
                return;
            }
            Some(Interrupted::Detach) => return,
            None => {}
        }
        if let Some(reason) = running.exited() {
            tracing::warn!(group = %group.key, index, %reason, "instance exited; restarting");
            inner.set_live(&group, index, HealthState::Down, Some(reason));
            process = None;
            restart = true;
            attempt = attempt.saturating_add(1);
            continue;
        }
        let Some(port) = group.state().record.instances.get(&index).map(|i| i.port) else {
            // Removed from the record while running: a resize is stopping it.
            continue;
        };
        let result = health::probe(
            &inner.http,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &group.spec.health_check,
        )
        .await;
        if result.is_ok() {
            attempt = 0;
            came_up = true;
        }
        inner.record_probe(&group, index, result);
    }
}

/// The health after one more probe result.
pub(crate) fn next_health(live: &Live, result: &Result<(), String>, threshold: u32) -> Live {
    match result {
        Ok(()) => Live {
            health: HealthState::Up,
            reason: None,
            failures: 0,
        },
        Err(reason) => {
            let failures = live.failures.saturating_add(1);
            let health = if failures >= threshold {
                HealthState::Down
            } else {
                live.health
            };
            Live {
                health,
                reason: Some(reason.clone()),
                failures,
            }
        }
    }
}
