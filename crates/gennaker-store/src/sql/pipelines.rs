//! Pipelines and their revisions.

use serde_json::Value;

use super::{Backend, WritePool, conflict_on_duplicate, key, now_millis, to_text};
use crate::error::{Result, StoreError};
use crate::records::{
    ApplicationRecord, PipelineRecord, PipelineRevision, PipelineSave, SaveOutcome,
};

#[derive(sqlx::FromRow)]
struct PipelineRow {
    id: String,
    application: String,
    name: String,
    revision: i64,
    config: String,
    created_at: i64,
    updated_at: i64,
    updated_by: String,
}

impl PipelineRow {
    fn into_record(self) -> Result<PipelineRecord> {
        Ok(PipelineRecord {
            id: self.id,
            application: self.application,
            name: self.name,
            revision: self.revision,
            config: serde_json::from_str(&self.config)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
        })
    }
}

/// An application and, from a left join, maybe one of its pipelines.
#[derive(sqlx::FromRow)]
struct ApplicationPipelineRow {
    app_name: String,
    app_config: String,
    app_created_at: i64,
    app_updated_at: i64,
    app_updated_by: String,
    app_version: i64,
    id: Option<String>,
    name: Option<String>,
    revision: Option<i64>,
    config: Option<String>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

impl ApplicationPipelineRow {
    fn into_records(self) -> Result<(ApplicationRecord, Option<PipelineRecord>)> {
        let pipeline = match (
            self.id,
            self.name,
            self.revision,
            self.config,
            self.created_at,
            self.updated_at,
            self.updated_by,
        ) {
            (
                Some(id),
                Some(name),
                Some(revision),
                Some(config),
                Some(created_at),
                Some(updated_at),
                Some(updated_by),
            ) => Some(PipelineRecord {
                id,
                application: self.app_name.clone(),
                name,
                revision,
                config: serde_json::from_str(&config)?,
                created_at,
                updated_at,
                updated_by,
            }),
            _ => None,
        };
        let application = ApplicationRecord {
            name: self.app_name,
            config: serde_json::from_str(&self.app_config)?,
            created_at: self.app_created_at,
            updated_at: self.app_updated_at,
            updated_by: self.app_updated_by,
            version: self.app_version,
        };
        Ok((application, pipeline))
    }
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    pipeline_id: String,
    revision: i64,
    name: String,
    config: String,
    created_at: i64,
    author: String,
    restored_from: Option<i64>,
}

impl RevisionRow {
    fn into_record(self) -> Result<PipelineRevision> {
        Ok(PipelineRevision {
            pipeline_id: self.pipeline_id,
            revision: self.revision,
            name: self.name,
            config: serde_json::from_str(&self.config)?,
            created_at: self.created_at,
            author: self.author,
            restored_from: self.restored_from,
        })
    }
}

/// `SELECT` of a [`PipelineRow`] followed by the given clause, as one static string.
macro_rules! pipeline_select {
    ($clause:literal) => {
        concat!(
            "SELECT p.id, a.name AS application, p.name, p.revision, p.config, p.created_at, p.updated_at, p.updated_by ",
            "FROM pipelines p JOIN applications a ON a.name_key = p.application_key ",
            $clause
        )
    };
}

/// `SELECT` of a [`RevisionRow`] followed by the given clause, as one static string.
macro_rules! revision_select {
    ($clause:literal) => {
        concat!(
            "SELECT pipeline_id, revision, name, config, created_at, author, restored_from FROM pipeline_revisions ",
            $clause
        )
    };
}

/// A row for `pipeline_revisions`, the document already serialised.
struct NewRevision<'a> {
    pipeline_id: &'a str,
    revision: i64,
    name: &'a str,
    config: &'a str,
    created_at: i64,
    author: &'a str,
    restored_from: Option<i64>,
}

/// How many revisions of a pipeline are kept: a saving loop (or a script) must not grow
/// the history without bound. The oldest go first; the current one is always kept.
pub const MAX_PIPELINE_REVISIONS: i64 = 100;

