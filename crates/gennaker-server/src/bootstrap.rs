//! The first start: an admin user and a way to reach it.

use std::io::Write;
use std::path::{Path, PathBuf};

use gennaker_store::{NewToken, Store, StoreError};

use crate::ServerError;
use crate::auth::{generate_token, hash_token};
use crate::config::ServerConfig;

/// The name of the admin created on first start.
pub const ADMIN_USER: &str = "admin";

/// The file in the data directory that holds a generated admin token.
const TOKEN_FILE: &str = "admin-token";

/// Admin tokens shorter than this are warned about at start: a generated token has 68.
const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The warning for a configured admin token too short to resist guessing, if it is.
pub(crate) fn short_token_warning(token: &str) -> Option<String> {
    let length = token.chars().count();
    (length < MIN_ADMIN_TOKEN_LEN).then(|| {
        format!(
            "GENNAKER_ADMIN_TOKEN is only {length} characters long; use at least {MIN_ADMIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`), or leave it unset to have one generated"
        )
    })
}

/// Creates the data directory readable by the server's user only (0700), and narrows
/// to 0700 an existing one that others could list or write (it holds the database and
/// the admin token). The search bits alone are kept: the local provider adds them when
/// its instances run as another OS user (`[local] run_as_user`), who must pass through
/// to their artifacts; they let nobody list the directory or read its 0600 files.
pub(crate) fn secure_data_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServerError::Io {
            context: format!("cannot create the data directory {}", dir.display()),
            source,
        })?;
    let current = std::fs::metadata(dir)
        .map_err(|source| ServerError::Io {
            context: format!("cannot read the permissions of {}", dir.display()),
            source,
        })?
        .permissions()
        .mode();
    if current & 0o066 == 0 {
        return Ok(());
    }
    restrict(dir, 0o700, "the data directory")
}

/// The file of a SQLite database URL (`sqlite://PATH[?options]`), if it names one.
fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Creates a new SQLite database file with mode 0600 before SQLite opens it, so it is
/// never readable by others, not even for a moment (SQLite would create it 0644, and
/// its `-wal`/`-shm` files take the database file's mode).
pub(crate) fn prepare_database_files(database_url: &str) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(file) = sqlite_file(database_url) else {
        return Ok(());
    };
    if file.exists() {
        return Ok(());
    }
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::Io {
            context: format!("cannot create the directory of {}", file.display()),
            source,
        })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
    {
        Ok(_) => Ok(()),
        // Another process created it meanwhile: its mode is fixed after connecting.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(ServerError::Io {
            context: format!("cannot create the database file {}", file.display()),
            source,
        }),
    }
}

/// Claims a SQLite database for this server alone, for as long as the returned file is
/// open (the operating system lets go when the process ends, however it ends).
///
/// SQLite is one server's database: its engine releases every lease at start, which
/// would hand a running server's work to a second one, and servers on SQLite do not
/// hear each other's queue or events. So a second server on the same file is refused
/// with a message saying what to do. The lock is a file beside the database,
/// `<database>-server.lock`, locked with `flock` (not the database file itself, whose
/// locks are SQLite's own). `None` for PostgreSQL and in-memory databases.
pub(crate) fn lock_sqlite(database_url: &str) -> Result<Option<std::fs::File>, ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(file) = sqlite_file(database_url) else {
        return Ok(None);
    };
    let mut name = file.clone().into_os_string();
    name.push("-server.lock");
    let path = PathBuf::from(name);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| ServerError::Io {
            context: format!("cannot open the database's lock file {}", path.display()),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::DatabaseInUse {
            database: file.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ServerError::Io {
            context: format!("cannot lock the database's lock file {}", path.display()),
            source,
        }),
    }
}

/// Narrows the SQLite database and its `-wal`, `-shm` and `-journal` files, and the
/// admin token file, to mode 0600 where others could read them.
pub(crate) fn secure_database_files(database_url: &str) -> Result<(), ServerError> {
    let Some(file) = sqlite_file(database_url) else {
        return Ok(());
    };
    let mut files = vec![file.clone()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = file.clone().into_os_string();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for path in files.iter().filter(|path| path.exists()) {
        restrict(path, 0o600, "a database file")?;
    }
    Ok(())
}

/// Sets `path`'s mode to `mode` when it grants more (to group or others), with a log
/// line saying so.
fn restrict(path: &Path, mode: u32, what: &str) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let io_error = |source| ServerError::Io {
        context: format!("cannot restrict the permissions of {}", path.display()),
        source,
    };
    let current = std::fs::metadata(path)
        .map_err(io_error)?
        .permissions()
        .mode()
        & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error)?;
    tracing::warn!(
        path = %path.display(),
        was = format!("{current:o}"),
        now = format!("{mode:o}"),
        "{what} was readable by other users; its permissions are narrowed"
    );
    Ok(())
}

