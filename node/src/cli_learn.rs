//! `mc-node learn …`: the learning API from the command line.
//!
//! Every subcommand except `generate` talks to a running node's HTTP API —
//! the same handlers and the same code as any other client — found with
//! `--api URL` or read from `--data-dir DIR/node.json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde_json::{Value, json};

use crate::runtime::ReadyFile;

/// Where the node's API is.
#[derive(Debug, Args)]
pub struct Target {
    /// The node's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// The node's data directory (its node.json names the API address).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// The API token to send; default: DATA_DIR/admin.token when --data-dir
    /// is given.
    #[arg(long, global = true, env = "MC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `mc-node learn` and its subcommands.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Which node.
    #[command(flatten)]
    pub target: Target,
    /// What to do.
    #[command(subcommand)]
    pub command: LearnCommand,
}

/// Learning subcommands.
#[derive(Debug, Subcommand)]
pub enum LearnCommand {
    /// List the node's models.
    Models,
    /// Declare a model from a schema JSON file.
    Declare {
        /// The schema: {"name","task","features","target","hidden_layers"},
        /// optionally "target_scale" and "log_features".
        #[arg(long)]
        schema: PathBuf,
    },
    /// Import a CSV for a model (all rows or none).
    Import {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// The model.
        #[arg(long)]
        model: String,
        /// Replace earlier rows instead of appending.
        #[arg(long)]
        replace: bool,
    },
    /// Custom training on the node's data.
    Train {
        /// The model.
        #[arg(long)]
        model: String,
        /// Epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Activation floor (default 0.7).
        #[arg(long)]
        floor: Option<f64>,
    },
    /// Fine-tune the last k layers of the active (or a given) model.
    Transfer {
        /// The model.
        #[arg(long)]
        model: String,
        /// Layers to fine-tune, the last ones; all of them (a built-in
        /// model has 3, a schema with h hidden layers h + 1) to personalise
        /// a campaign's model.
        #[arg(long, default_value_t = 1)]
        k: usize,
        /// A base model as safetensors; default the active version.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Passes over the training rows.
        #[arg(long, default_value_t = mc_learn_core::evaluate::DEFAULT_FINE_TUNE_EPOCHS)]
        epochs: usize,
        /// Adam's learning rate.
        #[arg(long, default_value_t = mc_learn_core::evaluate::DEFAULT_FINE_TUNE_LEARNING_RATE)]
        learning_rate: f64,
    },
    /// Save the active version as safetensors.
    Weights {
        /// The model.
        #[arg(long)]
        model: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show accuracy, latency, baseline comparison and drift.
    Performance {
        /// The model.
        #[arg(long)]
        model: String,
    },
    /// Start a federated campaign and follow it to the end.
    Campaign {
        /// The model.
        #[arg(long)]
        model: String,
        /// Participants' peer ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        participants: Vec<String>,
        /// Model rounds.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Local epochs per round, of a member with the median row count
        /// (every participant runs the same number of steps).
        #[arg(long, default_value_t = mc_learn_core::plan::DEFAULT_LOCAL_EPOCHS)]
        local_epochs: u32,
        /// Rows per local optimiser step (default: the node's
        /// `DEFAULT_CAMPAIGN_BATCH`).
        #[arg(long)]
        batch_size: Option<u32>,
        /// Learning rate of round 1, decaying on a cosine to
        /// `--final-rate-fraction` of it by the last round (default: the
        /// node's `DEFAULT_CAMPAIGN_LR`).
        #[arg(long)]
        learning_rate: Option<f64>,
        /// The last round's learning rate as a fraction of round 1's, in
        /// (0, 1]; 1 keeps it constant (default: the node's
        /// `DEFAULT_FINAL_RATE_FRACTION`).
        #[arg(long)]
        final_rate_fraction: Option<f64>,
        /// Starting weights: torch or he_uniform (default: the node's
        /// `DEFAULT_CAMPAIGN_INIT`).
        #[arg(long)]
        init: Option<String>,
        /// Correct client drift with control variates: true or false
        /// (default: on under fedavg, off under a robust rule).
        #[arg(long)]
        drift_correction: Option<bool>,
        /// fedavg, median, trimmed-mean:0.2 or multi-krum:f=1,m=3.
        #[arg(long, default_value = "fedavg")]
        aggregation: String,
        /// Seconds a round waits for missing participants.
        #[arg(long, default_value_t = 30.0)]
        round_deadline_s: f64,
        /// Return after creating it instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Follow a campaign until it completes.
    Watch {
        /// The campaign id.
        #[arg(long)]
        id: String,
    },
    /// Write a synthetic operations data set (one CSV per organisation).
    Generate {
        /// Organisations.
        #[arg(long, default_value_t = 3)]
        orgs: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a learn subcommand.
pub async fn run(args: LearnArgs) -> anyhow::Result<()> {
    if let LearnCommand::Generate { orgs, seed, out } = &args.command {
        return generate(*orgs, *seed, out);
    }
    let api = args.target.resolve()?;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = args.target.token()? {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid HTTP header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .default_headers(headers)
        .build()?;
    let c = Client { api, http: client };
    match args.command {
        LearnCommand::Models => c.print(c.get("/v1/models").await?),
        LearnCommand::Declare { schema } => {
            let body = std::fs::read(&schema)
                .with_context(|| format!("cannot read {}", schema.display()))?;
            c.print(c.post("/v1/models", body).await?)
        }
        LearnCommand::Import {
            csv,
            model,
            replace,
        } => {
            let body =
                std::fs::read(&csv).with_context(|| format!("cannot read {}", csv.display()))?;
            let path = format!("/v1/learn/import?model={model}&replace={replace}");
            c.print(c.post(&path, body).await?)
        }
        LearnCommand::Train {
            model,
            epochs,
            floor,
        } => {
            let body = json!({ "epochs": epochs, "activation_floor": floor });
            let path = format!("/v1/models/{model}/train");
            c.print(c.post(&path, serde_json::to_vec(&body)?).await?)
        }
        LearnCommand::Transfer {
            model,
            k,
            base,
            epochs,
            learning_rate,
        } => {
            let body = match base {
                Some(p) => {
                    std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?
                }
                None => Vec::new(),
            };
            let path = format!(
                "/v1/models/{model}/transfer?k={k}&epochs={epochs}&learning_rate={learning_rate}"
            );
            c.print(c.post(&path, body).await?)
        }
        LearnCommand::Weights { model, out } => {
            let bytes = c.get_bytes(&format!("/v1/models/{model}/weights")).await?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} bytes to {}", bytes.len(), out.display());
            Ok(())
        }
        LearnCommand::Performance { model } => {
            c.print(c.get(&format!("/v1/models/{model}/performance")).await?)
        }
        LearnCommand::Campaign {
            model,
            participants,
            rounds,
            local_epochs,
            batch_size,
            learning_rate,
            final_rate_fraction,
            init,
            drift_correction,
            aggregation,
            round_deadline_s,
            no_wait,
        } => {
            let mut body = json!({
                "model": model, "rounds": rounds, "local_epochs": local_epochs,
                "participants": participants, "aggregation": aggregation,
                "round_deadline_s": round_deadline_s,
            });
            if let Some(batch_size) = batch_size {
                body["batch_size"] = json!(batch_size);
            }
            if let Some(drift_correction) = drift_correction {
                body["drift_correction"] = json!(drift_correction);
            }
            if let Some(learning_rate) = learning_rate {
                body["learning_rate"] = json!(learning_rate);
            }
            if let Some(fraction) = final_rate_fraction {
                body["final_rate_fraction"] = json!(fraction);
            }
            if let Some(init) = init {
                body["init"] = json!(init);
            }
            let created = c.post("/v1/campaigns", serde_json::to_vec(&body)?).await?;
            let id = created["id"].as_str().unwrap_or_default().to_string();
            println!("campaign {id}");
            if no_wait {
                return Ok(());
            }
            c.watch(&id).await
        }
        LearnCommand::Watch { id } => c.watch(&id).await,
        LearnCommand::Generate { .. } => unreachable!("handled above"),
    }
}

impl Target {
    /// `--token`, else the data dir's `admin.token` if there is one.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        let Some(dir) = &self.data_dir else {
            return Ok(None);
        };
        let path = dir.join(crate::auth::ADMIN_TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn resolve(&self) -> anyhow::Result<String> {
        if let Some(api) = &self.api {
            return Ok(api.trim_end_matches('/').to_string());
        }
        let Some(dir) = &self.data_dir else {
            bail!("say which node: --api http://HOST:PORT or --data-dir DIR of a running node");
        };
        let path = ReadyFile::path(dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is a node running with this data dir?",
                path.display()
            )
        })?;
        let ready: ReadyFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a node.json", path.display()))?;
        Ok(format!("http://{}", ready.http_addr))
    }
}

struct Client {
    api: String,
    http: reqwest::Client,
}

impl Client {
    async fn answer(&self, response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{}: {}",
                status,
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.api))?;
        self.answer(r).await
    }

