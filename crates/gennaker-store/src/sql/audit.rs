//! The audit log, written as a group commit.
//!
//! Every mutating API call appends an entry, so on a busy server the log's inserts
//! were one autocommit (one WAL flush on PostgreSQL) per call beside the call's own
//! commit. [`AuditWriter`] collects the entries appended concurrently and inserts them
//! with one multi-row `INSERT` (one round trip, one flush): while a batch is being
//! written, the next one gathers. Nothing waits for a batch to fill, so a lone entry is
//! written at once. Each caller still waits until its own entry is stored (or failed),
//! so an entry that [`append`](AuditWriter::append) returned is as durable as before.
//!
//! - A batch holds at most [`MAX_BATCH`] entries and at most [`MAX_QUEUED`] wait to be
//!   written; further callers wait for room.
//! - A batch that fails is written again entry by entry, so one entry the database
//!   refuses costs only its own caller an error.
//! - Ids follow the order in which entries were queued, which is also the order of their
//!   `at` times (taken when queued): the log reads in the order calls finished.
//! - The batch is written by a task of its own, so a caller that stops waiting (its
//!   future dropped) neither loses its entry nor stalls the others'.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::QueryBuilder;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Backend, WritePool, now_millis, to_text};
use crate::error::{Result, StoreError};
use crate::records::{AuditEntry, AuditQuery, NewAuditEntry};

/// Most entries one `INSERT` writes (7 bound parameters each: far below either
/// database's limit on parameters).
pub(super) const MAX_BATCH: usize = 64;
/// Most entries queued or being written; an append beyond it waits for room.
pub(super) const MAX_QUEUED: usize = 1024;

/// The columns an insert writes, in the order of [`Pending`]'s values.
const COLUMNS: &str = "INSERT INTO audit_log (at, actor, action, target, outcome, status, detail) ";

/// PostgreSQL's batch insert: one statement text whatever the batch size, so one
/// prepared statement serves every batch. `unnest` yields the rows in array order, and
/// the ids are drawn from the sequence in that order.
const POSTGRES_BATCH: &str = "INSERT INTO audit_log (at, actor, action, target, outcome, status, detail) \
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[]) \
     RETURNING id";

/// An entry waiting to be written, with the caller waiting for it.
struct Pending {
    at: i64,
    entry: NewAuditEntry,
    detail: String,
    done: oneshot::Sender<Result<AuditEntry>>,
    /// Its place in the bounded queue, given back once it is written.
    _room: OwnedSemaphorePermit,
}

/// The entries waiting, and whether a task is writing them.
#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    writing: bool,
}

/// The audit log's group-commit writer (see the module documentation); one per store,
/// shared by its clones.
pub(super) struct AuditWriter {
    backend: Backend,
    queue: Mutex<Queue>,
    room: Arc<Semaphore>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter").finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// A writer inserting into `backend`'s audit log.
    pub(super) fn new(backend: Backend) -> Arc<Self> {
        Arc::new(Self {
            backend,
            queue: Mutex::new(Queue::default()),
            room: Arc::new(Semaphore::new(MAX_QUEUED)),
        })
    }

