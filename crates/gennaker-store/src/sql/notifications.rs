//! [`NotificationStore`] on SQLite and PostgreSQL, one SQL text for both.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;

use super::{Backend, SqlStore, WritePool, now_millis};
use crate::error::{Result, StoreError};
use crate::notifications::{
    DeliveryOutcome, NewNotification, NotificationRecord, NotificationStatus, NotificationStore,
};

/// Inserts one notification; an existing dedupe key wins (`$1`…`$10`).
pub(super) const INSERT_NOTIFICATION: &str = "INSERT INTO notifications \
     (dedupe_key, execution_id, stage_id, event, kind, document, status, attempts, \
      next_attempt_at, last_error, created_at, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11) \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// Binds a [`NewNotification`] to [`INSERT_NOTIFICATION`] and runs it on `$executor`;
/// evaluates to the rows inserted (0 or 1).
macro_rules! insert_notification {
    ($executor:expr, $notification:expr, $now:expr) => {{
        let n: &$crate::notifications::NewNotification = $notification;
        let status = match n.skipped {
            Some(_) => $crate::notifications::NotificationStatus::Skipped,
            None => $crate::notifications::NotificationStatus::Pending,
        };
        sqlx::query($crate::sql::notifications::INSERT_NOTIFICATION)
            .bind(&n.dedupe_key)
            .bind(&n.execution_id)
            .bind(n.stage_id.as_deref())
            .bind(&n.event)
            .bind(&n.kind)
            .bind(&n.document)
            .bind(status.as_str())
            .bind(n.deliver_at)
            .bind(n.skipped.as_deref())
            .bind($now)
            .bind(n.skipped.as_ref().map(|_| $now))
            .execute($executor)
            .await?
            .rows_affected()
    }};
}
pub(super) use insert_notification;

const COLUMNS: &str = "id, dedupe_key, execution_id, stage_id, event, kind, document, status, \
     attempts, next_attempt_at, last_error, created_at, finished_at";

/// Pending and claimable at `$1`.
const CLAIMABLE: &str = "status = 'PENDING' AND next_attempt_at <= $1 \
     AND (lease_until IS NULL OR lease_until <= $1)";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    dedupe_key: String,
    execution_id: String,
    stage_id: Option<String>,
    event: String,
    kind: String,
    document: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<Row> for NotificationRecord {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self> {
        let status = NotificationStatus::parse(&row.status).ok_or_else(|| {
            StoreError::UnknownNotificationStatus {
                id: row.id,
                status: row.status.clone(),
            }
        })?;
        Ok(NotificationRecord {
            id: row.id,
            dedupe_key: row.dedupe_key,
            execution_id: row.execution_id,
            stage_id: row.stage_id,
            event: row.event,
            kind: row.kind,
            document: row.document,
            status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            finished_at: row.finished_at,
        })
    }
}

impl Backend {
    /// PostgreSQL skips rows another claim holds; SQLite's write lock serialises claims.
    fn skip_locked(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        }
    }
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn enqueue_notifications(&self, notifications: &[NewNotification]) -> Result<u64> {
        let now = now_millis();
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let mut added = 0;
            for notification in notifications {
                added += insert_notification!(&mut *tx, notification, now);
            }
            tx.commit().await?;
            Ok(added)
        })
    }

    async fn claim_notifications(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>> {
        let pick = format!(
            "SELECT id FROM notifications WHERE {CLAIMABLE} ORDER BY next_attempt_at, id LIMIT $2{}",
            self.backend.skip_locked()
        );
        let lease = format!(
            "UPDATE notifications SET lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let rows: Vec<Row> = on_db!(&self.backend, db => {
            // Idle workers ask often: no write lock unless something is due.
            let any: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT id FROM notifications WHERE {CLAIMABLE} LIMIT 1"
            )))
            .bind(now)
            .fetch_optional(db)
            .await?;
            if any.is_none() {
                return Ok(Vec::new());
            }
            let mut tx = db.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(pick))
                .bind(now)
                .bind(limit.clamp(1, 1000))
                .fetch_all(&mut *tx)
                .await?;
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                let row: Row = sqlx::query_as(AssertSqlSafe(lease.clone()))
                    .bind(id)
                    .bind(owner)
                    .bind(lease_until)
                    .fetch_one(&mut *tx)
                    .await?;
                rows.push(row);
            }
            tx.commit().await?;
            rows
        });
        rows.into_iter().map(NotificationRecord::try_from).collect()
    }

    async fn finish_notification(
        &self,
        id: i64,
        owner: &str,
        now: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<bool> {
        let (status, next, error, finished) = match outcome {
            DeliveryOutcome::Delivered => (NotificationStatus::Delivered, now, None, Some(now)),
            DeliveryOutcome::Retry { at, error } => {
                (NotificationStatus::Pending, *at, Some(error.as_str()), None)
            }
            DeliveryOutcome::Failed { error } => (
                NotificationStatus::Failed,
                now,
                Some(error.as_str()),
                Some(now),
            ),
        };
        let sql = "UPDATE notifications SET status = $3, next_attempt_at = $4, \
                   last_error = COALESCE($5, last_error), finished_at = $6, \
                   lease_owner = NULL, lease_until = NULL \
                   WHERE id = $1 AND lease_owner = $2 AND status = 'PENDING'";
        let updated = on_db!(&self.backend, db => {
            sqlx::query(sql)
                .bind(id)
                .bind(owner)
                .bind(status.as_str())
                .bind(next)
                .bind(error)
                .bind(finished)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(updated > 0)
    }

    async fn execution_notifications(&self, execution_id: &str) -> Result<Vec<NotificationRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE execution_id = $1 ORDER BY id LIMIT 10000"
        );
        let rows: Vec<Row> = on_db!(&self.backend, db => {
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(execution_id)
                .fetch_all(db)
                .await?
        });
        rows.into_iter().map(NotificationRecord::try_from).collect()
    }

    async fn next_notification_due(&self) -> Result<Option<i64>> {
        let sql = "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at \
                   THEN lease_until ELSE next_attempt_at END) FROM notifications WHERE status = 'PENDING'";
        let due: Option<i64> = on_db!(&self.backend, db => {
            sqlx::query_scalar(sql).fetch_one(db).await?
        });
        Ok(due)
    }
}