    async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.api))?;
        if !r.status().is_success() {
            self.answer(r).await?;
            bail!("request failed");
        }
        Ok(r.bytes().await?.to_vec())
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.api))?;
        self.answer(r).await
    }

    fn print(&self, value: Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&value)?);
        Ok(())
    }

    /// Prints a progress line per round until the campaign completes.
    async fn watch(&self, id: &str) -> anyhow::Result<()> {
        let mut last = None;
        loop {
            let v = self.get(&format!("/v1/campaigns/{id}")).await?;
            let round = v["current_round"].as_u64().unwrap_or(0);
            let total = v["total_rounds"].as_u64().unwrap_or(0);
            let state = v["state"].as_str().unwrap_or("?").to_string();
            let line = (round, state.clone());
            if last.as_ref() != Some(&line) {
                let accepted = v["rounds"]
                    .as_array()
                    .and_then(|r| r.last())
                    .map(|r| r["accepted"].as_u64().unwrap_or(0))
                    .unwrap_or(0);
                let plan = match (v["local_steps"].as_u64(), v["round_learning_rate"].as_f64()) {
                    (Some(steps), Some(rate)) => {
                        format!("; {steps} local steps at rate {rate:.2e}")
                    }
                    _ => String::new(),
                };
                println!(
                    "campaign {id}: round {round}/{} {state} (last round accepted {accepted}{plan})",
                    total.saturating_sub(1)
                );
                last = Some(line);
            }
            if state == "completed" {
                println!("model hash {}", v["model_hash"].as_str().unwrap_or("?"));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn generate(orgs: usize, seed: u64, out: &PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let profiles = mc_learn_core::synth::consortium(orgs, &mut rng);
    for profile in &profiles {
        let table = mc_learn_core::synth::generate(profile, &mut rng)?;
        let path = out.join(format!("{}.csv", profile.name));
        std::fs::write(&path, table.to_csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}: {} rows", path.display(), table.len());
    }
    Ok(())
}
