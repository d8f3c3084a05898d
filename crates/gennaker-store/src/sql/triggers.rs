//! [`TriggerStore`] on SQLite and PostgreSQL: the same SQL text on both, expanded once
//! per backend by `on_db!`; only the claim's row locking differs.

use async_trait::async_trait;

use super::{Backend, SqlStore, key, to_text};
use crate::error::Result;
use crate::triggers::{TriggerEventRecord, TriggerLogEntry, TriggerStore};

const EVENT_COLUMNS: &str = "event_key, id, kind, received_at, document, state";

/// Handled events; the others are `pending`.
const DONE: &str = "done";
const PENDING: &str = "pending";

#[derive(sqlx::FromRow)]
struct EventRow {
    event_key: String,
    id: String,
    kind: String,
    received_at: i64,
    document: String,
    state: String,
}

impl EventRow {
    fn into_record(self) -> Result<TriggerEventRecord> {
        Ok(TriggerEventRecord {
            document: serde_json::from_str(&self.document)?,
            done: self.state == DONE,
            event_key: self.event_key,
            id: self.id,
            kind: self.kind,
            received_at: self.received_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct LogRow {
    event_key: String,
    received_at: i64,
    entry: String,
}

impl Backend {
    /// Locks the claimed rows against other servers' claims (PostgreSQL); a SQLite
    /// statement is atomic already.
    fn claim_lock_clause(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        }
    }
}

#[async_trait]
impl TriggerStore for SqlStore {
    async fn record_trigger_event(
        &self,
        event: &TriggerEventRecord,
        claim_until: i64,
    ) -> Result<Option<TriggerEventRecord>> {
        let document = to_text(&event.document)?;
        let state = if event.done { DONE } else { PENDING };
        let insert = "INSERT INTO trigger_events (event_key, id, kind, received_at, document, state, claim_until) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_key) DO NOTHING";
        let select = format!("SELECT {EVENT_COLUMNS} FROM trigger_events WHERE event_key = $1");
        let (inserted, existing): (u64, Option<EventRow>) = on_db!(&self.backend, db => {
            let inserted = sqlx::query(insert)
                .bind(&event.event_key)
                .bind(&event.id)
                .bind(&event.kind)
                .bind(event.received_at)
                .bind(&document)
                .bind(state)
                .bind(claim_until)
                .execute(db)
                .await?
                .rows_affected();
            let existing = if inserted == 0 {
                sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .bind(&event.event_key)
                    .fetch_optional(db)
                    .await?
            } else {
                None
            };
            (inserted, existing)
        });
        if inserted > 0 {
            return Ok(None);
        }
        existing.map(EventRow::into_record).transpose()
    }

    async fn claim_trigger_events(
        &self,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<TriggerEventRecord>> {
        let sql = format!(
            "UPDATE trigger_events SET claim_until = $2 WHERE event_key IN (\
               SELECT event_key FROM trigger_events WHERE state = '{PENDING}' AND claim_until <= $1 \
               ORDER BY received_at, event_key LIMIT $3{}) \
             RETURNING {EVENT_COLUMNS}",
            self.backend.claim_lock_clause()
        );
        let rows: Vec<EventRow> = on_db!(&self.backend, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(claim_until)
                .bind(limit)
                .fetch_all(db)
                .await?
        });
        let mut records = rows
            .into_iter()
            .map(EventRow::into_record)
            .collect::<Result<Vec<_>>>()?;
        records.sort_by(|a, b| (a.received_at, &a.event_key).cmp(&(b.received_at, &b.event_key)));
        Ok(records)
    }

    async fn finish_trigger_event(&self, event_key: &str) -> Result<()> {
        let sql = format!("UPDATE trigger_events SET state = '{DONE}' WHERE event_key = $1");
        on_db!(&self.backend, db => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_key).execute(db).await?;
        });
        Ok(())
    }

    async fn prune_trigger_events(&self, before: i64) -> Result<u64> {
        let sql = format!("DELETE FROM trigger_events WHERE state = '{DONE}' AND received_at < $1");
        Ok(on_db!(&self.backend, db => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(before)
                .execute(db)
                .await?
                .rows_affected()
        }))
    }

