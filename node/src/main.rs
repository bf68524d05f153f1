//! `mc-node`: see `mc_node` for what it does, and `mc-node run --help`.

use clap::Parser;
use mc_node::cli::{Cli, Command, init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let config = args.resolve()?;
            init_logging(config.log_format)?;
            mc_node::runtime::run(config, shutdown_signal()).await
        }
        Command::Learn(args) => mc_node::cli_learn::run(args).await,
    }
}
