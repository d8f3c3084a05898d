//! A running listener: its shared core, its accept loop(s) and sampler, and how it
//! moves to another address or stops without dropping requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::LbError;
use super::accept;
use super::config::LbConfig;
use super::core::{ListenerCore, Settings};
use super::persist::SampleSink;

/// The socket a listener accepts on now.
#[derive(Debug)]
struct Endpoint {
    /// The address the spec asked for (port 0 stays 0), to tell a move from an update.
    requested: SocketAddr,
    bound: SocketAddr,
    stop: CancellationToken,
}

/// One load balancer's listener.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) core: Arc<ListenerCore>,
    /// Cancelled when the listener stops; parent of its accept loops' stop tokens.
    life: CancellationToken,
    tasks: TaskTracker,
    endpoint: Mutex<Endpoint>,
}

impl Listener {
    /// Binds `listen` and starts accepting.
    pub(crate) async fn start(
        name: &str,
        listen: SocketAddr,
        settings: Settings,
        config: Arc<LbConfig>,
        samples: Arc<OnceLock<SampleSink>>,
        shutdown: &CancellationToken,
    ) -> Result<Self, LbError> {
        let (socket, bound) = bind(listen).await?;
        let core = Arc::new(ListenerCore::new(name, settings, config, samples));
        let life = shutdown.child_token();
        let tasks = TaskTracker::new();
        let stop = life.child_token();
        tasks.spawn(accept::serve(Arc::clone(&core), socket, stop.clone()));
        tasks.spawn(sample_periodically(Arc::clone(&core), life.clone()));
        tracing::info!(load_balancer = name, address = %bound, "load balancer listening");
        Ok(Self {
            core,
            life,
            tasks,
            endpoint: Mutex::new(Endpoint {
                requested: listen,
                bound,
                stop,
            }),
        })
    }

    /// The address it accepts on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.endpoint().bound
    }

    /// Whether `listen` is where it already listens (as asked, or as bound).
    pub(crate) fn listens_on(&self, listen: SocketAddr) -> bool {
        let endpoint = self.endpoint();
        endpoint.requested == listen || endpoint.bound == listen
    }

    fn endpoint(&self) -> std::sync::MutexGuard<'_, Endpoint> {
        self.endpoint.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts accepting on `listen`; the old socket keeps accepting for the handover
    /// period, then stops while its open connections finish.
    pub(crate) async fn move_to(&self, listen: SocketAddr) -> Result<SocketAddr, LbError> {
        let (socket, bound) = bind(listen).await?;
        let stop = self.life.child_token();
        self.tasks
            .spawn(accept::serve(Arc::clone(&self.core), socket, stop.clone()));
        let old_stop = {
            let mut endpoint = self.endpoint();
            tracing::info!(load_balancer = %self.core.name, from = %endpoint.bound, to = %bound, "load balancer moving");
            endpoint.requested = listen;
            endpoint.bound = bound;
            std::mem::replace(&mut endpoint.stop, stop)
        };
        let handover = self.core.config.address_handover;
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(handover) => {}
                () = old_stop.cancelled() => {}
            }
            old_stop.cancel();
        });
        Ok(bound)
    }

    /// Stops accepting everywhere and waits until open connections have finished
    /// (bounded by the drain timeout).
    pub(crate) async fn stop(&self) {
        self.life.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), LbError> {
    let failed = |error: std::io::Error| LbError::Bind {
        address: listen,
        reason: error.to_string(),
    };
    let socket = TcpListener::bind(listen).await.map_err(failed)?;
    let bound = socket.local_addr().map_err(failed)?;
    Ok((socket, bound))
}

/// Closes a time-series interval of every group each sample interval, and once more
/// when the listener stops.
async fn sample_periodically(core: Arc<ListenerCore>, life: CancellationToken) {
    let period = core.config.sample_interval.max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = life.cancelled() => {
                // The last, partial interval too: a restart loses no counted request.
                core.sample(Instant::now());
                break;
            }
            _ = ticks.tick() => core.sample(Instant::now()),
        }
    }
}
