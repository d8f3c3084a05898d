//! `gennaker role …`

use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::args::RoleCommand;
use crate::error::CliError;
use crate::output::{OutputFormat, emit, table, text, time, write_structured};

/// `Role` as the API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Role {
    name: String,
    description: Option<String>,
    created_at: Option<i64>,
}

pub(super) async fn run(ctx: &mut Context<'_>, command: RoleCommand) -> Result<(), CliError> {
    match command {
        RoleCommand::List => {
            let raw = ctx.client()?.get(&["roles"], &[]).await?;
            emit(ctx.out, ctx.format, raw, |roles: &Vec<Role>| {
                table(
                    ["NAME", "DESCRIPTION", "CREATED"],
                    roles
                        .iter()
                        .map(|r| {
                            [
                                r.name.clone(),
                                text(r.description.as_deref()),
                                time(r.created_at),
                            ]
                        })
                        .collect(),
                )
            })
        }
        RoleCommand::Create { name, description } => {
            let raw = ctx
                .client()?
                // The server reads an absent description as empty but refuses `null`.
                .post(
                    &["roles"],
                    &json!({"name": name, "description": description.unwrap_or_default()}),
                )
                .await?;
            match ctx.format {
                OutputFormat::Table => ctx.say(&format!(
                    "Created role {name}. Grant it with `gennaker user set-roles USER --role {name}` \
                     and `gennaker app save --name APP --read-role {name}`."
                )),
                format => write_structured(ctx.out, format, &raw),
            }
        }
        RoleCommand::Delete { name } => {
            ctx.client()?.delete(&["roles", &name]).await?;
            ctx.say(&format!("Deleted role {name}."))
        }
    }
}
