//! [`CanaryConfigStore`] on SQLite and PostgreSQL: the same SQL text on both, expanded
//! once per backend by `on_db!`.
//!
//! Writes are optimistic: a save or delete names the revision its caller read (and
//! checked permissions on), and the `UPDATE … WHERE revision = $n` / `DELETE … WHERE
//! revision = $n` affects no row when someone else wrote in between, which is a
//! conflict. Names are unique through the `name_key` constraint, so two concurrent
//! creations of one name cannot both succeed.

use async_trait::async_trait;
use serde_json::Value;

use super::{Backend, SqlStore, WritePool, conflict_on_duplicate, key, now_millis, to_text};
use crate::canary_configs::{
    CanaryConfigRecord, CanaryConfigRevision, CanaryConfigSave, CanaryConfigStore,
    MAX_CANARY_CONFIG_BYTES, MAX_CANARY_CONFIG_REVISIONS,
};
use crate::error::{Result, StoreError};
use crate::records::SaveOutcome;
use crate::resources::ExpectedVersion;

#[derive(sqlx::FromRow)]
struct ConfigRow {
    id: String,
    name: String,
    applications: String,
    revision: i64,
    config: String,
    created_at: i64,
    updated_at: i64,
    updated_by: String,
}

impl ConfigRow {
    fn into_record(self) -> Result<CanaryConfigRecord> {
        Ok(CanaryConfigRecord {
            applications: serde_json::from_str(&self.applications)?,
            config: serde_json::from_str(&self.config)?,
            id: self.id,
            name: self.name,
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    config_id: String,
    revision: i64,
    name: String,
    applications: String,
    config: String,
    created_at: i64,
    author: String,
}

impl RevisionRow {
    fn into_record(self) -> Result<CanaryConfigRevision> {
        Ok(CanaryConfigRevision {
            applications: serde_json::from_str(&self.applications)?,
            config: serde_json::from_str(&self.config)?,
            config_id: self.config_id,
            revision: self.revision,
            name: self.name,
            created_at: self.created_at,
            author: self.author,
        })
    }
}

/// `SELECT` of a [`ConfigRow`] followed by the given clause, as one static string.
macro_rules! config_select {
    ($clause:literal) => {
        concat!(
            "SELECT c.id, c.name, c.applications, c.revision, c.config, c.created_at, c.updated_at, c.updated_by ",
            "FROM canary_configs c ",
            $clause
        )
    };
}

/// `SELECT` of a [`RevisionRow`] followed by the given clause, as one static string.
macro_rules! revision_select {
    ($clause:literal) => {
        concat!(
            "SELECT config_id, revision, name, applications, config, created_at, author FROM canary_config_revisions ",
            $clause
        )
    };
}

/// What every save stamps on the document: when and by whom, not what the config is.
/// Kayenta's own stamps (`createdTimestamp`, `updatedTimestamp` and their ISO forms)
/// are among them, so importing a config exported from Kayenta is no change either.
const SAVE_STAMPS: &[&str] = &[
    "createdTimestamp",
    "createdTimestampIso",
    "updatedTimestamp",
    "updatedTimestampIso",
    "lastModifiedBy",
];

/// The document as stored: the caller's, with `id`, `name` and the save stamps set.
fn stamped(config: &Value, id: &str, name: &str, created: i64, updated: i64, actor: &str) -> Value {
    let mut doc = config.clone();
    if let Value::Object(map) = &mut doc {
        map.insert("id".to_owned(), Value::String(id.to_owned()));
        map.insert("name".to_owned(), Value::String(name.to_owned()));
        map.insert("createdTimestamp".to_owned(), Value::from(created));
        map.insert(
            "createdTimestampIso".to_owned(),
            Value::String(iso(created)),
        );
        map.insert("updatedTimestamp".to_owned(), Value::from(updated));
        map.insert(
            "updatedTimestampIso".to_owned(),
            Value::String(iso(updated)),
        );
        map.insert("lastModifiedBy".to_owned(), Value::String(actor.to_owned()));
    }
    doc
}

/// Epoch milliseconds as Kayenta's ISO instant (`2018-08-22T18:40:00Z`).
fn iso(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis).map_or_else(|_| String::new(), |t| t.to_string())
}

/// Whether two documents are the same config, whoever saved them when.
fn same_config(stored: &Value, saved: &Value) -> bool {
    let unstamped = |doc: &Value| {
        let mut doc = doc.clone();
        if let Value::Object(map) = &mut doc {
            for stamp in SAVE_STAMPS {
                map.remove(*stamp);
            }
        }
        doc
    };
    unstamped(stored) == unstamped(saved)
}

fn changed_meanwhile(id: &str, expected: ExpectedVersion) -> StoreError {
    let wanted = match expected {
        ExpectedVersion::Absent => "not to exist yet".to_owned(),
        ExpectedVersion::Exactly(revision) => format!("to be at revision {revision}"),
        ExpectedVersion::Any => "to exist".to_owned(),
    };
    StoreError::Conflict(format!(
        "canary config '{id}' was expected {wanted}; it was changed meanwhile, read it again and retry"
    ))
}

fn name_taken(name: &str, holder: &ConfigRow) -> StoreError {
    StoreError::Conflict(format!(
        "a canary config named '{}' already exists (id '{}'); choose another name, or save with that id to change it",
        name, holder.id
    ))
}

/// Unique application keys, in the order given.
fn application_keys(applications: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::with_capacity(applications.len());
    for application in applications {
        let k = key(application);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

#[async_trait]
impl CanaryConfigStore for SqlStore {
    async fn save_canary_config(
        &self,
        save: &CanaryConfigSave,
        actor: &str,
    ) -> Result<(CanaryConfigRecord, SaveOutcome)> {
        let size = to_text(&save.config)?.len();
        if size > MAX_CANARY_CONFIG_BYTES {
            return Err(StoreError::TooLarge(format!(
                "canary config '{}' is {size} bytes of JSON; at most {MAX_CANARY_CONFIG_BYTES} are stored",
                save.name
            )));
        }
        let now = now_millis();
        let name_key = key(&save.name);
        let applications_text = serde_json::to_string(&save.applications)?;
        let app_keys = application_keys(&save.applications);
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let by_id: Option<ConfigRow> = match &save.id {
                Some(id) => sqlx::query_as(config_select!("WHERE c.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?,
                None => None,
            };
            let by_name: Option<ConfigRow> = sqlx::query_as(config_select!("WHERE c.name_key = $1"))
                .bind(&name_key)
                .fetch_optional(&mut *tx)
                .await?;
            let id_text = save.id.as_deref().unwrap_or("(new)");
            match (&by_id, save.expected) {
                (Some(_), ExpectedVersion::Absent) | (None, ExpectedVersion::Exactly(_)) => {
                    return Err(changed_meanwhile(id_text, save.expected));
                }
                (Some(current), ExpectedVersion::Exactly(revision)) if current.revision != revision => {
                    return Err(changed_meanwhile(id_text, save.expected));
                }
                _ => {}
            }
            if let Some(holder) = &by_name
                && by_id.as_ref().is_none_or(|current| current.id != holder.id)
            {
                return Err(name_taken(&save.name, holder));
            }

            let outcome = match by_id {
                Some(current) => {
                    let doc = stamped(&save.config, &current.id, &save.name, current.created_at, now, actor);
                    let current = current.into_record()?;
                    if same_config(&current.config, &doc)
                        && current.name == save.name
                        && current.applications == save.applications
                    {
                        tx.rollback().await?;
                        return Ok((current, SaveOutcome::Unchanged));
                    }
                    let text = to_text(&doc)?;
                    let revision = current.revision + 1;
                    let updated = sqlx::query("UPDATE canary_configs SET name = $2, name_key = $3, applications = $4, revision = $5, config = $6, updated_at = $7, updated_by = $8 WHERE id = $1 AND revision = $9")
                        .bind(&current.id).bind(&save.name).bind(&name_key).bind(&applications_text)
                        .bind(revision).bind(&text).bind(now).bind(actor).bind(current.revision)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_duplicate(e, || format!("canary config name '{}' was taken concurrently; retry the save", save.name)))?
                        .rows_affected();
                    if updated == 0 {
                        return Err(changed_meanwhile(&current.id, ExpectedVersion::Exactly(current.revision)));
                    }
                    sqlx::query("DELETE FROM canary_config_applications WHERE config_id = $1")
                        .bind(&current.id)
                        .execute(&mut *tx)
                        .await?;
                    (CanaryConfigRecord {
                        name: save.name.clone(),
                        applications: save.applications.clone(),
                        revision,
                        config: doc,
                        updated_at: now,
                        updated_by: actor.to_owned(),
                        ..current
                    }, SaveOutcome::Updated)
                }
                None => {
                    let id = save.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    let doc = stamped(&save.config, &id, &save.name, now, now, actor);
                    let text = to_text(&doc)?;
                    sqlx::query("INSERT INTO canary_configs (id, name, name_key, applications, revision, config, created_at, updated_at, updated_by) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7)")
                        .bind(&id).bind(&save.name).bind(&name_key).bind(&applications_text)
                        .bind(&text).bind(now).bind(actor)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_duplicate(e, || format!("canary config '{}' was created concurrently; read it and retry", save.name)))?;
                    (CanaryConfigRecord {
                        id,
                        name: save.name.clone(),
                        applications: save.applications.clone(),
                        revision: 1,
                        config: doc,
                        created_at: now,
                        updated_at: now,
                        updated_by: actor.to_owned(),
                    }, SaveOutcome::Created)
                }
            };
            let (record, _) = &outcome;
            for app_key in &app_keys {
                sqlx::query("INSERT INTO canary_config_applications (config_id, application_key) VALUES ($1, $2)")
                    .bind(&record.id).bind(app_key)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO canary_config_revisions (config_id, revision, name, applications, config, created_at, author) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&record.id).bind(record.revision).bind(&record.name).bind(&applications_text)
                .bind(to_text(&record.config)?).bind(now).bind(actor)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM canary_config_revisions WHERE config_id = $1 AND revision <= $2")
                .bind(&record.id).bind(record.revision - MAX_CANARY_CONFIG_REVISIONS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(outcome)
        })
    }

    async fn get_canary_config(&self, id: &str) -> Result<Option<CanaryConfigRecord>> {
        let row: Option<ConfigRow> = on_db!(&self.backend, db => {
            sqlx::query_as(config_select!("WHERE c.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await?
        });
        row.map(ConfigRow::into_record).transpose()
    }

    async fn get_canary_config_by_name(&self, name: &str) -> Result<Option<CanaryConfigRecord>> {
        let row: Option<ConfigRow> = on_db!(&self.backend, db => {
            sqlx::query_as(config_select!("WHERE c.name_key = $1"))
                .bind(key(name))
                .fetch_optional(db)
                .await?
        });
        row.map(ConfigRow::into_record).transpose()
    }

    async fn list_canary_configs(
        &self,
        application: Option<&str>,
    ) -> Result<Vec<CanaryConfigRecord>> {
        let rows: Vec<ConfigRow> = on_db!(&self.backend, db => {
            match application {
                Some(application) => sqlx::query_as(config_select!(
                    "JOIN canary_config_applications a ON a.config_id = c.id WHERE a.application_key = $1 ORDER BY c.name_key"
                ))
                .bind(key(application))
                .fetch_all(db)
                .await?,
                None => sqlx::query_as(config_select!("ORDER BY c.name_key"))
                    .fetch_all(db)
                    .await?,
            }
        });
        rows.into_iter().map(ConfigRow::into_record).collect()
    }

    async fn delete_canary_config(
        &self,
        id: &str,
        expected: ExpectedVersion,
    ) -> Result<CanaryConfigRecord> {
        on_db!(&self.backend, db => {
            let mut tx = db.begin_write().await?;
            let row: Option<ConfigRow> = sqlx::query_as(config_select!("WHERE c.id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or_else(|| StoreError::not_found("canary config", id))?;
            if let ExpectedVersion::Exactly(revision) = expected
                && row.revision != revision
            {
                return Err(changed_meanwhile(id, expected));
            }
            sqlx::query("DELETE FROM canary_config_revisions WHERE config_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM canary_config_applications WHERE config_id = $1").bind(id).execute(&mut *tx).await?;
            let deleted = sqlx::query("DELETE FROM canary_configs WHERE id = $1 AND revision = $2")
                .bind(id).bind(row.revision)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(changed_meanwhile(id, ExpectedVersion::Exactly(row.revision)));
            }
            tx.commit().await?;
            row.into_record()
        })
    }

    async fn canary_config_history(&self, id: &str) -> Result<Vec<CanaryConfigRevision>> {
        if self.get_canary_config(id).await?.is_none() {
            return Err(StoreError::not_found("canary config", id));
        }
        let rows: Vec<RevisionRow> = on_db!(&self.backend, db => {
            sqlx::query_as(revision_select!("WHERE config_id = $1 ORDER BY revision DESC"))
                .bind(id)
                .fetch_all(db)
                .await?
        });
        rows.into_iter().map(RevisionRow::into_record).collect()
    }

    async fn canary_config_revision(
        &self,
        id: &str,
        revision: i64,
    ) -> Result<Option<CanaryConfigRevision>> {
        let row: Option<RevisionRow> = on_db!(&self.backend, db => {
            sqlx::query_as(revision_select!("WHERE config_id = $1 AND revision = $2"))
                .bind(id)
                .bind(revision)
                .fetch_optional(db)
                .await?
        });
        row.map(RevisionRow::into_record).transpose()
    }
}
