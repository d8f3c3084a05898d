//! Gennaker's command-line client: `gennaker app|pipeline|execution|user|role|token|audit|whoami`,
//! and `gennaker canary config` ([`CanaryConfigCommand`]).
//!
//! The binary flattens [`ClientOptions`] into its top-level parser and [`ClientCommand`]
//! into its subcommands, scopes the options to the client commands
//! ([`ClientOptions::scope`]), then calls [`run`] and prints a [`CliError`] to stderr. Commands
//! follow `spin`'s shape (`app list`, `pipeline save -f`, `-o json|yaml`) over Gennaker's
//! `/api/v1`. `pipeline validate` works offline with the same rules the server applies.
//! `pipeline run --watch` and `execution watch` follow an execution over server-sent
//! events and exit with its outcome ([`CliError::exit_code`]), so CI scripts can use them.
//!
//! The server URL and token come from `--url`/`--token`, then `GENNAKER_URL`/
//! `GENNAKER_TOKEN`, then `url`/`token` in `~/.config/gennaker/config.toml`, then
//! `http://127.0.0.1:7777` with no token. The file's token is only ever sent to the file's
//! server: another `--url` needs its own `--token`.

mod args;
mod client;
mod commands;
mod config;
mod error;
mod output;
mod status;
mod view;

use gennaker_core::StageCatalog;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub use args::{
    AppCommand, AppSaveArgs, AuditArgs, CanaryConfigCommand, ClientCommand, ClientOptions,
    ExecutionCommand, PipelineCommand, RoleCommand, RunArgs, StageTypesArgs, TokenCommand,
    TriggerCommand, UserCommand,
};
pub use commands::canary_report::CanaryReportArgs;
pub use config::TokenSource;
pub use error::{
    CliError, EXIT_CANCELED, EXIT_FAILURE, EXIT_OTHER_END, EXIT_SUCCESS, EXIT_TERMINAL,
    EXIT_TIMEOUT,
};
pub use output::{OutputFormat, escape_controls, escape_controls_keep_lines};
pub use status::ReportedStatus;

/// What the client runs: one of its top-level commands, or a group the binary places
/// under a command of its own (`gennaker canary config …`, beside the offline judge).
#[derive(Debug)]
pub enum Request {
    /// A top-level client command.
    Client(ClientCommand),
    /// `gennaker canary config …`.
    CanaryConfig(CanaryConfigCommand),
}

impl From<ClientCommand> for Request {
    fn from(command: ClientCommand) -> Self {
        Request::Client(command)
    }
}

impl From<CanaryConfigCommand> for Request {
    fn from(command: CanaryConfigCommand) -> Self {
        Request::CanaryConfig(command)
    }
}

/// Runs a client command, printing its result to stdout and reading the user's
/// `config.toml` for settings the options leave open. Offline validation checks stages
/// against `catalog` (the binary's assembled stage types).
pub async fn run(
    options: &ClientOptions,
    command: impl Into<Request>,
    catalog: &StageCatalog,
) -> Result<(), CliError> {
    let config = config::default_config_path();
    let mut stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut ctx = commands::Context::new(options, config, &mut stdout, terminal, catalog);
    let result = commands::dispatch(&mut ctx, command.into()).await;
    match result.and_then(|()| Ok(stdout.flush()?)) {
        // `gennaker app list | head` closes the pipe early; that is not a failure.
        Err(CliError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs `gennaker canary report` (a client verb the binary places under its own
/// `canary` command), printing to stdout with the user's `config.toml` as [`run`] does.
pub async fn run_canary_report(
    options: &ClientOptions,
    args: CanaryReportArgs,
) -> Result<(), CliError> {
    let config = config::default_config_path();
    let mut stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let catalog = StageCatalog::default();
    let mut ctx = commands::Context::new(options, config, &mut stdout, terminal, &catalog);
    let result = commands::canary_report::run(&mut ctx, args).await;
    match result.and_then(|()| Ok(stdout.flush()?)) {
        Err(CliError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs a client command with an explicit config file (`None`: none at all) and output
/// sink; for tests and embedding, where the user's own config must not leak in. Live
/// views append (as when stdout is not a terminal).
pub async fn run_with(
    options: &ClientOptions,
    command: impl Into<Request>,
    config_file: Option<&Path>,
    out: &mut (dyn Write + Send),
    catalog: &StageCatalog,
) -> Result<(), CliError> {
    let config_file = config_file.map(Path::to_owned);
    let mut ctx = commands::Context::new(options, config_file, out, false, catalog);
    commands::dispatch(&mut ctx, command.into()).await
}
