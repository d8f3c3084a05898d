//! [`ExecutionStore`] on SQLite and PostgreSQL.

use async_trait::async_trait;
use gennaker_core::ExecutionStatus;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
// Every dynamic statement here is assembled from constants of this module; user input
// only ever travels as bound parameters.
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Sqlite};

use super::{Backend, SqlStore, WritePool, key, now_millis};
use crate::error::{Result, StoreError};
use crate::executions::{
    CommitOutcome, ExecutionQuery, ExecutionRow, ExecutionStore, LeasedMessage, NextLease,
    StepCommit,
};

/// The PostgreSQL channel a commit that enqueues messages notifies, so idle workers on
/// every server wake at once instead of polling.
pub const QUEUE_CHANNEL: &str = "gennaker_queue";

/// The PostgreSQL channel that carries a committed step's [`StepCommit::notices`] (the
/// engine's status events) to every server sharing the database, so an event stream on
/// one server follows executions that another server's workers run.
pub const EVENTS_CHANNEL: &str = "gennaker_events";

/// The longest notice PostgreSQL accepts is 7999 bytes; a longer one is not sent (and
/// the step still commits).
pub const MAX_NOTICE_BYTES: usize = 7_999;

const EXECUTION_COLUMNS: &str = "id, application, pipeline_config_id, pipeline_name, status, created_at, start_time, end_time, correlation_id, version, document";

/// Statuses that count against a pipeline's concurrency limit.
const ACTIVE_STATUSES: &str = "('RUNNING', 'PAUSED', 'SUSPENDED')";

/// What another server's commit announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Messages were queued or released: an idle worker should look at the queue.
    Queue,
    /// One of a step's [`StepCommit::notices`], as it was committed.
    Notice(String),
    /// The store was closed: nothing more will come (the listener must be dropped for
    /// the close to finish, as it holds one of the store's connections).
    Closed,
}

/// Hears what the commits of every server sharing the database announce (PostgreSQL
/// only): queued work ([`QUEUE_CHANNEL`]) and status events ([`EVENTS_CHANNEL`]).
#[derive(Debug)]
pub struct QueueListener {
    listener: sqlx::postgres::PgListener,
}

impl QueueListener {
    /// Waits for the next notification. A lost connection is re-opened (notifications
    /// sent meanwhile are lost); an error means it could not be, and the next call tries
    /// again.
    pub async fn recv(&mut self) -> Result<Notification> {
        let notification = match self.listener.recv().await {
            Ok(notification) => notification,
            Err(sqlx::Error::PoolClosed) => return Ok(Notification::Closed),
            Err(e) => return Err(e.into()),
        };
        Ok(if notification.channel() == EVENTS_CHANNEL {
            Notification::Notice(notification.payload().to_owned())
        } else {
            Notification::Queue
        })
    }
}

impl SqlStore {
    /// Listens for the queue and event notifications of every server sharing this
    /// database; `None` on SQLite, where this server is the only writer.
    pub async fn queue_listener(&self) -> Result<Option<QueueListener>> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen_all([QUEUE_CHANNEL, EVENTS_CHANNEL]).await?;
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
    /// Sends one notice (`$1`) to every server at commit.
    fn notice_sql(&self) -> Option<&'static str>;
    /// Skips partitions another transaction is claiming instead of waiting for it.
    fn claim_lock_clause(&self) -> &'static str;
    /// Reads a partition's row and locks it until commit.
    fn lock_partition_sql(&self) -> &'static str;
}

impl QueueDialect for SqlitePool {
    fn pipeline_lock_sql(&self) -> Option<&'static str> {
        None
    }
    fn notify_sql(&self) -> Option<&'static str> {
        None
    }
    fn notice_sql(&self) -> Option<&'static str> {
        None
    }
    fn claim_lock_clause(&self) -> &'static str {
        ""
    }
    fn lock_partition_sql(&self) -> &'static str {
        "SELECT partition_key FROM queue_partitions WHERE partition_key = $1"
    }
}

