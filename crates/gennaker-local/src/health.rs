//! One health probe of an instance: `GET <path>` (any 2xx passes) or a TCP connect.
//!
//! The supervisor calls it on an interval and turns results into `Starting → Up / Down`;
//! this module only answers "did this probe pass, and if not, why".

use std::net::SocketAddr;
use std::time::Duration;

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
