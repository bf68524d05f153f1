//! The worker side of [`mc_learn_core::worker`]: the process that holds
//! libtorch for a node and runs its jobs one at a time.
//!
//! `mc-learn-worker` (a binary of the `mc-node` package) calls [`serve`] on
//! its standard input and output. The worker keeps nothing between jobs;
//! it exits when the node closes the pipe.

use std::io::{self, Read, Write};
use std::time::Instant;

use mc_learn_core::worker::{
    Failure, FrameError, Job, JsonText, Reply, TrainReportKind, TrainedReport, TransferredReport,
    read_frame, write_frame,
};
use mc_learn_core::{ModelSchema, model_hash};

use crate::federated::{campaign_update, normaliser_from_moments};
use crate::{Model, custom, default_device, transfer};

/// Answers jobs from `input` on `output` until `input` closes. A job that
/// fails is answered with [`Reply::Failed`]; only a broken pipe ends the
/// loop with an error.
pub fn serve(mut input: impl Read, mut output: impl Write) -> Result<(), FrameError> {
    loop {
        let job = match read_frame::<Job>(&mut input) {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(()),
            Err(FrameError::Malformed(e)) => {
                let reply = failed(Failure::Protocol, format!("unreadable job: {e}"));
                write_frame(&mut output, &reply)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let reply = run(job);
        write_frame(&mut output, &reply)?;
    }
}

/// Models below this many parameters train on one libtorch thread: their
/// operations are too small to split, and with several workers on one
/// machine (a testnet, or a node beside other services) idle intra-op
/// threads spinning for work starve the others. On 5 nodes of a 2-core
/// machine, 40 rounds of a 1,345-parameter model took 127 s with libtorch's
/// default threads and 7.5 s with one (`mc-testnet bench campaign`).
pub const SINGLE_THREAD_BELOW_PARAMS: usize = 1 << 17;

/// Environment variable that fixes the worker's libtorch threads.
pub const THREADS_ENV: &str = "MC_LEARN_THREADS";

/// libtorch's intra-op threads for a model of `params` parameters: the
/// value of [`THREADS_ENV`] when set, else 1 below
/// [`SINGLE_THREAD_BELOW_PARAMS`] and one per core above.
pub fn threads_for(params: usize, configured: Option<&str>) -> i32 {
    if let Some(n) = configured
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    if params < SINGLE_THREAD_BELOW_PARAMS {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
    }
}

/// Runs one job.
pub fn run(job: Job) -> Reply {
    if let Some(params) = job_params(&job) {
        let configured = std::env::var(THREADS_ENV).ok();
        tch::set_num_threads(threads_for(params, configured.as_deref()));
    }
    match job_result(job) {
        Ok(reply) => reply,
        Err((kind, message)) => failed(kind, message),
    }
}

/// The parameter count of the job's model, if its schema reads.
fn job_params(job: &Job) -> Option<usize> {
    let schema = match job {
        Job::Train { schema, .. }
        | Job::Transfer { schema, .. }
        | Job::Assess { schema, .. }
        | Job::Update { schema, .. }
        | Job::Finish { schema, .. } => schema,
    };
    schema.decode().ok().map(|s| s.num_params())
}

fn failed(kind: Failure, message: String) -> Reply {
    Reply::Failed { kind, message }
}

type JobResult = Result<Reply, (Failure, String)>;

fn model_failure(e: impl std::fmt::Display) -> (Failure, String) {
    (Failure::Model, e.to_string())
}

fn schema_of(schema: &JsonText<ModelSchema>) -> Result<ModelSchema, (Failure, String)> {
    schema
        .decode()
        .map_err(|e| (Failure::Protocol, format!("unreadable schema: {e}")))
}

fn job_result(job: Job) -> JobResult {
    match job {
        Job::Train {
            schema,
            data,
            epochs,
            learning_rate,
            seed,
            min_rows,
            activation_floor,
        } => {
            let schema = schema_of(&schema)?;
            let mut opts = custom::Options::default();
            opts.train.epochs = epochs.unwrap_or(opts.train.epochs);
            opts.train.learning_rate = learning_rate.unwrap_or(opts.train.learning_rate);
            opts.train.seed = seed.unwrap_or(opts.train.seed);
            opts.min_rows = min_rows.unwrap_or(opts.min_rows);
            opts.activation_floor = activation_floor.unwrap_or(opts.activation_floor);
            let report = custom::train(&schema, &data, &opts)
                .map_err(|e| (Failure::TrainingRefused, e.to_string()))?;
            trained(
                &report.model,
                TrainReportKind::Custom(JsonText::encode(&TrainedReport {
                    train_rows: report.train_rows,
                    test_rows: report.test_rows,
                    evaluation: report.evaluation,
                    baseline_vs_custom: report.baseline_vs_custom,
                    score: report.score,
                    activation_floor: report.activation_floor,
                    activated: report.activated,
                })),
            )
        }
        Job::Transfer {
            schema,
            data,
            base,
            k,
            epochs,
            learning_rate,
        } => {
            let schema = schema_of(&schema)?;
            let base = Model::from_safetensors_bytes(&schema, &base, default_device())
                .map_err(model_failure)?;
            let mut opts = transfer::Options::default();
            opts.fine_tune_epochs = epochs.unwrap_or(opts.fine_tune_epochs);
            opts.fine_tune_learning_rate = learning_rate.unwrap_or(opts.fine_tune_learning_rate);
            let report = transfer::fine_tune(&base, &data, k, &opts)
                .map_err(|e| (Failure::TransferRefused, e.to_string()))?;
            trained(
                &report.model,
                TrainReportKind::Transfer(JsonText::encode(&TransferredReport {
                    train_rows: report.train_rows,
                    trained_layers: report.trained_layers,
                    frozen_layers: report.frozen_layers,
                    base: report.base,
                    fine_tuned: report.fine_tuned,
                    scratch: report.scratch,
                    improvement_over_base_pct: report.improvement_over_base_pct,
                    improvement_over_scratch_pct: report.improvement_over_scratch_pct,
                })),
            )
        }
        Job::Assess {
            schema,
            weights,
            evaluate,
            predict,
        } => {
            let schema = schema_of(&schema)?;
            let model = Model::from_safetensors_bytes(&schema, &weights, default_device())
                .map_err(model_failure)?;
            let started = Instant::now();
            let evaluation = match &evaluate {
                Some(rows) => Some(JsonText::encode(
                    &model.evaluate(rows).map_err(model_failure)?,
                )),
                None => None,
            };
            let evaluate_nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let predictions = predict
                .iter()
                .map(|rows| model.predict(rows).map_err(model_failure))
                .collect::<Result<_, _>>()?;
            Ok(Reply::Assessed {
                evaluation,
                evaluate_nanos,
                predictions,
            })
        }
        Job::Update {
            schema,
            moments,
            base,
            data,
            plan,
            correction,
            seed,
        } => {
            let schema = schema_of(&schema)?;
            let (weights, rows) = campaign_update(
                &schema,
                &moments,
                &base,
                &data,
                &plan,
                correction.as_deref(),
                seed,
                default_device(),
            )
            .map_err(|e| (Failure::Model, e))?;
            Ok(Reply::Updated { weights, rows })
        }
        Job::Finish {
            schema,
            moments,
            weights,
            test,
        } => {
            let schema = schema_of(&schema)?;
            let normaliser =
                normaliser_from_moments(&schema, &moments).map_err(|e| (Failure::Model, e))?;
            let model = Model::from_flat(&schema, normaliser, &weights, default_device())
                .map_err(model_failure)?;
            let evaluation = match test.as_ref().filter(|t| !t.is_empty()) {
                Some(rows) => Some(JsonText::encode(
                    &model.evaluate(rows).map_err(model_failure)?,
                )),
                None => None,
            };
            Ok(Reply::Finished {
                weights: model.to_safetensors_bytes().map_err(model_failure)?,
                evaluation,
            })
        }
    }
}

fn trained(model: &Model, report: TrainReportKind) -> JobResult {
    Ok(Reply::Trained {
        weights: model.to_safetensors_bytes().map_err(model_failure)?,
        model_hash: model_hash(&model.flat_weights()).to_string(),
        report,
    })
}

/// [`serve`] on this process's standard input and output, with the exit
/// status a worker binary returns.
pub fn main() -> std::process::ExitCode {
    let stdin = io::stdin().lock();
    let stdout = io::BufWriter::new(io::stdout().lock());
    match serve(stdin, stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mc-learn-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_train_on_one_thread_unless_configured() {
        assert_eq!(threads_for(1_345, None), 1);
        assert_eq!(threads_for(1_345, Some("3")), 3);
        assert_eq!(threads_for(1_345, Some("zero")), 1);
        assert_eq!(threads_for(1_345, Some("0")), 1);
        assert!(threads_for(SINGLE_THREAD_BELOW_PARAMS, None) >= 1);
    }
}
