//! `gennaker app …`

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Context, read_document};
use crate::args::{AppCommand, AppSaveArgs};
use crate::error::CliError;
use crate::output::{self, OutputFormat, details, emit, list, table, text, time};

/// `ApplicationRecord` as the API returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationRecord {
    name: String,
    #[serde(default)]
    config: Value,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    updated_by: Option<String>,
}

impl ApplicationRecord {
    fn field(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }

    /// Front50 stores `"kubernetes,aws"`, Deck and spin send arrays: show both the same.
    fn cloud_providers(&self) -> Vec<String> {
        match self.config.get("cloudProviders") {
            Some(Value::String(csv)) => csv
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => strings(items),
            _ => Vec::new(),
        }
    }

    fn roles(&self, access: &str) -> Vec<String> {
        self.config
            .get("permissions")
            .and_then(|p| p.get(access))
            .and_then(Value::as_array)
            .map(|items| strings(items))
            .unwrap_or_default()
    }
}

fn strings(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

pub(super) async fn run(ctx: &mut Context<'_>, command: AppCommand) -> Result<(), CliError> {
    match command {
        AppCommand::List => {
            let raw = ctx.client()?.get(&["applications"], &[]).await?;
            emit(ctx.out, ctx.format, raw, |apps: &Vec<ApplicationRecord>| {
                table(
                    ["NAME", "EMAIL", "CLOUD PROVIDERS", "UPDATED", "UPDATED BY"],
                    apps.iter()
                        .map(|app| {
                            [
                                app.name.clone(),
                                text(app.field("email")),
                                list(&app.cloud_providers()),
                                time(app.updated_at),
                                text(app.updated_by.as_deref()),
                            ]
                        })
                        .collect(),
                )
            })
        }
        AppCommand::Get { app } => {
            let raw = ctx.client()?.get(&["applications", &app], &[]).await?;
            emit(ctx.out, ctx.format, raw, app_details)
        }
        AppCommand::Save(args) => save(ctx, args).await,
        AppCommand::Delete { app } => {
            ctx.client()?.delete(&["applications", &app]).await?;
            ctx.say(&format!("Deleted application {app}."))
        }
    }
}

fn app_details(app: &ApplicationRecord) -> String {
    details(vec![
        ("Name", app.name.clone()),
        ("Email", text(app.field("email"))),
        ("Description", text(app.field("description"))),
        ("Cloud providers", list(&app.cloud_providers())),
        ("READ roles", list(&app.roles("READ"))),
        ("WRITE roles", list(&app.roles("WRITE"))),
        ("EXECUTE roles", list(&app.roles("EXECUTE"))),
        ("Created", time(app.created_at)),
        ("Updated", time(app.updated_at)),
        ("Updated by", text(app.updated_by.as_deref())),
    ])
}

async fn save(ctx: &mut Context<'_>, args: AppSaveArgs) -> Result<(), CliError> {
    let client = ctx.client()?;
    let (name, document) = match &args.file {
        Some(path) => {
            let document = read_document(path)?;
            let name = document
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "{} has no `name`: an application document needs one",
                        path.display()
                    ))
                })?
                .to_owned();
            (name, document)
        }
        None => {
            let name = args.name.clone().ok_or_else(|| {
                CliError::Usage("give an application document with -f, or --name".to_owned())
            })?;
            // Flags change only what they name, so an update never drops permissions or
            // fields the user did not mention.
            let current = match client.get(&["applications", &name], &[]).await {
                Ok(raw) => raw.get("config").cloned(),
                Err(CliError::NotFound { .. }) => None,
                Err(err) => return Err(err),
            };
            let document = overlay(current, &name, &args);
            (name, document)
        }
    };
    let saved = client.put(&["applications", &name], &document).await?;
    match ctx.format {
        OutputFormat::Table => ctx.say(&format!("Saved application {name}.")),
        format => output::write_structured(ctx.out, format, &saved),
    }
}

/// The application document `current` (or a new one) with the flags applied.
fn overlay(current: Option<Value>, name: &str, args: &AppSaveArgs) -> Value {
    let mut document = match current {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    document.insert("name".to_owned(), json!(name));
    if let Some(email) = &args.email {
        document.insert("email".to_owned(), json!(email));
    }
    if let Some(description) = &args.description {
        document.insert("description".to_owned(), json!(description));
    }
    if let Some(providers) = &args.cloud_providers {
        document.insert("cloudProviders".to_owned(), json!(providers));
    }
    let grants = [
        ("READ", &args.read_roles),
        ("WRITE", &args.write_roles),
        ("EXECUTE", &args.execute_roles),
    ];
    if grants.iter().any(|(_, roles)| roles.is_some()) {
        let permissions = document
            .entry("permissions")
            .or_insert_with(|| Value::Object(Map::new()));
        if !permissions.is_object() {
            *permissions = Value::Object(Map::new());
        }
        if let Value::Object(permissions) = permissions {
            for (access, roles) in grants {
                if let Some(roles) = roles {
                    permissions.insert(access.to_owned(), json!(roles));
                }
            }
        }
    }
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AppSaveArgs {
        AppSaveArgs {
            file: None,
            name: Some("shop".to_owned()),
            email: None,
            description: None,
            cloud_providers: None,
            read_roles: None,
            write_roles: None,
            execute_roles: None,
        }
    }

    #[test]
    fn overlay_keeps_what_flags_do_not_name() {
        let current = json!({
            "name": "shop", "email": "old@example.com", "trafficGuards": [],
            "permissions": {"READ": ["dev"], "WRITE": ["ops"]}
        });
        let mut a = args();
        a.email = Some("new@example.com".to_owned());
        a.execute_roles = Some(vec!["deployers".to_owned()]);
        let doc = overlay(Some(current), "shop", &a);
        assert_eq!(
            doc,
            json!({
                "name": "shop", "email": "new@example.com", "trafficGuards": [],
                "permissions": {"READ": ["dev"], "WRITE": ["ops"], "EXECUTE": ["deployers"]}
            })
        );
    }

    #[test]
    fn overlay_builds_a_new_document() {
        let mut a = args();
        a.cloud_providers = Some(vec!["kubernetes".to_owned(), "aws".to_owned()]);
        a.read_roles = Some(vec!["dev".to_owned()]);
        assert_eq!(
            overlay(None, "shop", &a),
            json!({"name": "shop", "cloudProviders": ["kubernetes", "aws"], "permissions": {"READ": ["dev"]}})
        );
    }

    #[test]
    fn cloud_providers_in_either_form() {
        let record = |providers: Value| ApplicationRecord {
            name: "shop".to_owned(),
            config: json!({"cloudProviders": providers}),
            created_at: None,
            updated_at: None,
            updated_by: None,
        };
        assert_eq!(
            record(json!("kubernetes, aws")).cloud_providers(),
            ["kubernetes", "aws"]
        );
        assert_eq!(record(json!(["local"])).cloud_providers(), ["local"]);
    }
}