impl QueueDialect for PgPool {
    fn pipeline_lock_sql(&self) -> Option<&'static str> {
        Some("SELECT pg_advisory_xact_lock(hashtext($1))")
    }
    fn notify_sql(&self) -> Option<&'static str> {
        Some(concat!("SELECT pg_notify('", "gennaker_queue", "', '')"))
    }
    fn notice_sql(&self) -> Option<&'static str> {
        Some(concat!("SELECT pg_notify('", "gennaker_events", "', $1)"))
    }
    // A claim that finds a partition's row locked moves on to the next partition; one
    // whose row changed since its snapshot re-reads it once locked, and drops it when
    // it is no longer ready (READ COMMITTED re-checks the WHERE clause on the new
    // version), so two workers never lease one partition.
    fn claim_lock_clause(&self) -> &'static str {
        " FOR UPDATE SKIP LOCKED"
    }
    fn lock_partition_sql(&self) -> &'static str {
        "SELECT partition_key FROM queue_partitions WHERE partition_key = $1 FOR UPDATE"
    }
}

// The partition table's upkeep. Every transaction that changes a partition's messages
// first locks the partition's row (creating it when it adds the first message), in key
// order so that two transactions never wait on each other in a circle, and recomputes
// the row in a LATER statement: on PostgreSQL each statement reads what was committed
// when it began, so a statement issued after the lock sees the previous holder's leases.

/// Creates a partition's row, or locks the existing one until commit, and returns its
/// tenant (an existing partition keeps the one it was created for) and its `ready_at`.
/// A new row (`ready_at` = `$3`, never a real time) is recomputed before its
/// transaction commits; till then it is never ready.
const UPSERT_PARTITION: &str = "INSERT INTO queue_partitions (partition_key, tenant, ready_at) VALUES ($1, $2, $3) \
                                ON CONFLICT (partition_key) DO UPDATE SET tenant = queue_partitions.tenant \
                                RETURNING tenant, ready_at";

/// Adds a tenant (least recently served of all, as it never was). Tenants stay: one
/// row per user who has started an execution, which bounds a claim's walk over them.
const ENSURE_TENANT: &str =
    "INSERT INTO queue_tenants (tenant, served_seq) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING";

/// Drops a partition's row once its last message is gone.
pub(super) const DROP_EMPTY_PARTITION: &str = "DELETE FROM queue_partitions WHERE partition_key = $1 \
                                    AND NOT EXISTS (SELECT 1 FROM queue_messages WHERE partition_key = $1)";

/// A partition is ready at the later of its earliest due time and its latest lease
/// (expired leases included: they lie in the past, so they hold nothing up). Both are
/// read from an index on (partition_key, …).
pub(super) const REFRESH_PARTITION: &str = "UPDATE queue_partitions SET ready_at = (\
                                   SELECT CASE WHEN l.until > d.due THEN l.until ELSE d.due END FROM \
                                   (SELECT MIN(deliver_at) AS due FROM queue_messages WHERE partition_key = $1) d, \
                                   (SELECT MAX(lease_until) AS until FROM queue_messages WHERE partition_key = $1) l\
                                 ) WHERE partition_key = $1";

/// Some partition ready at `$1`, if any.
const ANY_READY: &str = "SELECT partition_key FROM queue_partitions WHERE ready_at <= $1 LIMIT 1";

/// The tenants with a partition ready at `$1`, least recently served first.
const READY_TENANTS: &str = "SELECT t.tenant, t.served_seq FROM queue_tenants t \
                             WHERE EXISTS (SELECT 1 FROM queue_partitions p WHERE p.tenant = t.tenant AND p.ready_at <= $1) \
                             ORDER BY t.served_seq, t.tenant";

/// Leases a partition's first `$5` messages due at `$2`. Its row is locked and ready,
/// so no lease on its messages is live.
const LEASE_PARTITION: &str = "UPDATE queue_messages SET lease_owner = $3, lease_until = $4, attempts = attempts + 1 \
                               WHERE id IN (SELECT id FROM queue_messages WHERE partition_key = $1 AND deliver_at <= $2 \
                                            ORDER BY deliver_at, id LIMIT $5) \
                               RETURNING id, partition_key, payload, attempts, deliver_at";

/// Leases a partition's first `$5` messages due at `$2` to `$3` until `$4`, unless a
/// lease of another worker in it is live: the worker that just acknowledged messages
/// of the partition carries on with it.
pub(super) const CARRY_PARTITION: &str = "UPDATE queue_messages SET lease_owner = $3, lease_until = $4, attempts = attempts + 1 \
                               WHERE id IN (SELECT id FROM queue_messages WHERE partition_key = $1 AND deliver_at <= $2 \
                                            ORDER BY deliver_at, id LIMIT $5) \
                               AND NOT EXISTS (SELECT 1 FROM queue_messages WHERE partition_key = $1 \
                                               AND lease_until > $2 AND lease_owner <> $3) \
                               RETURNING id, partition_key, payload, attempts, deliver_at";

