//! Gennaker's domain model.
