//! The audit log.

use super::{Backend, now_millis, to_text};
use crate::error::Result;
use crate::records::{AuditEntry, AuditQuery, NewAuditEntry};

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
    pub(super) async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry> {
        let now = now_millis();
        let detail = to_text(&entry.detail)?;
        on_db!(self, db => {
            let (id,): (i64,) = sqlx::query_as("INSERT INTO audit_log (at, actor, action, target, outcome, status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id")
                .bind(now).bind(&entry.actor).bind(&entry.action).bind(&entry.target).bind(&entry.outcome).bind(entry.status).bind(&detail)
                .fetch_one(db)
                .await?;
            Ok(AuditEntry {
                id,
                at: now,
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                outcome: entry.outcome.clone(),
                status: entry.status,
                detail: entry.detail.clone(),
            })
        })
    }

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
