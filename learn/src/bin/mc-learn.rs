//! `mc-learn`: benchmarks of the learning stack.
//!
//! This file is only the command line and its dispatch; the work is done by
//! [`mc_learn::bench`].
//!
//! ```text
//! mc-learn bench federated [--orgs 20] [--seed 1] [--rounds 60] [--local-epochs 2]
//!                          [--rule fedavg] [--byzantine-fraction 0.2] [--json PATH] …
//! ```
//!
//! Progress goes to stderr, the report to stdout (and, with `--json`, to a
//! file).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use mc_learn::bench::{self, Options, campaign::OfferOrder};
use mc_learn_core::aggregate::Rule;

#[derive(Debug, Parser)]
#[command(
    name = "mc-learn",
    version,
    about = "Benchmarks of Mission Control Mesh learning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Local-only vs central vs federated on synthetic non-IID operations
    /// data, and the aggregation rules under Byzantine participants.
    Federated(FederatedArgs),
}

#[derive(Debug, Args)]
struct FederatedArgs {
    /// Built-in regression model to train.
    #[arg(long, default_value = "latency")]
    model: String,
    /// Organisations in the synthetic consortium.
    #[arg(long, default_value_t = Options::default().orgs)]
    orgs: usize,
    /// Seed of the data, keys, initial weights and training.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Federated model rounds (after the moments round).
    #[arg(long, default_value_t = Options::default().rounds)]
    rounds: u32,
    /// Local epochs per federated round.
    #[arg(long, default_value_t = Options::default().local_epochs)]
    local_epochs: u32,
    /// Local learning rate in federated rounds (the node's campaign default).
    #[arg(long, default_value_t = Options::default().learning_rate)]
    learning_rate: f64,
    /// Local batch size in federated rounds (the node's campaign default).
    #[arg(long, default_value_t = Options::default().batch_size)]
    batch_size: usize,
    /// Aggregation rule of the federated run: fedavg, median,
    /// trimmed-mean:<trim>, multi-krum:f=<f>,m=<m>.
    #[arg(long, default_value = "fedavg")]
    rule: Rule,
    /// Correct client drift with control variates (SCAFFOLD-style, in
    /// displacement space; see `mc_learn_core::scaffold`): true or false
    /// (default: a campaign's, on under fedavg and off under a robust rule).
    #[arg(long)]
    drift_correction: Option<bool>,
    /// The last round's learning rate as a fraction of round 1's (1 keeps
    /// it constant).
    #[arg(long, default_value_t = Options::default().final_rate_fraction)]
    final_rate_fraction: f64,
    /// How the campaigns draw their starting weights: he_uniform or torch.
    #[arg(long, default_value = mc_learn_core::init::DEFAULT_INIT.as_str())]
    init: mc_learn_core::init::Init,
    /// Epochs of the local-only and central models.
    #[arg(long, default_value_t = Options::default().baseline_epochs)]
    baseline_epochs: usize,
    /// Layers, the last ones, each organisation retrains when personalising
    /// the federated model on its own rows (0 skips personalisation).
    #[arg(long, default_value_t = Options::default().personalise_layers)]
    personalise_layers: usize,
    /// Epochs of personalising.
    #[arg(long, default_value_t = Options::default().personalise_epochs)]
    personalise_epochs: usize,
    /// Adam's learning rate when personalising.
    #[arg(long, default_value_t = Options::default().personalise_learning_rate)]
    personalise_learning_rate: f64,
    /// Fraction of Byzantine participants (0 skips the Byzantine runs).
    #[arg(long, default_value_t = Options::default().byzantine_fraction)]
    byzantine_fraction: f64,
    /// Write the campaign's global model to this file (safetensors).
    #[arg(long)]
    save_federated: Option<PathBuf>,
    /// Read the global model from this file (one --save-federated wrote
    /// with the same model, organisations and seed) instead of running the
    /// campaign; needs --byzantine-fraction 0.
    #[arg(long, conflicts_with = "save_federated")]
    federated_from: Option<PathBuf>,
    /// Run the Byzantine runs for this rule only (fedavg, median,
    /// trimmed-mean, multi-krum); repeat for several; all when left out.
    #[arg(long = "byzantine-rule", value_parser = ["fedavg", "median", "trimmed-mean", "multi-krum"])]
    byzantine_rules: Vec<String>,
    /// s of the sign-flip attack: w' = base − s·(w − base).
    #[arg(long, default_value_t = Options::default().flip_scale)]
    flip_scale: f32,
    /// k of the scaling attack: w' = base + k·(w − base).
    #[arg(long, default_value_t = Options::default().scale_factor)]
    scale_factor: f32,
    /// Byzantine participants train without the drift correction they are
    /// given before corrupting their update.
    #[arg(long)]
    byzantine_skip_correction: bool,
    /// Bound on ‖update − base‖₂ (the node's default).
    #[arg(long, default_value_t = Options::default().max_update_norm)]
    max_update_norm: f64,
    /// Keep only each organisation's earliest rows (quick runs).
    #[arg(long)]
    max_rows: Option<usize>,
    /// Threads training participants in parallel within a round.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// libtorch's intra-op threads. The layers are tiny, so more threads
    /// only add synchronisation (20× slower with 2 on a busy 2-core
    /// machine); use --jobs for parallelism.
    #[arg(long, default_value_t = 1)]
    torch_threads: i32,
    /// Where models train.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    /// Order in which updates reach each round's collector; the models must
    /// not depend on it.
    #[arg(long, value_enum, default_value_t = OrderArg::Forward)]
    offer_order: OrderArg,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// The GPU when libtorch sees one, else the CPU.
    Auto,
    /// The CPU (bit-reproducible).
    Cpu,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrderArg {
    Forward,
    Reverse,
    Shuffled,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bench {
            bench: Bench::Federated(args),
        } => federated(args),
    }
}

fn federated(a: FederatedArgs) -> Result<()> {
    mc_learn::tch::set_num_threads(a.torch_threads);
    let opts = Options {
        model: a.model,
        orgs: a.orgs,
        seed: a.seed,
        max_rows: a.max_rows,
        rounds: a.rounds,
        local_epochs: a.local_epochs,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        baseline_epochs: a.baseline_epochs,
        personalise_layers: a.personalise_layers,
        personalise_epochs: a.personalise_epochs,
        personalise_learning_rate: a.personalise_learning_rate,
        rule: a.rule,
        drift_correction: a.drift_correction,
        max_update_norm: a.max_update_norm,
        byzantine_fraction: a.byzantine_fraction,
        save_federated: a.save_federated,
        federated_from: a.federated_from,
        byzantine_rule_names: a.byzantine_rules,
        byzantine_skip_correction: a.byzantine_skip_correction,
        final_rate_fraction: a.final_rate_fraction,
        init: a.init,
        flip_scale: a.flip_scale,
        scale_factor: a.scale_factor,
        offer_order: match a.offer_order {
            OrderArg::Forward => OfferOrder::Forward,
            OrderArg::Reverse => OfferOrder::Reverse,
            OrderArg::Shuffled => OfferOrder::Shuffled(a.seed),
        },
        jobs: a.jobs,
        device: match a.device {
            DeviceArg::Auto => mc_learn::default_device(),
            DeviceArg::Cpu => mc_learn::tch::Device::Cpu,
        },
        ..Options::default()
    };
    let report = bench::federated(&opts, &mut |line| eprintln!("{line}"))?;
    print!("{}", bench::render::render(&report));
    if let Some(path) = a.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
