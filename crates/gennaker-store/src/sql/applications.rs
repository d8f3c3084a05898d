//! Applications.

use serde_json::Value;

use super::{Backend, WritePool, conflict_on_duplicate, key, now_millis, to_text};
use crate::error::{Result, StoreError};
use crate::records::ApplicationRecord;

#[derive(sqlx::FromRow)]
struct ApplicationRow {
    name: String,
    config: String,
    created_at: i64,
    updated_at: i64,
    updated_by: String,
    version: i64,
}

impl ApplicationRow {
    fn into_record(self) -> Result<ApplicationRecord> {
        Ok(ApplicationRecord {
            name: self.name,
            config: serde_json::from_str(&self.config)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
            version: self.version,
        })
    }
}

/// `SELECT` of an [`ApplicationRow`] followed by the given clause, as one static string.
macro_rules! application_select {
    ($clause:literal) => {
        concat!(
            "SELECT name, config, created_at, updated_at, updated_by, version FROM applications ",
            $clause
        )
    };
}

impl Backend {
    pub(super) async fn create_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
    ) -> Result<ApplicationRecord> {
        let now = now_millis();
        let text = to_text(config)?;
        on_db!(self, db => {
            sqlx::query("INSERT INTO applications (name_key, name, config, created_at, updated_at, updated_by) VALUES ($1, $2, $3, $4, $4, $5)")
                .bind(key(name)).bind(name).bind(&text).bind(now).bind(actor)
                .execute(db)
                .await
                .map_err(|e| conflict_on_duplicate(e, || format!("application '{name}' already exists; use PUT /api/v1/applications/{name} to change it")))?;
            Ok::<(), StoreError>(())
        })?;
        Ok(ApplicationRecord {
            name: name.to_owned(),
            config: config.clone(),
            created_at: now,
            updated_at: now,
            updated_by: actor.to_owned(),
            version: 1,
        })
    }

    pub(super) async fn update_application(
        &self,
        name: &str,
        config: &Value,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<ApplicationRecord> {
        let now = now_millis();
        let text = to_text(config)?;
        let updated: Option<ApplicationRow> = on_db!(self, db => {
            // The version test is part of the UPDATE, so it holds at the moment of writing.
            sqlx::query_as("UPDATE applications SET config = $2, updated_at = $3, updated_by = $4, version = version + 1 WHERE name_key = $1 AND ($5 IS NULL OR version = $5) RETURNING name, config, created_at, updated_at, updated_by, version")
                .bind(key(name)).bind(&text).bind(now).bind(actor).bind(expected_version)
                .fetch_optional(db)
                .await?
        });
        if let Some(row) = updated {
            return row.into_record();
        }
        match (self.get_application(name).await?, expected_version) {
            (Some(current), Some(expected)) => Err(StoreError::Conflict(format!(
                "application '{}' was changed by {} since you read it (it is at version {}, you sent version {expected}); read it again, reapply your change and send the new version",
                current.name, current.updated_by, current.version
            ))),
            _ => Err(StoreError::not_found("application", name)),
        }
    }

    pub(super) async fn get_application(&self, name: &str) -> Result<Option<ApplicationRecord>> {
        on_db!(self, db => {
            let row: Option<ApplicationRow> = sqlx::query_as(application_select!("WHERE name_key = $1"))
                .bind(key(name))
                .fetch_optional(db)
                .await?;
            row.map(ApplicationRow::into_record).transpose()
        })
    }

    pub(super) async fn list_applications(&self) -> Result<Vec<ApplicationRecord>> {
        on_db!(self, db => {
            let rows: Vec<ApplicationRow> = sqlx::query_as(application_select!("ORDER BY name_key"))
                .fetch_all(db)
                .await?;
            rows.into_iter().map(ApplicationRow::into_record).collect()
        })
    }

    pub(super) async fn delete_application(&self, name: &str) -> Result<ApplicationRecord> {
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            // The same lock as pipeline saves take: a save in flight finishes first (and the
            // count below sees its pipeline), or waits and then finds no application.
            let locked: Option<(String,)> = sqlx::query_as(db.lock_application_sql())
                .bind(key(name))
                .fetch_optional(&mut *tx)
                .await?;
            if locked.is_none() {
                return Err(StoreError::not_found("application", name));
            }
            let row: ApplicationRow = sqlx::query_as(application_select!("WHERE name_key = $1"))
                .bind(key(name))
                .fetch_one(&mut *tx)
                .await?;
            let (pipelines,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pipelines WHERE application_key = $1")
                .bind(key(name))
                .fetch_one(&mut *tx)
                .await?;
            if pipelines > 0 {
                return Err(StoreError::Conflict(format!(
                    "application '{name}' still has {pipelines} pipeline(s); delete them first (gennaker pipeline delete {name} NAME)"
                )));
            }
            sqlx::query("DELETE FROM applications WHERE name_key = $1").bind(key(name)).execute(&mut *tx).await?;
            tx.commit().await?;
            row.into_record()
        })
    }
}
