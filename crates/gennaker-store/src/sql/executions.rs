//! [`ExecutionStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;
use gennaker_core::ExecutionStatus;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
// Every dynamic statement here is assembled from constants of this module; user input
// only ever travels as bound parameters.
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Sqlite};

use super::{Backend, SqlStore, WritePool, key};
use crate::error::{Result, StoreError};
use crate::executions::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionStore, LeasedMessage, StepCommit,
};

/// The PostgreSQL channel a commit that enqueues messages notifies, so idle workers on
/// every server wake at once instead of polling.
pub const QUEUE_CHANNEL: &str = "gennaker_queue";

const EXECUTION_COLUMNS: &str = "id, application, pipeline_config_id, pipeline_name, status, created_at, start_time, end_time, correlation_id, version, document";

/// Statuses that count against a pipeline's concurrency limit.
const ACTIVE_STATUSES: &str = "('RUNNING', 'PAUSED', 'SUSPENDED')";

/// Wakes a worker when another server's commit enqueues messages (PostgreSQL only).
#[derive(Debug)]
pub struct QueueListener {
    listener: sqlx::postgres::PgListener,
}

impl QueueListener {
    /// Waits for the next notification; an error means the connection was lost (the
    /// caller reconnects, and re-checks the queue meanwhile).
    pub async fn recv(&mut self) -> Result<()> {
        self.listener.recv().await?;
        Ok(())
    }
}

impl SqlStore {
    /// Listens for queue notifications from every server sharing this database; `None`
    /// on SQLite, where this server is the only writer.
    pub async fn queue_listener(&self) -> Result<Option<QueueListener>> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(QUEUE_CHANNEL).await?;
                Ok(Some(QueueListener { listener }))
            }
            Backend::Sqlite(_) => Ok(None),
        }
    }

    /// Every execution document and queued message exactly as the database holds them,
    /// read with plain SQL: what a reader of the database file or a backup sees (tests
    /// check that no secret is there in clear).
    #[cfg(feature = "test-support")]
    pub async fn stored_execution_text(&self) -> Result<String> {
        on_db!(&self.backend, db => {
            let mut text: Vec<String> = sqlx::query_scalar("SELECT document FROM executions")
                .fetch_all(db)
                .await?;
            text.extend(
                sqlx::query_scalar::<_, String>("SELECT payload FROM queue_messages")
                    .fetch_all(db)
                    .await?,
            );
            Ok(text.join("\n"))
        })
    }
}

/// What the queue needs that the two databases spell differently.
trait QueueDialect {
    /// Serialises transactions on a key until commit (SQLite needs nothing: its write
    /// transactions are serial already).
    fn pipeline_lock_sql(&self) -> Option<&'static str>;
    /// Wakes other servers' workers at commit.
    fn notify_sql(&self) -> Option<&'static str>;
    /// Skips rows another transaction is claiming instead of waiting for it.
    fn claim_lock_clause(&self) -> &'static str;
    /// Serialises claims until commit (SQLite needs nothing: its write transactions are
    /// serial already).
    fn claim_serialise_sql(&self) -> Option<&'static str>;
}

impl QueueDialect for SqlitePool {
    fn pipeline_lock_sql(&self) -> Option<&'static str> {
        None
    }
    fn notify_sql(&self) -> Option<&'static str> {
        None
    }
    fn claim_lock_clause(&self) -> &'static str {
        ""
    }
    fn claim_serialise_sql(&self) -> Option<&'static str> {
        None
    }
}

impl QueueDialect for PgPool {
    fn pipeline_lock_sql(&self) -> Option<&'static str> {
        Some("SELECT pg_advisory_xact_lock(hashtext($1))")
    }
    fn notify_sql(&self) -> Option<&'static str> {
        Some(concat!("SELECT pg_notify('", "gennaker_queue", "', '')"))
    }
    fn claim_lock_clause(&self) -> &'static str {
        " FOR UPDATE OF q SKIP LOCKED"
    }
    // Row locks alone cannot keep a partition to one worker: a concurrent claim skips
    // the rows this one locked but still sees the partition's OTHER due messages, and
    // (its snapshot predating this commit) no live lease on them, so two workers would
    // lease one partition. Claims are short; taking them one at a time is the simple
    // fix. The two-key form lives apart from the one-key `pipeline_lock_sql` locks.
    fn claim_serialise_sql(&self) -> Option<&'static str> {
        Some("SELECT pg_advisory_xact_lock(0, hashtext('gennaker_queue_claim'))")
    }
}