/// Inserts a [`NewRevision`] in transaction `$tx` and drops the revisions older than the
/// last [`MAX_PIPELINE_REVISIONS`], returning any error from the enclosing function.
macro_rules! insert_revision {
    ($tx:ident, $revision:expr) => {{
        let row: NewRevision<'_> = $revision;
        sqlx::query("INSERT INTO pipeline_revisions (pipeline_id, revision, name, config, created_at, author, restored_from) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(row.pipeline_id)
            .bind(row.revision)
            .bind(row.name)
            .bind(row.config)
            .bind(row.created_at)
            .bind(row.author)
            .bind(row.restored_from)
            .execute(&mut *$tx)
            .await?;
        sqlx::query("DELETE FROM pipeline_revisions WHERE pipeline_id = $1 AND revision <= $2")
            .bind(row.pipeline_id)
            .bind(row.revision - MAX_PIPELINE_REVISIONS)
            .execute(&mut *$tx)
            .await?;
    }};
}

/// The document stored for a pipeline: the user's document with `id` and `application`
/// filled in when absent, so a stored pipeline is always self-describing.
fn pipeline_document(config: &Value, id: &str, application: &str) -> Value {
    let mut doc = config.clone();
    if let Value::Object(map) = &mut doc {
        map.insert("id".to_owned(), Value::String(id.to_owned()));
        if !map.contains_key("application") {
            map.insert(
                "application".to_owned(),
                Value::String(application.to_owned()),
            );
        }
    }
    doc
}

/// What every save stamps on the document (Front50's `updateTs` and `lastModifiedBy`):
/// they say when and by whom, not what the pipeline is.
const SAVE_STAMPS: &[&str] = &["updateTs", "lastModifiedBy"];

/// Whether two documents are the same pipeline, whoever saved them when: saving a
/// document again stores no new revision.
fn same_pipeline(stored: &Value, saved: &Value) -> bool {
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

impl Backend {
    pub(super) async fn save_pipeline(
        &self,
        application: &str,
        save: &PipelineSave,
        actor: &str,
    ) -> Result<(PipelineRecord, SaveOutcome)> {
        let now = now_millis();
        let app_key = key(application);
        let name_key = key(&save.name);
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            let app: Option<(String,)> = sqlx::query_as(db.lock_application_sql())
                .bind(&app_key)
                .fetch_optional(&mut *tx)
                .await?;
            let (app_name,) = app.ok_or_else(|| StoreError::not_found("application", application))?;

            let by_id: Option<PipelineRow> = match &save.id {
                Some(id) => sqlx::query_as(pipeline_select!("WHERE p.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?,
                None => None,
            };
            let by_name: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 AND p.name_key = $2"))
                .bind(&app_key)
                .bind(&name_key)
                .fetch_optional(&mut *tx)
                .await?;

            if let Some(existing) = &by_id
                && key(&existing.application) != app_key
            {
                // Which application holds the id is not said: the caller may not read it.
                return Err(StoreError::Conflict(format!(
                    "pipeline id '{}' cannot be used in application '{application}'; remove the id to save a copy",
                    existing.id
                )));
            }
            let existing = match (by_id, by_name) {
                (Some(current), Some(named)) if current.id != named.id => {
                    return Err(StoreError::Conflict(format!(
                        "cannot rename pipeline '{}' to '{}': application '{app_name}' already has a pipeline with that name",
                        current.name, named.name
                    )));
                }
                (Some(current), _) => Some(current),
                (None, Some(named)) => match &save.id {
                    Some(id) if *id != named.id => {
                        return Err(StoreError::Conflict(format!(
                            "application '{app_name}' already has a pipeline named '{}' with id '{}'; save with that id or without one",
                            named.name, named.id
                        )));
                    }
                    _ => Some(named),
                },
                (None, None) => None,
            };

            let record = match existing {
                Some(current) => {
                    let doc = pipeline_document(&save.config, &current.id, &app_name);
                    let current = current.into_record()?;
                    if same_pipeline(&current.config, &doc) && current.name == save.name {
                        tx.rollback().await?;
                        return Ok((current, SaveOutcome::Unchanged));
                    }
                    let text = to_text(&doc)?;
                    let revision = current.revision + 1;
                    sqlx::query("UPDATE pipelines SET name = $2, name_key = $3, revision = $4, config = $5, updated_at = $6, updated_by = $7 WHERE id = $1")
                        .bind(&current.id).bind(&save.name).bind(&name_key).bind(revision).bind(&text).bind(now).bind(actor)
                        .execute(&mut *tx)
                        .await?;
                    insert_revision!(tx, NewRevision { pipeline_id: &current.id, revision, name: &save.name, config: &text, created_at: now, author: actor, restored_from: None });
                    (PipelineRecord { name: save.name.clone(), revision, config: doc, updated_at: now, updated_by: actor.to_owned(), ..current }, SaveOutcome::Updated)
                }
                None => {
                    let id = save.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                    let doc = pipeline_document(&save.config, &id, &app_name);
                    let text = to_text(&doc)?;
                    sqlx::query("INSERT INTO pipelines (id, application_key, name, name_key, revision, config, created_at, updated_at, updated_by) VALUES ($1, $2, $3, $4, 1, $5, $6, $6, $7)")
                        .bind(&id).bind(&app_key).bind(&save.name).bind(&name_key).bind(&text).bind(now).bind(actor)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| conflict_on_duplicate(e, || format!("pipeline '{}' was created concurrently; retry the save", save.name)))?;
                    insert_revision!(tx, NewRevision { pipeline_id: &id, revision: 1, name: &save.name, config: &text, created_at: now, author: actor, restored_from: None });
                    (PipelineRecord { id, application: app_name, name: save.name.clone(), revision: 1, config: doc, created_at: now, updated_at: now, updated_by: actor.to_owned() }, SaveOutcome::Created)
                }
            };
            tx.commit().await?;
            Ok(record)
        })
    }

    pub(super) async fn get_application_pipeline(
        &self,
        application: &str,
        name_or_id: &str,
    ) -> Result<Option<(ApplicationRecord, Option<PipelineRecord>)>> {
        // The pipeline found by name wins over one found by id, as in two lookups.
        let row: Option<ApplicationPipelineRow> = on_db!(self, db => {
            sqlx::query_as(
                "SELECT a.name AS app_name, a.config AS app_config, a.created_at AS app_created_at, \
                 a.updated_at AS app_updated_at, a.updated_by AS app_updated_by, a.version AS app_version, \
                 p.id, p.name, p.revision, p.config, p.created_at, p.updated_at, p.updated_by \
                 FROM applications a LEFT JOIN pipelines p \
                 ON p.application_key = a.name_key AND (p.name_key = $2 OR p.id = $3) \
                 WHERE a.name_key = $1 \
                 ORDER BY CASE WHEN p.name_key = $2 THEN 0 ELSE 1 END LIMIT 1",
            )
            .bind(key(application)).bind(key(name_or_id)).bind(name_or_id)
            .fetch_optional(db)
            .await?
        });
        row.map(ApplicationPipelineRow::into_records).transpose()
    }

    pub(super) async fn get_pipeline(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Option<PipelineRecord>> {
        on_db!(self, db => {
            let row: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 AND p.name_key = $2"))
                .bind(key(application)).bind(key(name))
                .fetch_optional(db)
                .await?;
            row.map(PipelineRow::into_record).transpose()
        })
    }

    pub(super) async fn get_pipeline_by_id(&self, id: &str) -> Result<Option<PipelineRecord>> {
        on_db!(self, db => {
            let row: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await?;
            row.map(PipelineRow::into_record).transpose()
        })
    }

    pub(super) async fn list_pipelines(&self, application: &str) -> Result<Vec<PipelineRecord>> {
        on_db!(self, db => {
            let rows: Vec<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 ORDER BY p.name_key"))
                .bind(key(application))
                .fetch_all(db)
                .await?;
            rows.into_iter().map(PipelineRow::into_record).collect()
        })
    }

    pub(super) async fn delete_pipeline(
        &self,
        application: &str,
        name: &str,
    ) -> Result<PipelineRecord> {
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            sqlx::query(db.lock_application_sql()).bind(key(application)).execute(&mut *tx).await?;
            let row: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 AND p.name_key = $2"))
                .bind(key(application)).bind(key(name))
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or_else(|| StoreError::not_found("pipeline", format!("{application}/{name}")))?;
            sqlx::query("DELETE FROM pipeline_revisions WHERE pipeline_id = $1").bind(&row.id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM pipelines WHERE id = $1").bind(&row.id).execute(&mut *tx).await?;
            tx.commit().await?;
            row.into_record()
        })
    }

    pub(super) async fn pipeline_history(
        &self,
        application: &str,
        name: &str,
    ) -> Result<Vec<PipelineRevision>> {
        let pipeline = self
            .get_pipeline(application, name)
            .await?
            .ok_or_else(|| StoreError::not_found("pipeline", format!("{application}/{name}")))?;
        on_db!(self, db => {
            let rows: Vec<RevisionRow> = sqlx::query_as(revision_select!("WHERE pipeline_id = $1 ORDER BY revision DESC"))
                .bind(&pipeline.id)
                .fetch_all(db)
                .await?;
            rows.into_iter().map(RevisionRow::into_record).collect()
        })
    }

    pub(super) async fn pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<PipelineRevision>> {
        let Some(pipeline) = self.get_pipeline(application, name).await? else {
            return Ok(None);
        };
        on_db!(self, db => {
            let row: Option<RevisionRow> = sqlx::query_as(revision_select!("WHERE pipeline_id = $1 AND revision = $2"))
                .bind(&pipeline.id).bind(revision)
                .fetch_optional(db)
                .await?;
            row.map(RevisionRow::into_record).transpose()
        })
    }

    pub(super) async fn restore_pipeline_revision(
        &self,
        application: &str,
        name: &str,
        revision: i64,
        actor: &str,
    ) -> Result<PipelineRecord> {
        let now = now_millis();
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            sqlx::query(db.lock_application_sql()).bind(key(application)).execute(&mut *tx).await?;
            let current: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 AND p.name_key = $2"))
                .bind(key(application)).bind(key(name))
                .fetch_optional(&mut *tx)
                .await?;
            let current = current.ok_or_else(|| StoreError::not_found("pipeline", format!("{application}/{name}")))?.into_record()?;
            let old: Option<RevisionRow> = sqlx::query_as(revision_select!("WHERE pipeline_id = $1 AND revision = $2"))
                .bind(&current.id).bind(revision)
                .fetch_optional(&mut *tx)
                .await?;
            let old = old.ok_or_else(|| StoreError::not_found("pipeline revision", format!("{application}/{name}@{revision}")))?.into_record()?;
            let new_revision = current.revision + 1;
            let text = to_text(&old.config)?;
            sqlx::query("UPDATE pipelines SET name = $2, name_key = $3, revision = $4, config = $5, updated_at = $6, updated_by = $7 WHERE id = $1")
                .bind(&current.id).bind(&old.name).bind(key(&old.name)).bind(new_revision).bind(&text).bind(now).bind(actor)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_duplicate(e, || format!("cannot restore revision {revision}: its name '{}' is now used by another pipeline", old.name)))?;
            insert_revision!(tx, NewRevision { pipeline_id: &current.id, revision: new_revision, name: &old.name, config: &text, created_at: now, author: actor, restored_from: Some(revision) });
            tx.commit().await?;
            Ok(PipelineRecord { name: old.name, revision: new_revision, config: old.config, updated_at: now, updated_by: actor.to_owned(), ..current })
        })
    }
}
