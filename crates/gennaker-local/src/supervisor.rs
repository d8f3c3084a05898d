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

use crate::group::Group;
use crate::health;
use crate::instances::Instances;
use crate::process::InstanceProcess;

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

fn backoff(instances: &Instances, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    instances
        .settings
        .restart_backoff
        .saturating_mul(factor)
        .min(instances.settings.max_restart_backoff)
}

/// How soon after start an instance is first probed.
const FIRST_STARTUP_PROBE: Duration = Duration::from_millis(10);

/// The longest wait between probes of an instance that has not passed one yet.
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The wait before the next probe. Until its first passing probe an instance is probed
/// quickly, the wait doubling from [`FIRST_STARTUP_PROBE`] with each failed probe
/// (`startup_probes`) up to [`STARTUP_PROBE_INTERVAL`], so a deploy learns it is Up
/// within milliseconds of its app answering; after that, every `health_interval`.
fn probe_interval(came_up: bool, startup_probes: u32, health_interval: Duration) -> Duration {
    if came_up {
        return health_interval;
    }
    FIRST_STARTUP_PROBE
        .saturating_mul(2u32.saturating_pow(startup_probes.min(16)))
        .min(STARTUP_PROBE_INTERVAL)
        .min(health_interval)
}

/// Supervises instance `index` of `group` until stopped or detached.
pub(crate) async fn supervise(
    instances: Arc<Instances>,
    group: Arc<Group>,
    index: u32,
    start: Start,
    stop: CancellationToken,
) {
    let detach = instances.shutdown.clone();
    let grace = Duration::from_secs(group.spec.grace_period_seconds);
    let mut came_up = matches!(start, Start::Adopted(_));
    let (mut process, mut restart) = match start {
        Start::Adopted(process) => (Some(*process), false),
        Start::Fresh => (None, false),
        Start::Lost => (None, true),
    };
    let mut attempt: u32 = 0;
    // Probes of the current process before its first passing one.
    let mut startup_probes: u32 = 0;
    loop {
        if process.is_none() {
            if attempt > 0
                && pause(backoff(&instances, attempt), &stop, &detach)
                    .await
                    .is_some()
            {
                return;
            }
            match instances.spawn_instance(&group, index, restart).await {
                Ok(started) => {
                    process = Some(started);
                    came_up = false;
                    startup_probes = 0;
                }
                Err(e) => {
                    tracing::warn!(group = %group.key, index, error = %e, "instance did not start");
                    instances.set_live(&group, index, HealthState::Down, Some(e.to_string()));
                    attempt = attempt.saturating_add(1);
                    restart = true;
                    continue;
                }
            }
        }
        let Some(running) = process.as_mut() else {
            continue;
        };
        let interval = probe_interval(came_up, startup_probes, instances.settings.health_interval);
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
            instances.set_live(&group, index, HealthState::Down, Some(reason));
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
            &instances.http,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &group.spec.health_check,
        )
        .await;
        if result.is_ok() {
            attempt = 0;
            came_up = true;
        } else if !came_up {
            startup_probes = startup_probes.saturating_add(1);
        }
        instances.record_probe(&group, index, &result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(2);

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    #[test]
    fn a_starting_instance_is_probed_soon_then_less_often_until_it_is_up() {
        let waits: Vec<u64> = (0..7)
            .map(|failed| millis(probe_interval(false, failed, INTERVAL)))
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 100, 100, 100]);
        assert_eq!(
            probe_interval(false, u32::MAX, INTERVAL),
            STARTUP_PROBE_INTERVAL
        );
    }

    #[test]
    fn an_instance_that_came_up_is_probed_every_health_interval() {
        assert_eq!(probe_interval(true, 0, INTERVAL), INTERVAL);
        assert_eq!(probe_interval(true, 5, INTERVAL), INTERVAL);
    }

    #[test]
    fn a_short_health_interval_caps_the_startup_probes() {
        let short = Duration::from_millis(30);
        let waits: Vec<u64> = (0..4)
            .map(|failed| millis(probe_interval(false, failed, short)))
            .collect();
        assert_eq!(waits, [10, 20, 30, 30]);
    }
}
