//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL.
//!
//! Both backends run the same SQL text (sqlx's SQLite driver understands `$N`
//! placeholders). The `on_db!` macro expands each method body once per backend, so the
//! queries are written once but type-checked against each driver.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};

use crate::error::{Result, StoreError};
use crate::records::{
    ApiToken, ApplicationRecord, AuditEntry, AuditQuery, NewAuditEntry, NewToken, PipelineRecord,
    PipelineRevision, PipelineSave, Role, SaveOutcome, User,
};
use crate::store::Store;

/// The database URL with its passwords replaced by `***`, for logs and messages: the
/// `user:password@` part and `password=`/`sslpassword=` query parameters (PostgreSQL
/// takes a password either way).
pub fn redact_database_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            match base[scheme_end + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    let Some(query) = query else {
        return base;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("password")
                    || name.eq_ignore_ascii_case("sslpassword") =>
            {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

/// The current time as Unix epoch milliseconds.
pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A [`Store`] backed by SQLite or PostgreSQL through sqlx.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
}

/// Expands `$body` once for each backend with `$db` bound to that backend's pool.
macro_rules! on_db {
    ($self:ident, $db:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $body,
            Backend::Postgres($db) => $body,
        }
    };
}

/// Starting a write transaction differs: SQLite must take its write lock up front
/// (`BEGIN IMMEDIATE`), or two read-then-write transactions fail with SQLITE_BUSY instead
/// of waiting for each other. PostgreSQL locks rows with `FOR UPDATE` in the queries.
trait WritePool {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>>;
    /// Reads an application's name and, on PostgreSQL, locks its row until the transaction
    /// ends, which serialises changes to that application's pipelines.
    fn lock_application_sql(&self) -> &'static str;
    /// Reads a user's key and, on PostgreSQL, locks the row until the transaction ends,
    /// which serialises changes to that user's roles.
    fn lock_user_sql(&self) -> &'static str;
}

impl WritePool for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
    fn lock_application_sql(&self) -> &'static str {
        "SELECT name FROM applications WHERE name_key = $1"
    }
    fn lock_user_sql(&self) -> &'static str {
        "SELECT name_key FROM users WHERE name_key = $1"
    }
}

impl WritePool for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.begin().await?)
    }
    fn lock_application_sql(&self) -> &'static str {
        "SELECT name FROM applications WHERE name_key = $1 FOR UPDATE"
    }
    fn lock_user_sql(&self) -> &'static str {
        "SELECT name_key FROM users WHERE name_key = $1 FOR UPDATE"
    }
}

/// The lookup key of a name: names of applications, pipelines and users are unique
/// without regard to case and keep their spelling beside the key; role names are stored
/// as their key (Fiat lower-cases roles), so every comparison of roles ignores case.
fn key(name: &str) -> String {
    name.to_lowercase()
}

/// Role names as stored: lower-case, each once, sorted. A role given twice (`Dev`, `dev`)
/// would otherwise violate `user_roles`' primary key.
fn role_keys(roles: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = roles.iter().map(|role| key(role)).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Grants `$roles` (from [`role_keys`]) to the user with key `$user_key` in transaction
/// `$tx`; returns a not-found error from the enclosing function for a role that does not
/// exist.
macro_rules! insert_user_roles {
    ($tx:ident, $user_key:expr, $roles:expr) => {
        let user_key = $user_key;
        for role in $roles {
            let inserted = sqlx::query(
                "INSERT INTO user_roles (user_key, role) SELECT $1, name FROM roles WHERE name = $2",
            )
            .bind(&user_key)
            .bind(role)
            .execute(&mut *$tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::not_found("role", role.as_str()));
            }
        }
    };
}

fn to_text(value: &Value) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

/// Maps a unique-constraint violation to a conflict with a message the user can act on.
fn conflict_on_duplicate(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

/// Stores a token for the user whose key is `$2`; inserts nothing when there is no such user.
const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, user_key, name, token_hash, created_at, expires_at, revoked_at) SELECT $1, name_key, $3, $4, $5, $6, NULL FROM users WHERE name_key = $2";

