//! Process-wide settings of the load balancers (per-listener settings are in
//! [`ListenerSpec`](super::ListenerSpec)).

use std::time::Duration;

/// Timings shared by every listener of a [`LoadBalancers`](super::LoadBalancers).
///
/// The defaults suit production; tests shorten them so ejection and sampling can be
/// observed in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    /// How long an instance is first ejected after `ejection_failures` consecutive
    /// failures; each ejection in a row doubles it.
    pub ejection_base: Duration,
    /// The longest ejection.
    pub ejection_max: Duration,
    /// How long a stopping listener (removed, moved, shut down) waits for its open
    /// connections to finish their requests before closing them.
    pub drain_timeout: Duration,
    /// How long a listener moved to a new address keeps accepting on the old one, so
    /// clients that still use the old address can switch without a refused connection.
    pub address_handover: Duration,
    /// How long to wait for a TCP connection to an instance.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection to an instance is kept.
    pub pool_idle_timeout: Duration,
    /// The width of one sample of the traffic time series.
    pub sample_interval: Duration,
    /// How much of the traffic time series is kept (and how long the counters of a
    /// server group outlive its removal from the routing table).
    pub retention: Duration,
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            ejection_base: Duration::from_secs(10),
            ejection_max: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            address_handover: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
            pool_idle_timeout: Duration::from_secs(90),
            // Canary analyses compare windows of tens of seconds: one sample a second.
            sample_interval: Duration::from_secs(1),
            // The in-memory series; the durable one is in the store
            // (`LoadBalancers::persist_samples`), so 15 minutes bound memory.
            retention: Duration::from_secs(900),
        }
    }
}

impl LbConfig {
    /// How many samples the time series keeps (at least one).
    pub(crate) fn series_capacity(&self) -> usize {
        let interval = self.sample_interval.as_millis().max(1);
        usize::try_from(self.retention.as_millis() / interval)
            .unwrap_or(usize::MAX)
            .clamp(1, 100_000)
    }
}
