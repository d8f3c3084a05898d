//! Connecting to a database and applying its migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Backend, SqlStore};
use crate::error::{Result, StoreError};

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

/// How long a pooled connection may have sat idle and still be handed out without a
/// ping first.
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

/// Checks a connection taken from the pool that sat idle for a while (a PostgreSQL
/// server may have closed it meanwhile; one failing the ping is dropped and another
/// taken). sqlx's own check pings on every acquire: a round trip to PostgreSQL, and a
/// hand-off to the connection's thread and back on SQLite, before each of a queue
/// hop's statements and transactions, for a connection used a moment ago.
async fn ping_if_idle<C: Connection>(
    conn: &mut C,
    meta: PoolConnectionMetadata,
) -> std::result::Result<bool, sqlx::Error> {
    if meta.idle_for >= TRUSTED_IDLE {
        conn.ping().await?;
    }
    Ok(true)
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
                .test_before_acquire(false)
                .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(false)
                .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_database_url(url)));
        };
        Ok(SqlStore::new(backend))
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
        on_db!(&self.backend, db => db.close().await)
    }
}
