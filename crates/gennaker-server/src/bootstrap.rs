//! The first start: an admin user and a way to reach it.

use std::io::Write;
use std::path::PathBuf;

use gennaker_store::{NewToken, Store, StoreError};

use crate::ServerError;
use crate::auth::{generate_token, hash_token};
use crate::config::ServerConfig;

/// The name of the admin created on first start.
pub const ADMIN_USER: &str = "admin";

/// Makes sure an admin can log in.
///
/// On a new installation this creates the user `admin` with a token: the operator's
/// `GENNAKER_ADMIN_TOKEN` when set, else a random one written to `<data-dir>/admin-token`
/// (mode 0600). On later starts a configured admin token that the store does not know yet
/// is added, so a fixed token keeps working across data resets. Returns the token file
/// written, if any.
pub async fn bootstrap_admin(
    store: &dyn Store,
    config: &ServerConfig,
) -> Result<Option<PathBuf>, ServerError> {
    if store.count_users().await? == 0 {
        match store.create_user(ADMIN_USER, true, &[]).await {
            // Another server on the same database won the race: it bootstraps.
            Err(StoreError::Conflict(_)) => return Ok(None),
            other => other?,
        };
        let token = config.admin_token.clone().unwrap_or_else(generate_token);
        store
            .create_token(&NewToken {
                user: ADMIN_USER.to_owned(),
                name: "bootstrap".to_owned(),
                token_hash: hash_token(&token),
                expires_at: None,
            })
            .await?;
        if config.admin_token.is_some() {
            tracing::info!(
                user = ADMIN_USER,
                "created the first admin with the token from GENNAKER_ADMIN_TOKEN"
            );
            return Ok(None);
        }
        let path = config.data_dir.join("admin-token");
        write_secret(&path, &token)?;
        tracing::info!(user = ADMIN_USER, token_file = %path.display(), "created the first admin; its API token is in the token file (readable only by you)");
        return Ok(Some(path));
    }
    if let Some(token) = &config.admin_token {
        let hash = hash_token(token);
        if store
            .authenticate(&hash, gennaker_store::now_millis())
            .await?
            .is_none()
            && store.get_user(ADMIN_USER).await?.is_some()
        {
            store
                .create_token(&NewToken {
                    user: ADMIN_USER.to_owned(),
                    name: "GENNAKER_ADMIN_TOKEN".to_owned(),
                    token_hash: hash,
                    expires_at: None,
                })
                .await?;
            tracing::info!(
                user = ADMIN_USER,
                "registered the token from GENNAKER_ADMIN_TOKEN for the admin"
            );
        }
    }
    Ok(None)
}

fn write_secret(path: &PathBuf, secret: &str) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_error = |source| ServerError::Io {
        context: format!("cannot write the admin token to {}", path.display()),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error)?;
    file.write_all(secret.as_bytes()).map_err(io_error)?;
    file.write_all(b"\n").map_err(io_error)?;
    Ok(())
}
