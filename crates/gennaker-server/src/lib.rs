//! gennaker-server.
