//! `gennaker`: the one binary. `server` runs the platform; the other verbs are clients
//! of its API, or offline tools (`pipeline validate`, `expr eval`, `canary judge`).

mod canary_cmd;
mod demo;
mod expr_cmd;
mod server_cmd;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use gennaker_cli::{ClientCommand, ClientOptions, PipelineCommand};
use gennaker_core::StageCatalog;

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
    /// A real release on the embedded defaults: six versions of a demo service behind
    /// a load balancer, under traffic (red/black, rolling, an automatic rollback, and
    /// two canary releases judged by automated canary analysis).
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

/// The command line: the client options go to the client commands, `-o` alone to the
/// offline tools, and nothing to the server and the demo, which use none of them.
fn command_line() -> clap::Command {
    let command = ClientOptions::scope(Cli::command(), &["expr"], &["server", "demo", "demo-app"]);
    // `canary judge` is offline (`-o` only); `canary config` and `canary report` are
    // clients of the server.
    command.mut_subcommand("canary", |canary| {
        ClientOptions::scope(canary, &["judge"], &[])
    })
}

fn parse() -> Cli {
    let mut command = command_line();
    let matches = command.clone().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.format(&mut command).exit())
}

fn main() -> ExitCode {
    let cli = parse();
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
                let catalog = match offline_catalog(&command) {
                    Ok(catalog) => catalog,
                    Err(err) => return report(Err(err)),
                };
                client(gennaker_cli::run(&cli.client, command, &catalog).await)
            }
            Command::Expr(command) => expr_cmd::run(command, cli.client.output),
            Command::Canary(canary_cmd::CanaryCommand::Judge(args)) => {
                report(canary_cmd::judge_command(args, cli.client.output))
            }
            Command::Canary(canary_cmd::CanaryCommand::Config(command)) => {
                let catalog = gennaker::wiring::offline_catalog(&[]);
                client(gennaker_cli::run(&cli.client, command, &catalog).await)
            }
            Command::Canary(canary_cmd::CanaryCommand::Report(args)) => {
                client(gennaker_cli::run_canary_report(&cli.client, args).await)
            }
        }
    })
}

/// The stage types `pipeline validate` checks against: the built-in ones, and those
/// the server's gennaker.toml defines when it is given (`--server-config`), with its
/// stage limit.
fn offline_catalog(command: &ClientCommand) -> anyhow::Result<StageCatalog> {
    let ClientCommand::Pipeline(PipelineCommand::Validate {
        server_config: Some(path),
        ..
    }) = command
    else {
        return Ok(gennaker::wiring::offline_catalog(&[]));
    };
    let server = server_cmd::validation_settings_in(path)?;
    let mut catalog = gennaker::wiring::offline_catalog(&server.webhooks);
    catalog.set_max_stages(server.max_pipeline_stages);
    Ok(catalog)
}

/// The exit of a client command: its error on stderr, with the status it asks for.
fn client(result: Result<(), gennaker_cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Server messages quote names, which may hold control characters.
            let message = err.to_string();
            eprintln!(
                "error: {}",
                gennaker_cli::escape_controls_keep_lines(&message)
            );
            // A watched execution's outcome has its own status (see --help).
            ExitCode::from(err.exit_code())
        }
    }
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
    use clap::FromArgMatches;

    use super::{Cli, Command, command_line};

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let matches = command_line().try_get_matches_from(argv)?;
        Cli::from_arg_matches(&matches)
    }

    #[test]
    fn the_command_line_is_consistent() {
        // Catches clashing flags (e.g. a subcommand's `--version` against the global one)
        // before a user does.
        command_line().debug_assert();
    }

    #[test]
    fn client_options_come_before_or_after_a_client_command() {
        for argv in [
            ["gennaker", "--url", "http://a", "app", "list"],
            ["gennaker", "app", "--url", "http://a", "list"],
            ["gennaker", "app", "list", "--url", "http://a"],
        ] {
            let cli = parse(&argv).unwrap();
            assert_eq!(cli.client.url.as_deref(), Some("http://a"), "{argv:?}");
            assert!(matches!(cli.command, Command::Client(_)));
        }
        let cli = parse(&["gennaker", "expr", "eval", "${1}", "-o", "json"]).unwrap();
        assert!(cli.client.output.is_some());
        // `canary config` and `canary report` talk to a server: they take every client
        // option, anywhere.
        for argv in [
            &["gennaker", "--url", "http://a", "canary", "config", "list"][..],
            &["gennaker", "canary", "--url", "http://a", "config", "list"],
            &["gennaker", "canary", "config", "list", "--url", "http://a"],
            &["gennaker", "--url", "http://a", "canary", "report", "x"],
            &["gennaker", "canary", "--url", "http://a", "report", "x"],
            &[
                "gennaker", "canary", "report", "x", "--url", "http://a", "-o", "json",
            ],
        ] {
            let cli = parse(argv).unwrap();
            assert_eq!(cli.client.url.as_deref(), Some("http://a"), "{argv:?}");
        }
        let cli = parse(&[
            "gennaker", "canary", "config", "get", "x", "-o", "yaml", "--token", "t",
        ])
        .unwrap();
        assert_eq!(cli.client.token.as_deref(), Some("t"));
        assert!(cli.client.output.is_some());
        let cli = parse(&[
            "gennaker", "canary", "judge", "--config", "c", "--data", "d", "-o", "json",
        ])
        .unwrap();
        assert!(cli.client.output.is_some());
    }

    #[test]
    fn the_server_the_demo_and_offline_tools_refuse_options_they_do_not_use() {
        for argv in [
            &["gennaker", "server", "--url", "http://a"][..],
            &["gennaker", "demo", "--token", "t"],
            &["gennaker", "demo-app", "-o", "json"],
            &["gennaker", "expr", "eval", "${1}", "--url", "http://a"],
            &[
                "gennaker", "canary", "judge", "--config", "c", "--data", "d", "--url", "http://a",
            ],
        ] {
            let err = parse(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} parsed"));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn the_demo_refuses_a_rate_too_low_for_its_canary_analysis() {
        let err = parse(&["gennaker", "demo", "--rate", "10"])
            .err()
            .unwrap_or_else(|| panic!("--rate 10 parsed"));
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("50..=2000"), "{err}");
        assert!(parse(&["gennaker", "demo", "--rate", "50"]).is_ok());
    }
}