    async fn append_trigger_log(
        &self,
        application: &str,
        entry: &TriggerLogEntry,
        keep: i64,
    ) -> Result<bool> {
        let text = to_text(&entry.entry)?;
        let application = key(application);
        let insert = "INSERT INTO trigger_log (application_key, event_key, received_at, entry) \
                      VALUES ($1, $2, $3, $4) ON CONFLICT (application_key, event_key) DO NOTHING";
        // The newest `keep` stay; the index on (application_key, received_at) finds them.
        let prune = "DELETE FROM trigger_log WHERE application_key = $1 AND event_key NOT IN (\
                       SELECT event_key FROM trigger_log WHERE application_key = $1 \
                       ORDER BY received_at DESC, event_key DESC LIMIT $2)";
        let inserted = on_db!(&self.backend, db => {
            let inserted = sqlx::query(insert)
                .bind(&application)
                .bind(&entry.event_key)
                .bind(entry.received_at)
                .bind(&text)
                .execute(db)
                .await?
                .rows_affected();
            if inserted > 0 {
                sqlx::query(prune).bind(&application).bind(keep.max(1)).execute(db).await?;
            }
            inserted
        });
        Ok(inserted > 0)
    }

    async fn trigger_log(&self, application: &str, limit: i64) -> Result<Vec<TriggerLogEntry>> {
        let sql = "SELECT event_key, received_at, entry FROM trigger_log WHERE application_key = $1 \
                   ORDER BY received_at DESC, event_key DESC LIMIT $2";
        let rows: Vec<LogRow> = on_db!(&self.backend, db => {
            sqlx::query_as(sql)
                .bind(key(application))
                .bind(limit.max(0))
                .fetch_all(db)
                .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(TriggerLogEntry {
                    entry: serde_json::from_str(&row.entry)?,
                    event_key: row.event_key,
                    received_at: row.received_at,
                })
            })
            .collect()
    }

    async fn docker_tags(
        &self,
        account: &str,
        repository: &str,
    ) -> Result<Option<Vec<(String, String)>>> {
        let polled = "SELECT first_seen FROM trigger_docker_repositories WHERE account = $1 AND repository = $2";
        let tags = "SELECT tag, digest FROM trigger_docker_tags WHERE account = $1 AND repository = $2 ORDER BY tag";
        on_db!(&self.backend, db => {
            let first: Option<i64> = sqlx::query_scalar(polled)
                .bind(account)
                .bind(repository)
                .fetch_optional(db)
                .await?;
            if first.is_none() {
                return Ok(None);
            }
            let rows: Vec<(String, String)> = sqlx::query_as(tags)
                .bind(account)
                .bind(repository)
                .fetch_all(db)
                .await?;
            Ok(Some(rows))
        })
    }

    async fn record_docker_tags(
        &self,
        account: &str,
        repository: &str,
        tags: &[(String, String)],
        now: i64,
    ) -> Result<()> {
        let repo = "INSERT INTO trigger_docker_repositories (account, repository, first_seen) \
                    VALUES ($1, $2, $3) ON CONFLICT (account, repository) DO NOTHING";
        let tag = "INSERT INTO trigger_docker_tags (account, repository, tag, digest, seen_at) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, repository, tag) \
                   DO UPDATE SET digest = excluded.digest, seen_at = excluded.seen_at";
        on_db!(&self.backend, db => {
            let mut tx = db.begin().await?;
            sqlx::query(repo).bind(account).bind(repository).bind(now).execute(&mut *tx).await?;
            for (name, digest) in tags {
                sqlx::query(tag)
                    .bind(account)
                    .bind(repository)
                    .bind(name)
                    .bind(digest)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
