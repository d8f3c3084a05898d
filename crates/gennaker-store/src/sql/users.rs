//! Users and roles.

use super::tokens::{INSERT_TOKEN, duplicate_token};
use super::{Backend, WritePool, conflict_on_duplicate, key, now_millis};
use crate::error::{Result, StoreError};
use crate::records::{NewToken, Role, User};

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

/// A user's columns; the roles are read apart.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    pub(super) name_key: String,
    pub(super) name: String,
    pub(super) admin: bool,
    pub(super) created_at: i64,
}

impl Backend {
    async fn roles_of(&self, user_key: &str) -> Result<Vec<String>> {
        on_db!(self, db => {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT role FROM user_roles WHERE user_key = $1 ORDER BY role")
                .bind(user_key)
                .fetch_all(db)
                .await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        })
    }

    pub(super) async fn user_from_row(&self, row: UserRow) -> Result<User> {
        let roles = self.roles_of(&row.name_key).await?;
        Ok(User {
            name: row.name,
            admin: row.admin,
            roles,
            created_at: row.created_at,
        })
    }

    pub(super) async fn create_first_admin(&self, token: &NewToken) -> Result<bool> {
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

    pub(super) async fn count_users(&self) -> Result<i64> {
        on_db!(self, db => {
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(db).await?;
            Ok(count)
        })
    }

    pub(super) async fn create_user(
        &self,
        name: &str,
        admin: bool,
        roles: &[String],
    ) -> Result<User> {
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

    pub(super) async fn get_user(&self, name: &str) -> Result<Option<User>> {
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

    pub(super) async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = on_db!(self, db => {
            sqlx::query_as("SELECT name_key, name, admin, created_at FROM users ORDER BY name_key").fetch_all(db).await?
        });
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push(self.user_from_row(row).await?);
        }
        Ok(users)
    }

    pub(super) async fn set_user_roles(&self, name: &str, roles: &[String]) -> Result<User> {
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

    pub(super) async fn delete_user(&self, name: &str) -> Result<()> {
        on_db!(self, db => {
            let done = sqlx::query("DELETE FROM users WHERE name_key = $1").bind(key(name)).execute(db).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("user", name));
            }
            Ok(())
        })
    }

    pub(super) async fn set_user_password(
        &self,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<()> {
        on_db!(self, db => {
            let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name_key = $2")
                .bind(password_hash).bind(key(name))
                .execute(db)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("user", name));
            }
            Ok(())
        })
    }

    pub(super) async fn user_password(&self, name: &str) -> Result<Option<(User, String)>> {
        let row: Option<(String, String, bool, i64, Option<String>)> = on_db!(self, db => {
            sqlx::query_as("SELECT name_key, name, admin, created_at, password_hash FROM users WHERE name_key = $1")
                .bind(key(name))
                .fetch_optional(db)
                .await?
        });
        let Some((name_key, name, admin, created_at, Some(hash))) = row else {
            return Ok(None);
        };
        let user = self
            .user_from_row(UserRow {
                name_key,
                name,
                admin,
                created_at,
            })
            .await?;
        Ok(Some((user, hash)))
    }

    pub(super) async fn create_role(&self, name: &str, description: &str) -> Result<Role> {
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

    pub(super) async fn list_roles(&self) -> Result<Vec<Role>> {
        on_db!(self, db => {
            let rows: Vec<(String, String, i64)> = sqlx::query_as("SELECT name, description, created_at FROM roles ORDER BY name").fetch_all(db).await?;
            Ok(rows.into_iter().map(|(name, description, created_at)| Role { name, description, created_at }).collect())
        })
    }

    pub(super) async fn delete_role(&self, name: &str) -> Result<()> {
        on_db!(self, db => {
            let done = sqlx::query("DELETE FROM roles WHERE name = $1").bind(key(name)).execute(db).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found("role", name));
            }
            Ok(())
        })
    }
}
