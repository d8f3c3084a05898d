//! Generic infrastructure records: what a provider must remember across restarts of the
//! server (the local provider's server groups, their processes, its load balancers).
//!
//! Providers own their document formats; the store only keys them by
//! `(provider, kind, key)` and versions them, so a new kind of resource needs no
//! migration. Every write raises the version; a writer that states the version it read
//! is refused with [`StoreError::Conflict`](crate::StoreError::Conflict) when someone
//! else wrote in between, instead of overwriting their change unseen.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;

/// One stored infrastructure record.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The provider that owns it (`local`).
    pub provider: String,
    /// What it is, in the provider's terms (`serverGroup`, `loadBalancer`).
    pub kind: String,
    /// Its key within the kind (`local/shop-v001`).
    pub key: String,
    /// The provider's document.
    pub document: Value,
    /// Raised by every write; 1 after the first.
    pub version: i64,
    /// When it was last written (epoch ms).
    pub updated_at: i64,
}

/// The version a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Write whatever is there (create or overwrite).
    Any,
    /// Create only: a conflict when the record exists.
    Absent,
    /// Overwrite only the record at exactly this version: a conflict otherwise
    /// (including when it no longer exists).
    Exactly(i64),
}

/// Versioned infrastructure records, kept by [`SqlStore`](crate::SqlStore) on both
/// backends.
#[async_trait]
pub trait ResourceStore: Send + Sync + std::fmt::Debug {
    /// Reads one record.
    async fn get_resource(&self, provider: &str, kind: &str, key: &str)
    -> Result<Option<Resource>>;
    /// Lists the records of a kind whose key starts with `key_prefix` (`""`: all), by key.
    async fn list_resources(
        &self,
        provider: &str,
        kind: &str,
        key_prefix: &str,
    ) -> Result<Vec<Resource>>;
    /// Writes a record if `expected` holds, atomically with the check; returns it as
    /// stored (with its new version).
    async fn put_resource(
        &self,
        provider: &str,
        kind: &str,
        key: &str,
        document: &Value,
        expected: ExpectedVersion,
    ) -> Result<Resource>;
    /// Deletes a record; `false` when there was none.
    async fn delete_resource(&self, provider: &str, kind: &str, key: &str) -> Result<bool>;
}