#[derive(sqlx::FromRow)]
struct ExecutionDbRow {
    id: String,
    application: String,
    pipeline_config_id: Option<String>,
    pipeline_name: Option<String>,
    status: String,
    created_at: i64,
    start_time: Option<i64>,
    end_time: Option<i64>,
    correlation_id: Option<String>,
    version: i64,
    document: String,
}

impl TryFrom<ExecutionDbRow> for ExecutionRow {
    type Error = StoreError;

    fn try_from(row: ExecutionDbRow) -> Result<Self> {
        let Some(status) = ExecutionStatus::parse(&row.status) else {
            return Err(StoreError::UnknownStatus {
                execution: row.id,
                status: row.status,
            });
        };
        Ok(ExecutionRow {
            id: row.id,
            application: row.application,
            pipeline_config_id: row.pipeline_config_id,
            pipeline_name: row.pipeline_name,
            status,
            created_at: row.created_at,
            start_time: row.start_time,
            end_time: row.end_time,
            correlation_id: row.correlation_id,
            version: row.version,
            document: row.document,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    partition_key: String,
    payload: String,
    attempts: i32,
    deliver_at: i64,
}

impl From<MessageRow> for LeasedMessage {
    fn from(row: MessageRow) -> Self {
        LeasedMessage {
            id: row.id,
            partition: row.partition_key,
            payload: row.payload,
            attempts: row.attempts,
            deliver_at: row.deliver_at,
        }
    }
}

/// Keeps the first `partitions` partitions of `due` (ordered by due time), at most
/// `per_partition` messages each.
fn pick_partitions(due: Vec<MessageRow>, partitions: i64, per_partition: i64) -> Vec<MessageRow> {
    let mut chosen: Vec<(String, i64)> = Vec::new();
    let mut picked = Vec::new();
    for message in due {
        let room_for_new = (chosen.len() as i64) < partitions;
        match chosen.iter_mut().find(|(p, _)| *p == message.partition_key) {
            Some((_, count)) if *count < per_partition => {
                *count += 1;
                picked.push(message);
            }
            Some(_) => {}
            None if room_for_new => {
                chosen.push((message.partition_key.clone(), 1));
                picked.push(message);
            }
            None => {}
        }
    }
    picked
}

macro_rules! push_execution_filters {
    ($builder:ident, $query:ident) => {{
        $builder.push(" WHERE 1 = 1");
        if let Some(application) = &$query.application {
            $builder
                .push(" AND application_key = ")
                .push_bind(key(application));
        }
        if let Some(id) = &$query.pipeline_config_id {
            $builder
                .push(" AND pipeline_config_id = ")
                .push_bind(id.clone());
        }
        if let Some(name) = &$query.pipeline_name {
            $builder
                .push(" AND lower(pipeline_name) = ")
                .push_bind(key(name));
        }
        if !$query.statuses.is_empty() {
            $builder.push(" AND status IN (");
            let mut separated = $builder.separated(", ");
            for status in &$query.statuses {
                separated.push_bind(status.as_str());
            }
            $builder.push(")");
        }
        let order = if $query.oldest_first { "ASC" } else { "DESC" };
        $builder.push(format!(" ORDER BY created_at {order}, id {order} LIMIT "));
        $builder.push_bind($query.limit.clamp(1, 10_000));
    }};
}

#[async_trait]
impl ExecutionStore for SqlStore {
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        on_db!(&self.backend, db => {
            let row: Option<ExecutionDbRow> = sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
            row.map(ExecutionRow::try_from).transpose()
        })
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionRow>> {
        let head = format!("SELECT {EXECUTION_COLUMNS} FROM executions");
        let rows: Vec<ExecutionDbRow> = match &self.backend {
            Backend::Sqlite(db) => {
                let mut builder = QueryBuilder::<Sqlite>::new(&head);
                push_execution_filters!(builder, query);
                builder.build_query_as().fetch_all(db).await?
            }
            Backend::Postgres(db) => {
                let mut builder = QueryBuilder::<Postgres>::new(&head);
                push_execution_filters!(builder, query);
                builder.build_query_as().fetch_all(db).await?
            }
        };
        rows.into_iter().map(ExecutionRow::try_from).collect()
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<CommitOutcome> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            if let (Some(lock), Some(sql)) = (&step.pipeline_lock, db.pipeline_lock_sql()) {
                sqlx::query(sql).bind(lock).execute(&mut *tx).await?;
            }
            if let Some(guard) = &step.concurrency {
                let active: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM executions WHERE pipeline_config_id = $1 AND id <> $2 AND status IN {ACTIVE_STATUSES}")))
                    .bind(&guard.pipeline_config_id).bind(&guard.execution_id)
                    .fetch_one(&mut *tx).await?;
                if active >= guard.max_active {
                    return Ok(CommitOutcome::ConcurrencyLimited);
                }
            }
            for id in &step.acknowledged {
                let deleted = sqlx::query("DELETE FROM queue_messages WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(&step.owner)
                    .execute(&mut *tx).await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok(CommitOutcome::Stale(format!("the lease on message {id} was lost")));
                }
            }
            for write in &step.executions {
                let row = &write.row;
                match write.expected_version {
                    None => {
                        if let Some(correlation) = &row.correlation_id {
                            let existing: Option<String> = sqlx::query_scalar("SELECT id FROM executions WHERE correlation_id = $1")
                                .bind(correlation).fetch_optional(&mut *tx).await?;
                            if let Some(existing) = existing {
                                return Ok(CommitOutcome::DuplicateCorrelation(existing));
                            }
                        }
                        let inserted = sqlx::query("INSERT INTO executions (id, application_key, application, pipeline_config_id, pipeline_name, status, created_at, start_time, end_time, correlation_id, version, document) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                            .bind(&row.id).bind(key(&row.application)).bind(&row.application)
                            .bind(row.pipeline_config_id.as_deref()).bind(row.pipeline_name.as_deref())
                            .bind(row.status.as_str()).bind(row.created_at).bind(row.start_time).bind(row.end_time)
                            .bind(row.correlation_id.as_deref()).bind(row.version).bind(&row.document)
                            .execute(&mut *tx).await;
                        match inserted {
                            Ok(_) => {}
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                                return Ok(CommitOutcome::Stale(format!("execution {} already exists", row.id)));
                            }
                            Err(e) => return Err(StoreError::Database(e)),
                        }
                    }
                    Some(expected) => {
                        let updated = sqlx::query("UPDATE executions SET status = $3, start_time = $4, end_time = $5, version = $6, document = $7 WHERE id = $1 AND version = $2")
                            .bind(&row.id).bind(expected)
                            .bind(row.status.as_str()).bind(row.start_time).bind(row.end_time)
                            .bind(row.version).bind(&row.document)
                            .execute(&mut *tx).await?
                            .rows_affected();
                        if updated == 0 {
                            return Ok(CommitOutcome::Stale(format!("execution {} changed since version {expected}", row.id)));
                        }
                    }
                }
            }
            for (partition, key) in &step.remove {
                sqlx::query("DELETE FROM queue_messages WHERE partition_key = $1 AND replace_key = $2")
                    .bind(partition).bind(key)
                    .execute(&mut *tx).await?;
            }
            for message in &step.enqueue {
                sqlx::query("INSERT INTO queue_messages (partition_key, payload, deliver_at, created_at, replace_key) VALUES ($1, $2, $3, $3, $4) \
                             ON CONFLICT (partition_key, replace_key) DO UPDATE SET payload = excluded.payload, deliver_at = excluded.deliver_at, \
                             attempts = 0, lease_owner = NULL, lease_until = NULL")
                    .bind(&message.partition).bind(&message.payload).bind(message.deliver_at).bind(message.replace_key.as_deref())
                    .execute(&mut *tx).await?;
            }
            for partition in &step.wake {
                sqlx::query("UPDATE queue_messages SET deliver_at = $2 WHERE partition_key = $1 AND lease_owner IS NULL AND deliver_at > $2")
                    .bind(partition).bind(step.wake_at)
                    .execute(&mut *tx).await?;
            }
            if let Some(sql) = db.notify_sql()
                && (!step.enqueue.is_empty() || !step.wake.is_empty())
            {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(CommitOutcome::Committed)
        })
    }

    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        partitions: i64,
        per_partition: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let limit = partitions.max(1) * per_partition.max(1);
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            if let Some(sql) = db.claim_serialise_sql() {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            // A lease covers times before `lease_until`, as a message is due from
            // `deliver_at` on, so a worker woken at `next_delivery()` finds it claimable.
            // Each partition's due messages are ranked first and only its first
            // `per_partition` count against the LIMIT: otherwise one partition's backlog
            // fills the LIMIT and the others are never claimed while it lasts.
            let sql = format!(
                "SELECT q.id, q.partition_key, q.payload, q.attempts, q.deliver_at FROM queue_messages q \
                 WHERE q.id IN (SELECT r.id FROM (\
                   SELECT c.id, ROW_NUMBER() OVER (PARTITION BY c.partition_key ORDER BY c.deliver_at, c.id) AS rn FROM queue_messages c \
                   WHERE c.deliver_at <= $1 AND (c.lease_until IS NULL OR c.lease_until <= $1) \
                   AND NOT EXISTS (SELECT 1 FROM queue_messages o WHERE o.partition_key = c.partition_key AND o.lease_until > $1)\
                 ) r WHERE r.rn <= $3) \
                 ORDER BY q.deliver_at, q.id LIMIT $2{}",
                db.claim_lock_clause()
            );
            let due: Vec<MessageRow> = sqlx::query_as(AssertSqlSafe(sql)).bind(now).bind(limit).bind(per_partition.max(1)).fetch_all(&mut *tx).await?;
            let mut leased = Vec::new();
            for mut message in pick_partitions(due, partitions, per_partition) {
                sqlx::query("UPDATE queue_messages SET lease_owner = $2, lease_until = $3, attempts = attempts + 1 WHERE id = $1")
                    .bind(message.id).bind(owner).bind(lease_until)
                    .execute(&mut *tx).await?;
                message.attempts += 1;
                leased.push(LeasedMessage::from(message));
            }
            tx.commit().await?;
            Ok(leased)
        })
    }

