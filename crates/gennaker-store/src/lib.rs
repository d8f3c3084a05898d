//! gennaker-store.