/// A token whose secret is already stored (live, expired or revoked) is a conflict; the
/// message does not repeat the secret's hash.
fn duplicate_token(err: sqlx::Error) -> StoreError {
    conflict_on_duplicate(err, || {
        "a token with this secret exists already (possibly revoked or expired); generate a new secret".to_owned()
    })
}

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

#[derive(sqlx::FromRow)]
struct UserRow {
    name_key: String,
    name: String,
    admin: bool,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    user_name: String,
    name: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(row: TokenRow) -> Self {
        ApiToken {
            id: row.id,
            user: row.user_name,
            name: row.name,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// A live token with its user's columns, read in one query.
#[derive(sqlx::FromRow)]
struct AuthRow {
    #[sqlx(flatten)]
    token: TokenRow,
    name_key: String,
    admin: bool,
    user_created_at: i64,
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

/// Inserts a [`NewRevision`] in transaction `$tx`, returning any error from the
/// enclosing function.
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
    }};
}

/// `SELECT` of a [`TokenRow`] (and optionally more columns of `u`, the user) followed by
/// the given clause, as one static string.
macro_rules! token_select {
    ($clause:literal) => {
        token_select!("", $clause)
    };
    ($more_columns:literal, $clause:literal) => {
        concat!(
            "SELECT t.id, u.name AS user_name, t.name, t.created_at, t.expires_at, t.revoked_at",
            $more_columns,
            " FROM api_tokens t JOIN users u ON u.name_key = t.user_key ",
            $clause
        )
    };
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

impl SqlStore {
    /// Connects to `url` and applies pending migrations.
    ///
    /// `sqlite://PATH` (created when missing) or `sqlite::memory:`, and
    /// `postgres://…`/`postgresql://…` are understood.
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            // An in-memory database exists once per connection: keep exactly one.
            let max = if url.contains(":memory:") { 1 } else { 8 };
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_database_url(url)));
        };
        Ok(SqlStore { backend })
    }

    /// The PostgreSQL pool, when this store runs on PostgreSQL.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        on_db!(self, db => db.close().await)
    }

    async fn roles_of(&self, user_key: &str) -> Result<Vec<String>> {
        on_db!(self, db => {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT role FROM user_roles WHERE user_key = $1 ORDER BY role")
                .bind(user_key)
                .fetch_all(db)
                .await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        })
    }

    async fn user_from_row(&self, row: UserRow) -> Result<User> {
        let roles = self.roles_of(&row.name_key).await?;
        Ok(User {
            name: row.name,
            admin: row.admin,
            roles,
            created_at: row.created_at,
        })
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<()> {
        on_db!(self, db => {
            sqlx::query("SELECT 1").execute(db).await?;
            Ok(())
        })
    }

    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    async fn create_application(
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

    async fn update_application(
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

    async fn get_application(&self, name: &str) -> Result<Option<ApplicationRecord>> {
        on_db!(self, db => {
            let row: Option<ApplicationRow> = sqlx::query_as(application_select!("WHERE name_key = $1"))
                .bind(key(name))
                .fetch_optional(db)
                .await?;
            row.map(ApplicationRow::into_record).transpose()
        })
    }

    async fn list_applications(&self) -> Result<Vec<ApplicationRecord>> {
        on_db!(self, db => {
            let rows: Vec<ApplicationRow> = sqlx::query_as(application_select!("ORDER BY name_key"))
                .fetch_all(db)
                .await?;
            rows.into_iter().map(ApplicationRow::into_record).collect()
        })
    }

    async fn delete_application(&self, name: &str) -> Result<ApplicationRecord> {
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

    async fn save_pipeline(
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
                    if current.config == doc && current.name == save.name {
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

    async fn get_pipeline(&self, application: &str, name: &str) -> Result<Option<PipelineRecord>> {
        on_db!(self, db => {
            let row: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 AND p.name_key = $2"))
                .bind(key(application)).bind(key(name))
                .fetch_optional(db)
                .await?;
            row.map(PipelineRow::into_record).transpose()
        })
    }

    async fn get_pipeline_by_id(&self, id: &str) -> Result<Option<PipelineRecord>> {
        on_db!(self, db => {
            let row: Option<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await?;
            row.map(PipelineRow::into_record).transpose()
        })
    }

    async fn list_pipelines(&self, application: &str) -> Result<Vec<PipelineRecord>> {
        on_db!(self, db => {
            let rows: Vec<PipelineRow> = sqlx::query_as(pipeline_select!("WHERE p.application_key = $1 ORDER BY p.name_key"))
                .bind(key(application))
                .fetch_all(db)
                .await?;
            rows.into_iter().map(PipelineRow::into_record).collect()
        })
    }

    async fn delete_pipeline(&self, application: &str, name: &str) -> Result<PipelineRecord> {
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

    async fn pipeline_history(
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

    async fn pipeline_revision(
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

    async fn restore_pipeline_revision(
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

    async fn create_first_admin(&self, token: &NewToken) -> Result<bool> {
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        let name = token.user.as_str();
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?;
            if users > 0 {
                return Ok(false);
            }
            let inserted = sqlx::query("INSERT INTO users (name_key, name, admin, created_at) VALUES ($1, $2, TRUE, $3)")
                .bind(key(name)).bind(name).bind(now)
                .execute(&mut *tx)
                .await;
            match inserted {
                // Another server on the same PostgreSQL database bootstrapped first.
                Err(sqlx::Error::Database(err)) if err.is_unique_violation() => return Ok(false),
                other => other?,
            };
            sqlx::query(INSERT_TOKEN)
                .bind(&id).bind(key(name)).bind(&token.name).bind(&token.token_hash).bind(now).bind(token.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(duplicate_token)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn count_users(&self) -> Result<i64> {
        on_db!(self, db => {
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(db).await?;
            Ok(count)
        })
    }

    async fn create_user(&self, name: &str, admin: bool, roles: &[String]) -> Result<User> {
        let now = now_millis();
        let roles = role_keys(roles);
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            sqlx::query("INSERT INTO users (name_key, name, admin, created_at) VALUES ($1, $2, $3, $4)")
                .bind(key(name)).bind(name).bind(admin).bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_duplicate(e, || format!("user '{name}' already exists")))?;
            insert_user_roles!(tx, key(name), &roles);
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(User {
            name: name.to_owned(),
            admin,
            roles,
            created_at: now,
        })
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = on_db!(self, db => {
            sqlx::query_as("SELECT name_key, name, admin, created_at FROM users WHERE name_key = $1")
                .bind(key(name))
                .fetch_optional(db)
                .await?
        });
        match row {
            Some(row) => Ok(Some(self.user_from_row(row).await?)),
            None => Ok(None),
        }
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = on_db!(self, db => {
            sqlx::query_as("SELECT name_key, name, admin, created_at FROM users ORDER BY name_key").fetch_all(db).await?
        });
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push(self.user_from_row(row).await?);
        }
        Ok(users)
    }

    async fn set_user_roles(&self, name: &str, roles: &[String]) -> Result<User> {
        let roles = role_keys(roles);
        on_db!(self, db => {
            let mut tx = db.begin_write().await?;
            // Locked first: two replacements running at once on PostgreSQL would each
            // delete what they see and insert their own, leaving the union of both.
            let user: Option<(String,)> = sqlx::query_as(db.lock_user_sql()).bind(key(name)).fetch_optional(&mut *tx).await?;
            if user.is_none() {
                return Err(StoreError::not_found("user", name));
            }
            sqlx::query("DELETE FROM user_roles WHERE user_key = $1").bind(key(name)).execute(&mut *tx).await?;
            insert_user_roles!(tx, key(name), &roles);
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_user(name)
            .await?
            .ok_or_else(|| StoreError::not_found("user", name))
    }

    async fn delete_user(&self, name: &str) -> Result<()> {
        on_db!(self, db => {
            let done = sqlx::query("DELETE FROM users WHERE name_key = $1").bind(key(name)).execute(db).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("user", name));
            }
            Ok(())
        })
    }

    async fn create_role(&self, name: &str, description: &str) -> Result<Role> {
        let now = now_millis();
        let name = key(name);
        on_db!(self, db => {
            sqlx::query("INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3)")
                .bind(&name).bind(description).bind(now)
                .execute(db)
                .await
                .map_err(|e| conflict_on_duplicate(e, || format!("role '{name}' already exists (role names ignore case)")))?;
            Ok(Role { name, description: description.to_owned(), created_at: now })
        })
    }

    async fn list_roles(&self) -> Result<Vec<Role>> {
        on_db!(self, db => {
            let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT name, description, created_at FROM roles ORDER BY name").fetch_all(db).await?;
            Ok(rows.into_iter().map(|(name, description, created_at)| Role { name, description, created_at }).collect())
        })
    }

    async fn delete_role(&self, name: &str) -> Result<()> {
        on_db!(self, db => {
            let done = sqlx::query("DELETE FROM roles WHERE name = $1").bind(key(name)).execute(db).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("role", name));
            }
            Ok(())
        })
    }

    async fn create_token(&self, token: &NewToken) -> Result<ApiToken> {
        let now = now_millis();
        let id = uuid::Uuid::now_v7().to_string();
        on_db!(self, db => {
            let inserted = sqlx::query(INSERT_TOKEN)
                .bind(&id).bind(key(&token.user)).bind(&token.name).bind(&token.token_hash).bind(now).bind(token.expires_at)
                .execute(db)
                .await
                .map_err(duplicate_token)?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::not_found("user", token.user.as_str()));
            }
            Ok::<(), StoreError>(())
        })?;
        self.get_token(&id)
            .await?
            .ok_or_else(|| StoreError::not_found("token", id))
    }

    async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        on_db!(self, db => {
            let rows: Vec<TokenRow> = match user {
                Some(user) => sqlx::query_as(token_select!("WHERE t.user_key = $1 ORDER BY t.created_at, t.id"))
                    .bind(key(user))
                    .fetch_all(db)
                    .await?,
                None => sqlx::query_as(token_select!("ORDER BY t.created_at, t.id"))
                    .fetch_all(db)
                    .await?,
            };
            Ok(rows.into_iter().map(ApiToken::from).collect())
        })
    }

    async fn get_token(&self, id: &str) -> Result<Option<ApiToken>> {
        on_db!(self, db => {
            let row: Option<TokenRow> = sqlx::query_as(token_select!("WHERE t.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await?;
            Ok(row.map(ApiToken::from))
        })
    }

    async fn revoke_token(&self, id: &str) -> Result<ApiToken> {
        let now = now_millis();
        on_db!(self, db => {
            sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id).bind(now)
                .execute(db)
                .await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_token(id)
            .await?
            .ok_or_else(|| StoreError::not_found("token", id))
    }

    async fn authenticate(&self, token_hash: &str, now: i64) -> Result<Option<(ApiToken, User)>> {
        // One query for the token and its user: with two, a user deleted in between made
        // the second fail (a 500 for a request that should simply be unauthorised).
        let found: Option<AuthRow> = on_db!(self, db => {
            sqlx::query_as(token_select!(", u.name_key, u.admin, u.created_at AS user_created_at", "WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)"))
                .bind(token_hash).bind(now)
                .fetch_optional(db)
                .await?
        });
        let Some(row) = found else {
            return Ok(None);
        };
        let user = UserRow {
            name_key: row.name_key,
            name: row.token.user_name.clone(),
            admin: row.admin,
            created_at: row.user_created_at,
        };
        Ok(Some((
            ApiToken::from(row.token),
            self.user_from_row(user).await?,
        )))
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<AuditEntry> {
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

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
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

mod executions;
mod resources;

pub use executions::{QUEUE_CHANNEL, QueueListener};
