//! The server's settings, parsed once by the binary and handed down.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything `gennaker server` needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where Gennaker keeps its files (SQLite database, admin token).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The first admin's token, when chosen by the operator instead of generated.
    pub admin_token: Option<String>,
    /// Roles allowed to create applications; empty means every authenticated user, as in
    /// Spinnaker without `fiat.restrictApplicationCreation`.
    pub application_creators: Vec<String>,
}
