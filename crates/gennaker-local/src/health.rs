//! An instance's health: one probe (`GET <path>`, any 2xx passes, or a TCP connect) and
//! the bookkeeping that turns probe results and exits into `Starting → Up / Down`.
//!
//! Health lives only in memory (it is re-learnt by probing after a restart). The
//! bookkeeping answers whether an instance went in or out of `Up`, the one change the
//! load balancers must follow; the caller hands routing the news.

use std::net::SocketAddr;
use std::time::Duration;

use gennaker_deploy::HealthState;

use crate::group::{Group, Live};
use crate::spec::HealthCheckSpec;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `address`; `Err` says why it failed (`GET /health → 503`).
pub(crate) async fn probe(
    http: &reqwest::Client,
    address: SocketAddr,
    check: &HealthCheckSpec,
) -> Result<(), String> {
    match &check.path {
        Some(path) if !check.tcp => {
            let url = format!("http://{address}{path}");
            match http.get(&url).timeout(PROBE_TIMEOUT).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("GET {path} → {}", response.status().as_u16())),
                Err(e) if e.is_timeout() => Err(format!("GET {path} timed out")),
                Err(e) if e.is_connect() => Err(format!("GET {path}: connection refused")),
                Err(e) => Err(format!("GET {path}: {e}")),
            }
        }
        _ => match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("TCP connect: {e}")),
            Err(_) => Err("TCP connect timed out".to_owned()),
        },
    }
}

/// Sets an instance's health directly (it exited or could not start); `true` when it
/// went in or out of `Up`.
pub(crate) fn set(group: &Group, index: u32, health: HealthState, reason: Option<String>) -> bool {
    let mut state = group.state();
    let live = state.live.entry(index).or_insert_with(Live::starting);
    let changed = (live.health == HealthState::Up) != (health == HealthState::Up);
    *live = Live {
        health,
        reason,
        failures: live.failures,
    };
    changed
}

/// Applies one probe result; `true` when the instance went in or out of `Up`.
pub(crate) fn record_probe(
    group: &Group,
    index: u32,
    result: &Result<(), String>,
    unhealthy_threshold: u32,
) -> bool {
    let mut state = group.state();
    if !state.record.instances.contains_key(&index) {
        return false;
    }
    let live = state.live.entry(index).or_insert_with(Live::starting);
    if live.health == HealthState::OutOfService {
        // Being stopped (scale-down): a passing probe must not put it back.
        return false;
    }
    let next = next_health(live, result, unhealthy_threshold);
    let changed = (live.health == HealthState::Up) != (next.health == HealthState::Up);
    if changed {
        tracing::info!(group = %group.key, index, health = ?next.health, reason = ?next.reason, "instance health changed");
    }
    *live = next;
    changed
}

/// The health after one more probe result.
fn next_health(live: &Live, result: &Result<(), String>, threshold: u32) -> Live {
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
