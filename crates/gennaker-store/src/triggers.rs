//! What triggers remember: the events that arrived (an inbox that survives a crash),
//! each application's trigger log, and the Docker tags a registry poll has seen.
//!
//! Firing a pipeline exactly once does not rest on these tables: the execution a
//! trigger starts carries a correlation id unique per (event, pipeline), written in the
//! same transaction as the execution. The inbox only makes sure an event whose server
//! died half-way is handled again.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;

/// An event as recorded in the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEventRecord {
    /// Unique per event (`webhook:my-ci:<delivery id>`, `docker:hub:app/web:1.2@sha256:…`).
    pub event_key: String,
    /// The id shown to users (a UUID).
    pub id: String,
    /// `webhook`, `git`, `docker`, `pipeline`, `cron`, `manual`.
    pub kind: String,
    /// When it arrived (epoch ms).
    pub received_at: i64,
    /// The event, in the triggers crate's terms.
    pub document: Value,
    /// Whether every matching pipeline has been handled.
    pub done: bool,
}

/// One entry of an application's trigger log.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerLogEntry {
    /// The event's key.
    pub event_key: String,
    /// When the event arrived (epoch ms).
    pub received_at: i64,
    /// What happened, in the triggers crate's terms.
    pub entry: Value,
}

/// The triggers' tables, kept by [`SqlStore`](crate::SqlStore) on both backends.
#[async_trait]
pub trait TriggerStore: Send + Sync + std::fmt::Debug {
    /// Records a new event, claimed by its recorder until `claim_until`; returns the
    /// record already stored under the same key instead (a redelivery), changing nothing.
    async fn record_trigger_event(
        &self,
        event: &TriggerEventRecord,
        claim_until: i64,
    ) -> Result<Option<TriggerEventRecord>>;
    /// Claims up to `limit` events not done whose claim ended by `now` (their handler
    /// died), until `claim_until`, oldest first; on PostgreSQL two servers never claim
    /// the same one.
    async fn claim_trigger_events(
        &self,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<TriggerEventRecord>>;
    /// Marks an event handled.
    async fn finish_trigger_event(&self, event_key: &str) -> Result<()>;
    /// Drops handled events that arrived before `before`; returns how many.
    async fn prune_trigger_events(&self, before: i64) -> Result<u64>;
    /// Adds an entry to an application's log unless the event is logged there already
    /// (`false` then), keeping the newest `keep` entries of the application.
    async fn append_trigger_log(
        &self,
        application: &str,
        entry: &TriggerLogEntry,
        keep: i64,
    ) -> Result<bool>;
    /// An application's newest log entries, newest first.
    async fn trigger_log(&self, application: &str, limit: i64) -> Result<Vec<TriggerLogEntry>>;
    /// The tags (with digests) seen in a repository of a registry account, by tag;
    /// `None` when it was never polled.
    async fn docker_tags(
        &self,
        account: &str,
        repository: &str,
    ) -> Result<Option<Vec<(String, String)>>>;
    /// Records that a repository was polled and these tags were seen with these
    /// digests (inserted or updated).
    async fn record_docker_tags(
        &self,
        account: &str,
        repository: &str,
        tags: &[(String, String)],
        now: i64,
    ) -> Result<()>;
}
