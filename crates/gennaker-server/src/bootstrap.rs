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
