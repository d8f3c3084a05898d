//! API tokens and authentication by token.

use super::{Backend, conflict_on_duplicate, key, now_millis};
use crate::error::{Result, StoreError};
use crate::records::{ApiToken, NewToken, User};

/// Stores a token for the user whose key is `$2`; inserts nothing when there is no such user.
pub(super) const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, user_key, name, token_hash, created_at, expires_at, revoked_at) SELECT $1, name_key, $3, $4, $5, $6, NULL FROM users WHERE name_key = $2";

/// A token whose secret is already stored (live, expired or revoked) is a conflict; the
/// message does not repeat the secret's hash.
pub(super) fn duplicate_token(err: sqlx::Error) -> StoreError {
    conflict_on_duplicate(err, || {
        "a token with this secret exists already (possibly revoked or expired); generate a new secret".to_owned()
    })
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

/// A live token with its user's columns and one of the user's roles (none when the user
/// has none), read in one query: a user with several roles gives a row per role.
#[derive(sqlx::FromRow)]
struct AuthRow {
    #[sqlx(flatten)]
    token: TokenRow,
    admin: bool,
    user_created_at: i64,
    role: Option<String>,
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

impl Backend {
    pub(super) async fn create_token(&self, token: &NewToken) -> Result<ApiToken> {
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

    pub(super) async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
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

    pub(super) async fn get_token(&self, id: &str) -> Result<Option<ApiToken>> {
        on_db!(self, db => {
            let row: Option<TokenRow> = sqlx::query_as(token_select!("WHERE t.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await?;
            Ok(row.map(ApiToken::from))
        })
    }

    pub(super) async fn revoke_token(&self, id: &str) -> Result<ApiToken> {
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

    pub(super) async fn authenticate(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(ApiToken, User)>> {
        // Every API request asks this, so the token, its user and the user's roles come
        // in one round trip (the roles by an outer join). In one query, too, a user
        // deleted in between cannot make a second query fail (a 500 for a request that
        // should simply be unauthorised).
        let rows: Vec<AuthRow> = on_db!(self, db => {
            sqlx::query_as(token_select!(", u.admin, u.created_at AS user_created_at, r.role", "LEFT JOIN user_roles r ON r.user_key = u.name_key WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) ORDER BY r.role"))
                .bind(token_hash).bind(now)
                .fetch_all(db)
                .await?
        });
        let mut roles: Vec<String> = rows.iter().filter_map(|row| row.role.clone()).collect();
        roles.dedup();
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let user = User {
            name: row.token.user_name.clone(),
            admin: row.admin,
            roles,
            created_at: row.user_created_at,
        };
        Ok(Some((ApiToken::from(row.token), user)))
    }
}
