//! [`ResourceStore`] on SQLite and PostgreSQL: the same SQL text on both (`ON CONFLICT`
//! and `RETURNING` exist in both dialects), expanded once per backend by `on_db!`.

use async_trait::async_trait;
use serde_json::Value;

use super::{Backend, SqlStore, now_millis, to_text};
use crate::error::{Result, StoreError};
use crate::resources::{ExpectedVersion, Resource, ResourceStore};

#[derive(sqlx::FromRow)]
struct ResourceRow {
    provider: String,
    kind: String,
    key: String,
    document: String,
    version: i64,
    updated_at: i64,
}

impl ResourceRow {
    fn into_resource(self) -> Result<Resource> {
        Ok(Resource {
            document: serde_json::from_str(&self.document)?,
            provider: self.provider,
            kind: self.kind,
            key: self.key,
            version: self.version,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "provider, kind, key, document, version, updated_at";

fn conflict(provider: &str, kind: &str, key: &str, expected: ExpectedVersion) -> StoreError {
    let wanted = match expected {
        ExpectedVersion::Absent => "not to exist yet".to_owned(),
        ExpectedVersion::Exactly(version) => format!("to be at version {version}"),
        ExpectedVersion::Any => "anything".to_owned(),
    };
    StoreError::Conflict(format!(
        "{provider} {kind} '{key}' was expected {wanted}; it was changed meanwhile, read it again"
    ))
}

#[async_trait]
impl ResourceStore for SqlStore {
    async fn get_resource(
        &self,
        provider: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<Resource>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM infrastructure WHERE provider = $1 AND kind = $2 AND key = $3"
        );
        let row: Option<ResourceRow> = on_db!(&self.backend, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(provider)
                .bind(kind)
                .bind(key)
                .fetch_optional(db)
                .await?
        });
        row.map(ResourceRow::into_resource).transpose()
    }

    async fn list_resources(
        &self,
        provider: &str,
        kind: &str,
        key_prefix: &str,
    ) -> Result<Vec<Resource>> {
        // substr/length rather than LIKE: a prefix may contain `%` or `_`.
        let sql = format!(
            "SELECT {COLUMNS} FROM infrastructure WHERE provider = $1 AND kind = $2 \
             AND substr(key, 1, length($3)) = $3 ORDER BY key"
        );
        let rows: Vec<ResourceRow> = on_db!(&self.backend, db => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(provider)
                .bind(kind)
                .bind(key_prefix)
                .fetch_all(db)
                .await?
        });
        rows.into_iter().map(ResourceRow::into_resource).collect()
    }

    async fn put_resource(
        &self,
        provider: &str,
        kind: &str,
        key: &str,
        document: &Value,
        expected: ExpectedVersion,
    ) -> Result<Resource> {
        let text = to_text(document)?;
        let now = now_millis();
        let sql = match expected {
            ExpectedVersion::Any => format!(
                "INSERT INTO infrastructure ({COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5) \
                 ON CONFLICT (provider, kind, key) DO UPDATE SET document = excluded.document, \
                 version = infrastructure.version + 1, updated_at = excluded.updated_at \
                 RETURNING {COLUMNS}"
            ),
            ExpectedVersion::Absent => format!(
                "INSERT INTO infrastructure ({COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5) \
                 ON CONFLICT (provider, kind, key) DO NOTHING RETURNING {COLUMNS}"
            ),
            ExpectedVersion::Exactly(_) => format!(
                "UPDATE infrastructure SET document = $4, version = version + 1, updated_at = $5 \
                 WHERE provider = $1 AND kind = $2 AND key = $3 AND version = $6 \
                 RETURNING {COLUMNS}"
            ),
        };
        let version = match expected {
            ExpectedVersion::Exactly(version) => version,
            ExpectedVersion::Any | ExpectedVersion::Absent => 0,
        };
        // Unused `$6` is harmless for SQLite but not for PostgreSQL: bind it only when
        // the statement names it.
        let bind_version = matches!(expected, ExpectedVersion::Exactly(_));
        let row: Option<ResourceRow> = on_db!(&self.backend, db => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(provider)
                .bind(kind)
                .bind(key)
                .bind(&text)
                .bind(now);
            if bind_version {
                query = query.bind(version);
            }
            query.fetch_optional(db).await?
        });
        match row {
            Some(row) => row.into_resource(),
            None => Err(conflict(provider, kind, key, expected)),
        }
    }

    async fn delete_resource(&self, provider: &str, kind: &str, key: &str) -> Result<bool> {
        let sql = "DELETE FROM infrastructure WHERE provider = $1 AND kind = $2 AND key = $3";
        let affected = on_db!(&self.backend, db => {
            sqlx::query(sql)
                .bind(provider)
                .bind(kind)
                .bind(key)
                .execute(db)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }
}
