//! `gennaker`: the one binary. `server` runs the platform; the other verbs are clients
//! of its API, or offline tools (`pipeline validate`, `expr eval`, `canary judge`).

mod canary_cmd;
mod demo;
mod expr_cmd;
mod server_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gennaker_cli::{ClientCommand, ClientOptions};

/// Continuous delivery in one binary: applications, pipelines, deployments, canaries.
#[derive(Debug, Parser)]
#[command(name = "gennaker", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Gennaker server (API, engine, providers).
    Server(server_cmd::ServerArgs),
    /// A real release on the embedded defaults: four versions of a demo service behind
    /// a load balancer, under traffic (red/black, rolling, an automatic rollback).
    Demo(demo::DemoArgs),
    /// The demo's HTTP service (what `gennaker demo` deploys).
    #[command(hide = true, disable_version_flag = true)]
    DemoApp(demo_app::DemoAppArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Pipeline expressions, offline.
    #[command(subcommand)]
    Expr(expr_cmd::ExprCommand),
    /// Canary analysis, offline.
    #[command(subcommand)]
    Canary(canary_cmd::CanaryCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => report(server_cmd::run(args).await),
            Command::Demo(args) => report(demo::run(args).await),
            Command::DemoApp(args) => match demo_app::serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: demo-app: {err}");
                    ExitCode::FAILURE
                }
            },
            Command::Client(command) => {
                match gennaker_cli::run(&cli.client, command, &gennaker::wiring::offline_catalog())
                    .await
                {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("error: {err}");
                        // A watched execution's outcome has its own status (see --help).
                        ExitCode::from(err.exit_code())
                    }
                }
            }
            Command::Expr(command) => expr_cmd::run(command, cli.client.output),
            Command::Canary(command) => report(canary_cmd::run(command, cli.client.output)),
        }
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing flags (e.g. a subcommand's `--version` against the global one)
        // before a user does.
        super::Cli::command().debug_assert();
    }
}
