//! `demo-app`: see the library's documentation.

use clap::Parser;

/// The command line: the library's flags.
#[derive(Debug, Parser)]
#[command(name = "demo-app", about = "A tiny HTTP service for demos and tests")]
struct Cli {
    #[command(flatten)]
    args: demo_app::DemoAppArgs,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    demo_app::serve(Cli::parse().args).await
}
