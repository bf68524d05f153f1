//! The torch half of federated learning in Mission Control Mesh: the model
//! every region trains, and the training itself.
//!
//! A [`ModelSchema`] (from `mc_learn_core`) fixes a model: its task, its
//! feature and target columns and its hidden layers. This crate turns it
//! into an [`Mlp`] (Linear layers, ReLU between them) with a [`Normaliser`]
//! in front, trains it with Adam on a [`Dataset`], scores it, and moves its
//! weights in and out as a flat `Vec<f32>` (what a federated round signs
//! and averages) or as a safetensors file (what PyTorch reads).
//!
//! # Inputs and outputs
//!
//! - In: a schema, rows in time order, a [`TrainConfig`] (its `seed` drives
//!   every random choice: there is no global random number generator) and a
//!   device ([`default_device`]: the GPU when there is one).
//! - Out: a [`Model`]; its [`Model::flat_weights`] in a fixed order (see
//!   [`mlp`]), identical on every node; its predictions and an
//!   [`Evaluation`]; its safetensors bytes ([`model_file`]).
//! - Three workflows on top: [`custom::train`] (a node's own model, tested
//!   on its latest 20 % of rows against naive baselines and activated only
//!   above a score floor), [`transfer::fine_tune`] (retrain the last layers
//!   of someone else's model) and [`federated::local_update`] (one
//!   participant's step of a federated round).
//!
//! # Example
//!
//! ```
//! use mc_learn::{Model, Normaliser, TrainConfig};
//! use mc_learn_core::{Dataset, ModelSchema, Task};
//! use rand::{SeedableRng, rngs::ChaCha8Rng};
//!
//! let schema = ModelSchema {
//!     name: "double".into(),
//!     task: Task::Regression,
//!     features: vec!["x".into()],
//!     target: "y".into(),
//!     hidden_layers: vec![8],
//!     target_scale: Default::default(),
//!     log_features: Vec::new(),
//! };
//! let mut data = Dataset::empty(schema.features.clone(), schema.target.clone());
//! for i in 0..200 {
//!     let x = i as f32 / 100.0;
//!     data.push(&[x], 2.0 * x);
//! }
//! let cfg = TrainConfig { epochs: 30, learning_rate: 1e-2, device: mc_learn::tch::Device::Cpu, ..TrainConfig::default() };
//! let normaliser = Normaliser::fit(&schema, &data)?;
//! let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
//! let mut model = Model::init(&schema, normaliser, &mut rng, cfg.device)?;
//! model.train_with_rng(&data, &cfg, &mut rng)?;
//! assert!(model.evaluate(&data)?.score() > 0.9);
//! assert_eq!(model.flat_weights().len(), schema.num_params());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Determinism
//!
//! Initial weights come from a seeded [`rand::rngs::ChaCha8Rng`] and are
//! written through [`Model::set_flat_weights`]; minibatch order comes from
//! the same kind of rng. On the CPU, the same seed, data and settings give
//! bit-identical weights. On a GPU, libtorch's kernels may not be
//! bit-reproducible; federation does not need them to be, because
//! aggregation (in `mc_learn_core`) works on the exchanged flat vectors.
//!
//! # Linking libtorch
//!
//! `scripts/setup.sh` installs PyTorch 2.13.0 and links it as `.libtorch`,
//! which `.cargo/config.toml` names as `LIBTORCH`. This crate's `build.rs`
//! puts libtorch's folder in the rpath of its tests; a package that builds
//! its own binaries or tests with this crate reuses that script (see
//! `learn/build.rs`).
//!
//! # Layout
//!
//! - [`mlp`]: [`Mlp`], the network, its parameter names, flat order and
//!   seeded initialisation.
//! - [`normalise`]: [`Normaliser`] and the [`Moments`] a federation pools.
//! - [`model`]: [`Model`] (schema + normaliser + network), [`TrainConfig`],
//!   training, prediction, evaluation, and [`ModelError`].
//! - [`evaluate`]: [`Scores`] (R², MAE; accuracy, precision, recall, F1) and
//!   [`Evaluation`].
//! - [`model_file`]: safetensors bytes and files, and [`FileError`].
//! - [`custom`], [`transfer`], [`federated`]: the three workflows.
//! - [`mod@bench`]: `mc-learn bench federated`, local-only vs central vs
//!   federated training on synthetic non-IID data, and the aggregation
//!   rules under Byzantine participants (the binary is
//!   `src/bin/mc-learn.rs`).

pub mod bench;
pub mod custom;
/// Scores and evaluations (in `mc_learn_core`, so that tch-free code can
/// read them).
pub use mc_learn_core::evaluate;
pub mod federated;
pub mod mlp;
pub mod model;
pub mod model_file;
pub mod normalise;
pub mod optim;
pub mod transfer;
pub mod worker;

pub use evaluate::{Evaluation, Scores};
pub use mlp::Mlp;
pub use model::{Model, ModelError, Optimiser, TrainConfig, TrainReport};
pub use model_file::FileError;
pub use normalise::{Moments, Normaliser};

/// The tch crate this one is built on, for callers that name devices.
pub use tch;

/// The GPU when libtorch sees one, otherwise the CPU.
pub fn default_device() -> tch::Device {
    tch::Device::cuda_if_available()
}

#[doc(no_inline)]
pub use mc_learn_core::{Dataset, ModelSchema, Task};
