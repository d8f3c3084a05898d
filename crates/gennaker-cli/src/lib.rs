//! gennaker-cli.
