//! One module per command group; each turns parsed arguments into API calls and prints
//! the result.

mod app;
mod audit;
mod canary_config;
pub(crate) mod canary_report;
mod execution;
mod infrastructure;
mod pipeline;
mod role;
mod stage_types;
mod token;
mod trigger;
mod user;

use std::io::Write;
use std::path::{Path, PathBuf};

use gennaker_core::{StageCatalog, detect_format, parse_document};
use serde_json::Value;

use crate::Request;
use crate::args::{ClientCommand, ClientOptions};
use crate::client::ApiClient;
use crate::config::Settings;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

/// What every command needs besides its own arguments.
pub(crate) struct Context<'a> {
    options: &'a ClientOptions,
    config_path: Option<PathBuf>,
    pub(crate) format: OutputFormat,
    pub(crate) out: &'a mut (dyn Write + Send),
    /// Whether `out` is a terminal: live views redraw in place instead of appending.
    pub(crate) terminal: bool,
    /// The stage types offline validation knows.
    pub(crate) catalog: &'a StageCatalog,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        options: &'a ClientOptions,
        config_path: Option<PathBuf>,
        out: &'a mut (dyn Write + Send),
        terminal: bool,
        catalog: &'a StageCatalog,
    ) -> Self {
        Self {
            options,
            config_path,
            format: options.output.unwrap_or_default(),
            out,
            terminal,
            catalog,
        }
    }

    /// The API client, resolved on first need so offline commands never read the config.
    pub(crate) fn client(&self) -> Result<ApiClient, CliError> {
        ApiClient::new(Settings::resolve(
            self.options,
            self.config_path.as_deref(),
        )?)
    }

    /// Prints one line for people; JSON and YAML output stay machine-readable, so
    /// confirmations are dropped there.
    pub(crate) fn say(&mut self, message: &str) -> Result<(), CliError> {
        if self.format == OutputFormat::Table {
            writeln!(self.out, "{}", output::escape_controls_keep_lines(message))?;
        }
        Ok(())
    }
}

/// Runs one command.
pub(crate) async fn dispatch(ctx: &mut Context<'_>, request: Request) -> Result<(), CliError> {
    let command = match request {
        Request::Client(command) => command,
        Request::CanaryConfig(command) => return canary_config::run(ctx, command).await,
    };
    match command {
        ClientCommand::App(command) => app::run(ctx, command).await,
        ClientCommand::Pipeline(command) => pipeline::run(ctx, command).await,
        ClientCommand::Execution(command) => execution::run(ctx, command).await,
        ClientCommand::Cluster(command) => infrastructure::clusters(ctx, command).await,
        ClientCommand::ServerGroup(command) => infrastructure::server_group(ctx, command).await,
        ClientCommand::LoadBalancer(command) => infrastructure::load_balancers(ctx, command).await,
        ClientCommand::User(command) => user::run(ctx, command).await,
        ClientCommand::Role(command) => role::run(ctx, command).await,
        ClientCommand::Token(command) => token::run(ctx, command).await,
        ClientCommand::Audit(args) => audit::run(ctx, args).await,
        ClientCommand::Trigger(command) => trigger::run(ctx, command).await,
        ClientCommand::Whoami => user::whoami(ctx).await,
        ClientCommand::StageTypes(args) => stage_types::run(ctx, args).await,
    }
}

/// Reads and parses a JSON or YAML document; syntax errors carry line and column.
pub(crate) fn read_document(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let format = detect_format(&path.to_string_lossy(), &text);
    parse_document(&text, format).map_err(|error| CliError::Syntax {
        path: path.to_owned(),
        error,
    })
}
