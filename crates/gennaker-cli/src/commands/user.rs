//! `gennaker user …` and `gennaker whoami`.

use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::args::UserCommand;
use crate::error::CliError;
use crate::output::{OutputFormat, details, emit, list, table, time, write_structured};

/// `User` as the API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    name: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    roles: Vec<String>,
    created_at: Option<i64>,
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

fn user_rows(user: &User) -> Vec<(&'static str, String)> {
    vec![
        ("Name", user.name.clone()),
        ("Admin", yes_no(user.admin)),
        ("Roles", list(&user.roles)),
        ("Created", time(user.created_at)),
    ]
}

pub(super) async fn run(ctx: &mut Context<'_>, command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::List => {
            let raw = ctx.client()?.get(&["users"], &[]).await?;
            emit(ctx.out, ctx.format, raw, |users: &Vec<User>| {
                table(
                    ["NAME", "ADMIN", "ROLES", "CREATED"],
                    users
                        .iter()
                        .map(|u| {
                            [
                                u.name.clone(),
                                yes_no(u.admin),
                                list(&u.roles),
                                time(u.created_at),
                            ]
                        })
                        .collect(),
                )
            })
        }
        UserCommand::Get { name } => {
            let raw = ctx.client()?.get(&["users", &name], &[]).await?;
            emit(ctx.out, ctx.format, raw, |user: &User| {
                details(user_rows(user))
            })
        }
        UserCommand::Create { name, admin, roles } => {
            let raw = ctx
                .client()?
                .post(
                    &["users"],
                    &json!({"name": name, "admin": admin, "roles": roles}),
                )
                .await?;
            confirm(
                ctx,
                raw,
                format!(
                    "Created user {name}. Give them a token with `gennaker token create --name NAME --user {name}`."
                ),
            )
        }
        UserCommand::Delete { name } => {
            ctx.client()?.delete(&["users", &name]).await?;
            ctx.say(&format!("Deleted user {name}."))
        }
        UserCommand::SetRoles { name, roles, clear } => {
            let roles = if clear { Vec::new() } else { roles };
            let raw = ctx
                .client()?
                .put(&["users", &name, "roles"], &json!({"roles": roles}))
                .await?;
            confirm(ctx, raw, format!("Roles of {name}: {}.", list(&roles)))
        }
        UserCommand::SetPassword { name, remove } => {
            if remove {
                ctx.client()?.delete(&["users", &name, "password"]).await?;
                return ctx.say(&format!(
                    "Removed the password of {name}: they sign in with an API token."
                ));
            }
            let password = read_password(&name)?;
            ctx.client()?
                .put(
                    &["users", &name, "password"],
                    &json!({"password": password}),
                )
                .await?;
            ctx.say(&format!(
                "Set the password of {name}: they can sign in to the web UI with it."
            ))
        }
    }
}

/// The first line of standard input (without its line ending).
fn read_password(name: &str) -> Result<String, CliError> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password for {name} (one line; it is shown as you type, so prefer `< file`):");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|err| {
        CliError::Usage(format!(
            "cannot read the password from standard input: {err}"
        ))
    })?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage(format!(
            "no password on standard input: pipe it in, e.g. `gennaker user set-password {name} < password.txt`, or use --remove"
        )));
    }
    Ok(password)
}

/// A confirmation for people, or the returned record for scripts.
fn confirm(ctx: &mut Context<'_>, raw: serde_json::Value, message: String) -> Result<(), CliError> {
    match ctx.format {
        OutputFormat::Table => ctx.say(&message),
        format => write_structured(ctx.out, format, &raw),
    }
}

pub(super) async fn whoami(ctx: &mut Context<'_>) -> Result<(), CliError> {
    let client = ctx.client()?;
    let raw = client.get(&["me"], &[]).await?;
    let server = client.url().to_owned();
    emit(ctx.out, ctx.format, raw, |user: &User| {
        let mut rows = user_rows(user);
        rows.push(("Server", server));
        details(rows)
    })
}