/// Makes sure an admin can log in.
///
/// On a new installation this creates the user `admin` with a token, both in one
/// transaction: the operator's `GENNAKER_ADMIN_TOKEN` when set, else a random one written
/// to `<data-dir>/admin-token` (mode 0600). On later starts a configured admin token that
/// the store does not know yet is added, so a fixed token keeps working across data
/// resets; one the installation revoked stays revoked. Returns the token file written, if
/// any.
pub async fn bootstrap_admin(
    store: &dyn Store,
    config: &ServerConfig,
) -> Result<Option<PathBuf>, ServerError> {
    if let Some(warning) = config.admin_token.as_deref().and_then(short_token_warning) {
        tracing::warn!("{warning}");
    }
    let token_file = config.data_dir.join(TOKEN_FILE);
    if token_file.exists() {
        restrict(&token_file, 0o600, "the admin token file")?;
    }
    if store.count_users().await? == 0 {
        match first_start(store, config).await? {
            FirstStart::Created(token_file) => return Ok(token_file),
            // Another server on the same database bootstrapped: this is a later start.
            FirstStart::Lost => {}
        }
    }
    if let Some(token) = &config.admin_token {
        register_admin_token(store, token).await?;
    }
    Ok(None)
}

/// How a first start went.
enum FirstStart {
    /// The admin exists now; with the token file when the token was generated.
    Created(Option<PathBuf>),
    /// Another server created the first user meanwhile; nothing was changed.
    Lost,
}

async fn first_start(store: &dyn Store, config: &ServerConfig) -> Result<FirstStart, ServerError> {
    let token = config.admin_token.clone().unwrap_or_else(generate_token);
    let new_token = NewToken {
        user: ADMIN_USER.to_owned(),
        name: "bootstrap".to_owned(),
        token_hash: hash_token(&token),
        expires_at: None,
    };
    if config.admin_token.is_some() {
        if !store.create_first_admin(&new_token).await? {
            return Ok(FirstStart::Lost);
        }
        tracing::info!(
            user = ADMIN_USER,
            "created the first admin with the token from GENNAKER_ADMIN_TOKEN"
        );
        return Ok(FirstStart::Created(None));
    }
    // The generated token reaches the disk before the database: if either step fails,
    // there is never an admin whose only token nobody can read.
    let staged = stage_secret(&config.data_dir, &token)?;
    let created = match store.create_first_admin(&new_token).await {
        Ok(created) => created,
        Err(err) => {
            discard(&staged);
            return Err(err.into());
        }
    };
    if !created {
        discard(&staged);
        return Ok(FirstStart::Lost);
    }
    let path = config.data_dir.join(TOKEN_FILE);
    // A rename replaces any old file, with its permissions, by the staged 0600 one.
    std::fs::rename(&staged, &path).map_err(|source| ServerError::Io {
        context: format!(
            "the first admin's token is in {}, but it cannot be moved to {}",
            staged.display(),
            path.display()
        ),
        source,
    })?;
    tracing::info!(user = ADMIN_USER, token_file = %path.display(), "created the first admin; its API token is in the token file (readable only by you)");
    Ok(FirstStart::Created(Some(path)))
}

/// Adds the configured admin token on a later start, unless the store knows it already.
async fn register_admin_token(store: &dyn Store, token: &str) -> Result<(), ServerError> {
    let hash = hash_token(token);
    if store
        .authenticate(&hash, gennaker_store::now_millis())
        .await?
        .is_some()
    {
        return Ok(());
    }
    if store.get_user(ADMIN_USER).await?.is_none() {
        tracing::warn!(
            user = ADMIN_USER,
            "GENNAKER_ADMIN_TOKEN is set but there is no user 'admin' to give it to; it is ignored"
        );
        return Ok(());
    }
    let registered = store
        .create_token(&NewToken {
            user: ADMIN_USER.to_owned(),
            name: "GENNAKER_ADMIN_TOKEN".to_owned(),
            token_hash: hash,
            expires_at: None,
        })
        .await;
    match registered {
        Ok(_) => tracing::info!(
            user = ADMIN_USER,
            "registered the token from GENNAKER_ADMIN_TOKEN for the admin"
        ),
        // Known but not live: it was revoked (or expired). Reviving it would undo the
        // revocation, and refusing to start would turn a revocation into an outage.
        Err(StoreError::Conflict(_)) => tracing::warn!(
            user = ADMIN_USER,
            "GENNAKER_ADMIN_TOKEN was revoked or has expired on this installation and stays unusable; set a new token or remove the setting"
        ),
        Err(err) => return Err(err.into()),
    }
    Ok(())
}

/// Writes `secret` to a new file (mode 0600) beside the token file; returns its path.
fn stage_secret(data_dir: &Path, secret: &str) -> Result<PathBuf, ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(format!(
        ".{TOKEN_FILE}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let io_error = |source| ServerError::Io {
        context: format!("cannot write the admin token to {}", path.display()),
        source,
    };
    // create_new: a fresh file gets mode 0600 (an existing one would keep its own).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error)?;
    let written = file
        .write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        discard(&path);
        return Err(io_error(source));
    }
    Ok(path)
}

/// Removes a staged token file that will not be used.
fn discard(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %err, "cannot remove an unused admin token file; delete it by hand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_admin_tokens_are_warned_about() {
        let warning = short_token_warning("secret").unwrap_or_default();
        assert!(
            warning.contains("GENNAKER_ADMIN_TOKEN is only 6 characters long"),
            "{warning}"
        );
        assert!(short_token_warning(&"x".repeat(MIN_ADMIN_TOKEN_LEN)).is_none());
    }

    #[test]
    fn sqlite_files_are_found_in_database_urls() {
        assert_eq!(
            sqlite_file("sqlite:///srv/gk/gennaker.db?mode=rwc"),
            Some(PathBuf::from("/srv/gk/gennaker.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
