//! The pieces of the `gennaker` binary that its benchmarks and tests share: the
//! composition root ([`wiring`]), which assembles the stage types and providers a server
//! runs.

pub mod wiring;