/// Locks the partitions a transaction changes (partition → `Some(tenant)` for those
/// receiving messages, `None` for the others), in key order, creating missing ones that
/// receive messages and skipping missing ones that do not (they have no messages to
/// change). Returns those locked.
macro_rules! lock_partitions {
    ($db:ident, $tx:ident, $partitions:expr) => {{
        let mut locked = std::collections::BTreeSet::new();
        let mut ensured = std::collections::BTreeSet::new();
        for (partition, tenant) in $partitions {
            match tenant {
                Some(tenant) => {
                    let (tenant, ready_at): (String, i64) = sqlx::query_as(UPSERT_PARTITION)
                        .bind(partition)
                        .bind(tenant)
                        .bind(i64::MAX)
                        .fetch_one(&mut *$tx)
                        .await?;
                    // An existing partition's tenant was added with it (tenants stay).
                    let created = ready_at == i64::MAX;
                    if created && ensured.insert(tenant.clone()) {
                        sqlx::query(ENSURE_TENANT)
                            .bind(tenant)
                            .execute(&mut *$tx)
                            .await?;
                    }
                    locked.insert(partition.clone());
                }
                None => {
                    let found: Option<String> = sqlx::query_scalar($db.lock_partition_sql())
                        .bind(partition)
                        .fetch_optional(&mut *$tx)
                        .await?;
                    if found.is_some() {
                        locked.insert(partition.clone());
                    }
                }
            }
        }
        locked
    }};
}

