//! `gennaker token …`

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Context;
use crate::args::TokenCommand;
use crate::error::CliError;
use crate::output::{emit, scalar, table, time};

/// `ApiToken`: a token's metadata; the secret is never returned after creation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiToken {
    id: Value,
    user: String,
    name: String,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// The answer to a create: the only time the secret is seen.
#[derive(Debug, Deserialize)]
struct Created {
    token: String,
    info: ApiToken,
}

pub(super) async fn run(ctx: &mut Context<'_>, command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::List { user } => {
            let query: Vec<(&str, String)> = user.into_iter().map(|u| ("user", u)).collect();
            let raw = ctx.client()?.get(&["tokens"], &query).await?;
            emit(ctx.out, ctx.format, raw, |tokens: &Vec<ApiToken>| {
                table(
                    ["ID", "NAME", "USER", "CREATED", "EXPIRES", "REVOKED"],
                    tokens
                        .iter()
                        .map(|t| {
                            [
                                scalar(&t.id),
                                t.name.clone(),
                                t.user.clone(),
                                time(t.created_at),
                                expiry(t.expires_at),
                                time(t.revoked_at),
                            ]
                        })
                        .collect(),
                )
            })
        }
        TokenCommand::Create {
            name,
            user,
            expires_in_days,
        } => {
            let mut body = Map::new();
            body.insert("name".to_owned(), Value::from(name));
            if let Some(user) = user {
                body.insert("user".to_owned(), Value::from(user));
            }
            if let Some(days) = expires_in_days {
                body.insert("expiresInDays".to_owned(), Value::from(days));
            }
            let raw = ctx
                .client()?
                .post(&["tokens"], &Value::Object(body))
                .await?;
            emit(ctx.out, ctx.format, raw, |created: &Created| {
                let info = &created.info;
                format!(
                    "Created token '{}' (id {}) for user {}, expires: {}.\n\
                     Copy the secret now; it cannot be shown again:\n\n{}",
                    info.name,
                    scalar(&info.id),
                    info.user,
                    expiry(info.expires_at),
                    created.token
                )
            })
        }
        TokenCommand::Revoke { id } => {
            let raw = ctx.client()?.delete(&["tokens", &id]).await?;
            emit(ctx.out, ctx.format, raw, |t: &ApiToken| {
                format!(
                    "Revoked token '{}' (id {}) of user {}.",
                    t.name,
                    scalar(&t.id),
                    t.user
                )
            })
        }
    }
}

fn expiry(millis: Option<i64>) -> String {
    match millis {
        None => "never".to_owned(),
        some => time(some),
    }
}