    /// Appends `entry` and waits until it is stored.
    pub(super) async fn append(self: &Arc<Self>, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let detail = to_text(&entry.detail)?;
        let room = Arc::clone(&self.room).acquire_owned().await.map_err(|_| {
            StoreError::Database(sqlx::Error::Protocol(
                "the audit log's writer is closed".to_owned(),
            ))
        })?;
        let (done, written) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // Taken under the lock, so `at` grows with the queue's order, as ids do.
            queue.pending.push_back(Pending {
                at: now_millis(),
                entry: entry.clone(),
                detail,
                done,
                _room: room,
            });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            tokio::spawn(Arc::clone(self).write_all());
        }
        written.await.unwrap_or_else(|_| {
            Err(StoreError::Database(sqlx::Error::Protocol(
                "the audit log's writer stopped before the entry was written".to_owned(),
            )))
        })
    }

    /// Writes batches until the queue is empty.
    async fn write_all(self: Arc<Self>) {
        loop {
            let batch: Vec<Pending> = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.pending.is_empty() {
                    queue.writing = false;
                    return;
                }
                let take = queue.pending.len().min(MAX_BATCH);
                queue.pending.drain(..take).collect()
            };
            self.write_batch(batch).await;
        }
    }

    /// Writes one batch and tells each caller how its entry fared.
    async fn write_batch(&self, batch: Vec<Pending>) {
        let result = if batch.len() == 1 {
            Err(None)
        } else {
            self.insert(&batch).await.map_err(Some)
        };
        match result {
            Ok(ids) => {
                for (pending, id) in batch.into_iter().zip(ids) {
                    let written = written_entry(&pending, id);
                    let _ = pending.done.send(Ok(written));
                }
            }
            // One at a time: a single entry, or a batch the database refused (perhaps
            // for one entry of it), so that only the refused entries' callers fail.
            Err(batch_error) => {
                if let Some(err) = batch_error {
                    tracing::debug!(error = %err, entries = batch.len(), "an audit batch failed; writing its entries one by one");
                }
                for pending in batch {
                    let result = self
                        .insert(std::slice::from_ref(&pending))
                        .await
                        .and_then(|ids| {
                            ids.first()
                                .copied()
                                .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
                        })
                        .map(|id| written_entry(&pending, id));
                    let _ = pending.done.send(result);
                }
            }
        }
    }

    /// Inserts `batch` with one statement; returns the new ids in the batch's order.
    async fn insert(&self, batch: &[Pending]) -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = match &self.backend {
            Backend::Postgres(db) => {
                sqlx::query_scalar(POSTGRES_BATCH)
                    .bind(batch.iter().map(|p| p.at).collect::<Vec<_>>())
                    .bind(
                        batch
                            .iter()
                            .map(|p| p.entry.actor.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        batch
                            .iter()
                            .map(|p| p.entry.action.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        batch
                            .iter()
                            .map(|p| p.entry.target.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        batch
                            .iter()
                            .map(|p| p.entry.outcome.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(batch.iter().map(|p| p.entry.status).collect::<Vec<_>>())
                    .bind(batch.iter().map(|p| p.detail.as_str()).collect::<Vec<_>>())
                    .fetch_all(db)
                    .await?
            }
            Backend::Sqlite(db) => {
                let mut insert = QueryBuilder::new(COLUMNS);
                insert.push_values(batch, |mut row, p| {
                    row.push_bind(p.at)
                        .push_bind(p.entry.actor.as_str())
                        .push_bind(p.entry.action.as_str())
                        .push_bind(p.entry.target.as_str())
                        .push_bind(p.entry.outcome.as_str())
                        .push_bind(p.entry.status)
                        .push_bind(p.detail.as_str());
                });
                insert.push(" RETURNING id");
                // Through the write gate, as every writer of this process: queued behind
                // the engine's commits rather than in SQLite's sleeping busy handler.
                let mut tx = db.begin_write().await?;
                let ids = insert.build_query_scalar().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                ids
            }
        };
        if ids.len() != batch.len() {
            return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                "an audit insert of {} entries returned {} ids",
                batch.len(),
                ids.len()
            ))));
        }
        // Neither database promises `RETURNING`'s order, but both draw the ids in the
        // order the rows are inserted, which is the batch's.
        ids.sort_unstable();
        Ok(ids)
    }
}

/// The stored form of a written entry.
fn written_entry(pending: &Pending, id: i64) -> AuditEntry {
    let entry = &pending.entry;
    AuditEntry {
        id,
        at: pending.at,
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        outcome: entry.outcome.clone(),
        status: entry.status,
        detail: entry.detail.clone(),
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    status: i64,
    detail: String,
}

impl Backend {
    pub(super) async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = query.limit.clamp(1, 1000);
        on_db!(self, db => {
            let rows: Vec<AuditRow> = sqlx::query_as("SELECT id, at, actor, action, target, outcome, status, detail FROM audit_log WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR substr(target, 1, length($3)) = $3) ORDER BY id DESC LIMIT $4")
                .bind(query.before_id).bind(query.actor.as_deref()).bind(query.target_prefix.as_deref()).bind(limit)
                .fetch_all(db)
                .await?;
            rows.into_iter()
                .map(|row| {
                    Ok(AuditEntry {
                        id: row.id,
                        at: row.at,
                        actor: row.actor,
                        action: row.action,
                        target: row.target,
                        outcome: row.outcome,
                        status: row.status,
                        detail: serde_json::from_str(&row.detail)?,
                    })
                })
                .collect()
        })
    }
}