    async fn extend_leases(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<()> {
        on_db!(&self.backend, db => {
            for id in ids {
                sqlx::query("UPDATE queue_messages SET lease_until = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(owner).bind(lease_until)
                    .execute(db).await?;
            }
            Ok(())
        })
    }

    async fn release_messages(&self, owner: &str, ids: &[i64], deliver_at: i64) -> Result<()> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            for id in ids {
                sqlx::query("UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL, deliver_at = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(owner).bind(deliver_at)
                    .execute(&mut *tx).await?;
            }
            if let Some(sql) = db.notify_sql() {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn release_all_leases(&self) -> Result<u64> {
        on_db!(&self.backend, db => {
            let released = sqlx::query("UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
                .execute(db).await?
                .rows_affected();
            Ok(released)
        })
    }

    async fn next_delivery(&self) -> Result<Option<i64>> {
        // A message waits for its own due time and for any live lease in its partition
        // (which ends when that worker commits, or when the lease expires).
        let sql = "SELECT MIN(CASE WHEN b.until IS NOT NULL AND b.until > q.deliver_at THEN b.until ELSE q.deliver_at END) \
                   FROM queue_messages q LEFT JOIN (SELECT partition_key, MAX(lease_until) AS until FROM queue_messages WHERE lease_until IS NOT NULL GROUP BY partition_key) b \
                   ON b.partition_key = q.partition_key";
        on_db!(&self.backend, db => {
            let next: Option<i64> = sqlx::query_scalar(sql).fetch_one(db).await?;
            Ok(next)
        })
    }

    async fn queue_depth(&self) -> Result<i64> {
        on_db!(&self.backend, db => {
            let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_messages").fetch_one(db).await?;
            Ok(depth)
        })
    }

    async fn partition_messages(&self, partition: &str) -> Result<Vec<LeasedMessage>> {
        on_db!(&self.backend, db => {
            let rows: Vec<MessageRow> = sqlx::query_as("SELECT id, partition_key, payload, attempts, deliver_at FROM queue_messages WHERE partition_key = $1 ORDER BY deliver_at, id")
                .bind(partition).fetch_all(db).await?;
            Ok(rows.into_iter().map(LeasedMessage::from).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, partition: &str) -> MessageRow {
        MessageRow {
            id,
            partition_key: partition.to_owned(),
            payload: String::new(),
            attempts: 0,
            deliver_at: id,
        }
    }

    #[test]
    fn picks_whole_partitions_in_due_order() {
        let due = vec![
            row(1, "a"),
            row(2, "b"),
            row(3, "a"),
            row(4, "c"),
            row(5, "a"),
        ];
        let picked: Vec<i64> = pick_partitions(due, 2, 2).iter().map(|m| m.id).collect();
        assert_eq!(picked, vec![1, 2, 3]);
    }
}