/// Recomputes the rows of partitions this transaction locked and changed; those in
/// `$emptied` may have lost their last message, and then lose their row.
macro_rules! refresh_partitions {
    ($tx:ident, $partitions:expr) => {
        refresh_partitions!(
            $tx,
            $partitions,
            &std::collections::BTreeSet::<String>::new()
        )
    };
    ($tx:ident, $partitions:expr, $emptied:expr) => {{
        for partition in $partitions {
            if $emptied.contains(partition) {
                sqlx::query(DROP_EMPTY_PARTITION)
                    .bind(partition)
                    .execute(&mut *$tx)
                    .await?;
            }
            sqlx::query(REFRESH_PARTITION)
                .bind(partition)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// The partitions of the messages `ids` that `owner` holds, in key order.
macro_rules! partitions_held {
    ($tx:ident, $owner:expr, $ids:expr) => {{
        let mut partitions = std::collections::BTreeMap::new();
        for id in $ids {
            let partition: Option<String> = sqlx::query_scalar(
                "SELECT partition_key FROM queue_messages WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind($owner)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some(partition) = partition {
                partitions.insert(partition, None::<String>);
            }
        }
        partitions
    }};
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
pub(super) struct MessageRow {
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

/// An execution's trigger type, read from its document (the engine always sets one;
/// `manual` for a document without).
const SQLITE_TRIGGER_TYPE: &str = "COALESCE(json_extract(document, '$.trigger.type'), 'manual')";
/// The same on PostgreSQL, where documents are text too.
const POSTGRES_TRIGGER_TYPE: &str = "COALESCE(document::jsonb #>> '{trigger,type}', 'manual')";

macro_rules! push_execution_filters {
    ($builder:ident, $query:ident, $trigger_type:expr) => {{
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
        if let Some(kind) = &$query.trigger_type {
            $builder
                .push(format!(" AND {} = ", $trigger_type))
                .push_bind(kind.clone());
        }
        if let Some(after) = $query.created_after {
            $builder.push(" AND created_at >= ").push_bind(after);
        }
        if let Some(before) = $query.created_before {
            $builder.push(" AND created_at < ").push_bind(before);
        }
        let order = if $query.oldest_first { "ASC" } else { "DESC" };
        $builder.push(format!(" ORDER BY created_at {order}, id {order} LIMIT "));
        $builder.push_bind($query.limit.clamp(1, 10_000));
    }};
}

impl SqlStore {
    /// Commits `step` and then, when `next` names a partition whose messages the step
    /// acknowledged, leases its due messages to `step.owner`.
    ///
    /// A step that neither takes the pipeline lock nor checks concurrency nor queues
    /// notifications (every step of a queue hop) is sent as one batch: one call of
    /// `gennaker_commit_step` on PostgreSQL (if smaller than
    /// [`super::batched::MAX_CALL_BYTES`]), one multi-statement text on SQLite (see
    /// [`super::batched`]). The others send their statements one by one.
    async fn commit_leasing(
        &self,
        step: &StepCommit,
        next: Option<&NextLease>,
    ) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
        let batched = step.pipeline_lock.is_none()
            && step.concurrency.is_none()
            && step.notifications.is_empty();
        match &self.backend {
            Backend::Sqlite(db) if batched => super::batched::sqlite(db, step, next).await,
            Backend::Postgres(db)
                if batched
                    && super::batched::call_bytes(step) <= super::batched::MAX_CALL_BYTES =>
            {
                super::batched::postgres(db, step, next).await
            }
            _ => self.commit_statements(step, next).await,
        }
    }

    /// [`commit_leasing`](Self::commit_leasing), one statement at a time.
    async fn commit_statements(
        &self,
        step: &StepCommit,
        next: Option<&NextLease>,
    ) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
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
                    return Ok((CommitOutcome::ConcurrencyLimited, Vec::new()));
                }
            }
            // Every partition this step changes, with the tenant of those it adds to.
            let mut partitions = std::collections::BTreeMap::<String, Option<String>>::new();
            // Those that may lose messages (acknowledged or removed).
            let mut emptied = std::collections::BTreeSet::<String>::new();
            // Those whose messages this step acknowledged.
            let mut acknowledged_in = std::collections::BTreeSet::<String>::new();
            // In chunks, well below either database's limit on bound parameters.
            for chunk in step.acknowledged.chunks(500) {
                let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = format!("SELECT DISTINCT partition_key FROM queue_messages WHERE id IN ({})", placeholders.join(", "));
                let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                for partition in query.fetch_all(&mut *tx).await? {
                    partitions.entry(partition.clone()).or_default();
                    emptied.insert(partition.clone());
                    acknowledged_in.insert(partition);
                }
            }
            for (partition, _) in &step.remove {
                partitions.entry(partition.clone()).or_default();
                emptied.insert(partition.clone());
            }
            for partition in &step.wake {
                partitions.entry(partition.clone()).or_default();
            }
            for message in &step.enqueue {
                let tenant = partitions.entry(message.partition.clone()).or_default();
                if tenant.as_deref().is_none_or(str::is_empty) {
                    *tenant = Some(message.tenant.clone().unwrap_or_default());
                }
            }
            let locked = lock_partitions!(db, tx, &partitions);
            for id in &step.acknowledged {
                let deleted = sqlx::query("DELETE FROM queue_messages WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(&step.owner)
                    .execute(&mut *tx).await?
                    .rows_affected();
                if deleted == 0 {
                    return Ok((CommitOutcome::Stale(format!("the lease on message {id} was lost")), Vec::new()));
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
                                return Ok((CommitOutcome::DuplicateCorrelation(existing), Vec::new()));
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
                                return Ok((CommitOutcome::Stale(format!("execution {} already exists", row.id)), Vec::new()));
                            }
                            Err(e) => return Err(StoreError::from(e)),
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
                            return Ok((CommitOutcome::Stale(format!("execution {} changed since version {expected}", row.id)), Vec::new()));
                        }
                    }
                }
            }
            // A partition that had no row has no messages to drop or wake.
            for (partition, key) in step.remove.iter().filter(|(p, _)| locked.contains(p)) {
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
            for partition in step.wake.iter().filter(|p| locked.contains(*p)) {
                sqlx::query("UPDATE queue_messages SET deliver_at = $2 WHERE partition_key = $1 AND lease_owner IS NULL AND deliver_at > $2")
                    .bind(partition).bind(step.wake_at)
                    .execute(&mut *tx).await?;
            }
            if !step.notifications.is_empty() {
                let now = now_millis();
                for notification in &step.notifications {
                    super::notifications::insert_notification!(&mut *tx, notification, now);
                }
            }
            // Carrying on needs no claim: the step's acknowledged messages prove this
            // worker held the partition (a lease taken over would have made the step
            // stale), and the statement itself checks that no other lease is live.
            let mut leased: Vec<LeasedMessage> = Vec::new();
            if let Some(next) = next.filter(|n| acknowledged_in.contains(&n.partition)) {
                let rows: Vec<MessageRow> = sqlx::query_as(CARRY_PARTITION)
                    .bind(&next.partition).bind(next.now).bind(&step.owner).bind(next.lease_until).bind(next.limit.max(1))
                    .fetch_all(&mut *tx).await?;
                leased.extend(rows.into_iter().map(LeasedMessage::from));
                leased.sort_by_key(|m| (m.deliver_at, m.id));
            }
            // A partition that received or kept messages is not empty.
            emptied.retain(|p| !step.enqueue.iter().any(|m| &m.partition == p) && !leased.iter().any(|m| &m.partition == p));
            refresh_partitions!(tx, &locked, &emptied);
            // Other servers' idle workers need waking only for work this worker did not
            // take up itself.
            let others_have_work = !step.wake.is_empty()
                || step.enqueue.iter().any(|m| !leased.iter().any(|l| l.partition == m.partition))
                || step.enqueue.len() > leased.len();
            if let Some(sql) = db.notify_sql()
                && others_have_work
            {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            if let Some(sql) = db.notice_sql() {
                // Sent only if the step commits, in commit order.
                for notice in step.notices.iter().filter(|n| n.len() <= MAX_NOTICE_BYTES) {
                    sqlx::query(sql).bind(notice).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok((CommitOutcome::Committed, leased))
        })
    }
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
                push_execution_filters!(builder, query, SQLITE_TRIGGER_TYPE);
                builder.build_query_as().fetch_all(db).await?
            }
            Backend::Postgres(db) => {
                let mut builder = QueryBuilder::<Postgres>::new(&head);
                push_execution_filters!(builder, query, POSTGRES_TRIGGER_TYPE);
                builder.build_query_as().fetch_all(db).await?
            }
        };
        rows.into_iter().map(ExecutionRow::try_from).collect()
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<CommitOutcome> {
        Ok(self.commit_leasing(step, None).await?.0)
    }

    async fn commit_step_and_lease(
        &self,
        step: &StepCommit,
        next: &NextLease,
    ) -> Result<(CommitOutcome, Vec<LeasedMessage>)> {
        self.commit_leasing(step, Some(next)).await
    }

    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        partitions: i64,
        per_partition: i64,
    ) -> Result<Vec<LeasedMessage>> {
        let wanted = usize::try_from(partitions.max(1)).unwrap_or(usize::MAX);
        let per_partition = per_partition.max(1);
        if let Backend::Postgres(db) = &self.backend {
            // The same statements in one round trip (`gennaker_claim`, migration 0014).
            return super::batched::postgres_claim(
                db,
                owner,
                now,
                lease_until,
                partitions,
                per_partition,
            )
            .await;
        }
        on_db!(&self.backend, db => {
            // Idle workers ask often; when nothing is ready they need no write lock
            // (which on SQLite would queue them with every other writer).
            let any_ready: Option<String> = sqlx::query_scalar(ANY_READY)
                .bind(now).fetch_optional(db).await?;
            if any_ready.is_none() {
                return Ok(Vec::new());
            }
            let mut tx = db.begin_write().await?;
            // A lease covers times before `lease_until`, as a message is due from
            // `deliver_at` on, so a worker woken at `next_delivery()` finds it claimable.
            let ready_tenants: Vec<(String, i64)> = sqlx::query_as(READY_TENANTS).bind(now).fetch_all(&mut *tx).await?;
            // A tenant alone in the line that was served before already ranks behind
            // any newcomer (they start at 0), and there is no one else to order it
            // against: its row is left alone, so concurrent claims (other servers) do
            // not queue on it. The order among several is kept exactly.
            let keep_line = ready_tenants.len() > 1 || ready_tenants.iter().any(|(_, seq)| *seq == 0);
            let tenants: Vec<String> = ready_tenants.into_iter().map(|(tenant, _)| tenant).collect();
            let pick = format!(
                "SELECT partition_key FROM queue_partitions WHERE tenant = $1 AND ready_at <= $2 \
                 ORDER BY ready_at, partition_key LIMIT $3{}",
                db.claim_lock_clause()
            );
            let mut chosen: Vec<String> = Vec::new();
            let mut served: Vec<String> = Vec::new();
            let mut leased: Vec<LeasedMessage> = Vec::new();
            // One partition per tenant in turn, then (when a worker asks for several)
            // the rest from the same tenants in the same order.
            for round in 0..2 {
                for tenant in &tenants {
                    let room = wanted - chosen.len();
                    if room == 0 {
                        break;
                    }
                    let take = if round == 0 { 1 } else { room };
                    // Partitions chosen in round one are leased, hence not ready; asking
                    // for as many more keeps a lease that ended already from crowding
                    // out the others.
                    let limit = i64::try_from(take + chosen.len()).unwrap_or(i64::MAX);
                    let ready: Vec<String> = sqlx::query_scalar(AssertSqlSafe(pick.as_str()))
                        .bind(tenant).bind(now).bind(limit)
                        .fetch_all(&mut *tx).await?;
                    let fresh: Vec<String> = ready.into_iter().filter(|p| !chosen.contains(p)).take(take).collect();
                    for partition in fresh {
                        let rows: Vec<MessageRow> = sqlx::query_as(LEASE_PARTITION)
                            .bind(&partition).bind(now).bind(owner).bind(lease_until).bind(per_partition)
                            .fetch_all(&mut *tx).await?;
                        leased.extend(rows.into_iter().map(LeasedMessage::from));
                        refresh_partitions!(tx, std::iter::once(&partition));
                        chosen.push(partition);
                        if !served.contains(tenant) {
                            served.push(tenant.clone());
                        }
                    }
                }
                if chosen.len() >= wanted {
                    break;
                }
            }
            if keep_line && !served.is_empty() {
                // The tenants served go to the back of the line, in the order served;
                // rows are written in key order so concurrent claims cannot deadlock.
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(served_seq), 0) + 1 FROM queue_tenants")
                    .fetch_one(&mut *tx).await?;
                let mut order: Vec<(&String, i64)> = served.iter().zip(next..).collect();
                order.sort();
                for (tenant, seq) in order {
                    sqlx::query("UPDATE queue_tenants SET served_seq = $2 WHERE tenant = $1")
                        .bind(tenant).bind(seq)
                        .execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            leased.sort_by_key(|m| (m.deliver_at, m.id));
            Ok(leased)
        })
    }

    async fn extend_leases(&self, owner: &str, ids: &[i64], lease_until: i64) -> Result<()> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let partitions = partitions_held!(tx, owner, ids);
            let locked = lock_partitions!(db, tx, &partitions);
            for id in ids {
                sqlx::query("UPDATE queue_messages SET lease_until = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(owner).bind(lease_until)
                    .execute(&mut *tx).await?;
            }
            refresh_partitions!(tx, &locked);
            tx.commit().await?;
            Ok(())
        })
    }

    async fn release_messages(&self, owner: &str, ids: &[i64], deliver_at: i64) -> Result<()> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let partitions = partitions_held!(tx, owner, ids);
            let locked = lock_partitions!(db, tx, &partitions);
            for id in ids {
                sqlx::query("UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL, deliver_at = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id).bind(owner).bind(deliver_at)
                    .execute(&mut *tx).await?;
            }
            refresh_partitions!(tx, &locked);
            if let Some(sql) = db.notify_sql() {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn release_all_leases(&self) -> Result<u64> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let released = sqlx::query("UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL")
                .execute(&mut *tx).await?
                .rows_affected();
            // With no lease left, every partition is ready at its earliest due time.
            sqlx::query("UPDATE queue_partitions SET ready_at = (SELECT MIN(m.deliver_at) FROM queue_messages m WHERE m.partition_key = queue_partitions.partition_key) \
                         WHERE EXISTS (SELECT 1 FROM queue_messages m WHERE m.partition_key = queue_partitions.partition_key)")
                .execute(&mut *tx).await?;
            sqlx::query("DELETE FROM queue_partitions WHERE NOT EXISTS (SELECT 1 FROM queue_messages m WHERE m.partition_key = queue_partitions.partition_key)")
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(released)
        })
    }

    async fn next_delivery(&self) -> Result<Option<i64>> {
        // A partition's row holds when it becomes claimable: its earliest due time, or
        // the end of a live lease in it (when that worker commits, or the lease expires).
        on_db!(&self.backend, db => {
            let next: Option<i64> = sqlx::query_scalar("SELECT MIN(ready_at) FROM queue_partitions").fetch_one(db).await?;
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
    //! The claim's statements stay index lookups however long the queue grows.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::executions::NewMessage;
    use crate::testing::{TestBackend, TestDatabase};

    /// Every statement a claim, an acknowledgement and `next_delivery` run, with
    /// sample parameters ($1 a partition or a time, then whatever each needs).
    fn statements(lock_clause: &str) -> Vec<(String, Vec<&'static str>)> {
        let pick = format!(
            "SELECT partition_key FROM queue_partitions WHERE tenant = $1 AND ready_at <= $2 ORDER BY ready_at, partition_key LIMIT $3{lock_clause}"
        );
        vec![
            (ANY_READY.to_owned(), vec!["t:500"]),
            (READY_TENANTS.to_owned(), vec!["t:500"]),
            (pick, vec!["s:flood", "t:500", "t:1"]),
            (
                LEASE_PARTITION.to_owned(),
                vec!["s:f0001", "t:500", "s:w1", "t:900", "t:64"],
            ),
            (
                CARRY_PARTITION.to_owned(),
                vec!["s:f0001", "t:500", "s:w1", "t:900", "t:64"],
            ),
            (REFRESH_PARTITION.to_owned(), vec!["s:f0001"]),
            (DROP_EMPTY_PARTITION.to_owned(), vec!["s:f0001"]),
            (
                "SELECT MIN(ready_at) FROM queue_partitions".to_owned(),
                vec![],
            ),
        ]
    }

    /// Fills the queue with 20,000 future messages over 2,000 partitions.
    async fn fill(store: &SqlStore) {
        for chunk in 0..4 {
            let messages: Vec<NewMessage> = (0..5_000)
                .map(|i| {
                    let n = chunk * 5_000 + i;
                    NewMessage {
                        partition: format!("f{:04}", n % 2_000),
                        payload: "later".to_owned(),
                        deliver_at: 1_000_000 + n,
                        replace_key: None,
                        tenant: Some(format!("user{}", n % 20)),
                    }
                })
                .collect();
            let step = StepCommit {
                enqueue: messages,
                ..StepCommit::default()
            };
            assert_eq!(
                store.commit_step(&step).await.unwrap(),
                CommitOutcome::Committed
            );
        }
    }

    macro_rules! bind_samples {
        ($query:expr, $params:expr) => {{
            let mut query = $query;
            for param in $params {
                query = match param.split_once(':') {
                    Some(("t", n)) => query.bind(n.parse::<i64>().unwrap()),
                    Some((_, s)) => query.bind(s),
                    None => panic!("bad sample {param}"),
                };
            }
            query
        }};
    }

    #[tokio::test]
    async fn sqlite_claim_plans_use_indexes() {
        let (_db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
        fill(&store).await;
        let Backend::Sqlite(db) = &store.backend else {
            panic!("not SQLite")
        };
        sqlx::query("ANALYZE").execute(db).await.unwrap();
        for (sql, params) in statements(db.claim_lock_clause()) {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let rows: Vec<(i64, i64, i64, String)> =
                bind_samples!(sqlx::query_as(AssertSqlSafe(explain)), &params)
                    .fetch_all(db)
                    .await
                    .unwrap();
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            // A full SCAN of the messages or partitions would grow with the queue (the
            // tenants are walked in turn order by design: one row per user; `d` and `l`
            // are one-row subquery results).
            for step in &plan {
                let table = step
                    .strip_prefix("SCAN ")
                    .and_then(|rest| rest.split(' ').next());
                let full_scan = matches!(
                    table,
                    Some("queue_messages" | "queue_partitions" | "m" | "p" | "q")
                );
                assert!(!full_scan, "{sql}\nscans: {plan:?}");
                assert!(!step.contains("USE TEMP B-TREE"), "{sql}\nsorts: {plan:?}");
            }
        }
    }

    #[tokio::test]
    async fn postgres_claim_plans_use_indexes() {
        let (_db, store) = TestDatabase::store(TestBackend::Postgres).await.unwrap();
        fill(&store).await;
        let Backend::Postgres(db) = &store.backend else {
            panic!("not PostgreSQL")
        };
        sqlx::query("ANALYZE").execute(db).await.unwrap();
        for (sql, params) in statements(db.claim_lock_clause()) {
            let explain = format!("EXPLAIN {sql}");
            let rows: Vec<String> =
                bind_samples!(sqlx::query_scalar(AssertSqlSafe(explain)), &params)
                    .fetch_all(db)
                    .await
                    .unwrap();
            let plan = rows.join("\n");
            assert!(
                !plan.contains("Seq Scan on queue_messages"),
                "{sql}\n{plan}"
            );
            assert!(
                !plan.contains("Seq Scan on queue_partitions"),
                "{sql}\n{plan}"
            );
        }
        store.close().await;
    }
}
