//! The torch-free half of federated learning in Mission Control Mesh.
//!
//! Every region trains the campaign's model on its own data, signs the new
//! weights and sends them directly to the other participants; every node
//! checks what it receives and averages it into the next global model. This
//! crate holds the rules and the math of that exchange — what is signed, what
//! is accepted, how updates are chunked for the transport and how they are
//! aggregated — with no torch, no I/O, no clock and no randomness of its own,
//! so the real node and the simulator run the same code.
//!
//! It also holds the data side that needs no torch: model schemas, tables
//! and CSV import, the synthetic operations data the demos, the simulator
//! and the benchmarks train on, and the scores, baselines and drift checks
//! that judge a model. Randomness, where needed, is a generator the caller
//! passes in.
//!
//! # Inputs and outputs
//!
//! - A participant hands [`update::sign`] its key, the round's identity
//!   (campaign, round, hash of the base model), its sample count and its
//!   weights, and gets a [`SignedUpdate`]. [`SignedUpdate::encode`] gives its
//!   wire bytes, and [`chunk::split`] cuts those into transport-sized
//!   [`Chunk`]s.
//! - A receiver feeds chunks to a [`chunk::Reassembler`] (bounded memory per
//!   sender), decodes the bytes with [`SignedUpdate::decode`] and offers the
//!   update to the round's [`round::Collector`], which accepts it or says why
//!   not ([`round::Rejection`]): bad signature, not a participant, wrong
//!   campaign / round / base / shape, non-finite, too large, duplicate,
//!   equivocation (kept as checkable [`round::Evidence`]).
//! - When the caller closes the round (all participants reported, or its own
//!   deadline passed), [`round::Collector::aggregate`] applies an
//!   [`aggregate::Rule`] — FedAvg, coordinate-wise median, trimmed mean or
//!   Multi-Krum — and returns the next model, its hash and the digest of the
//!   accepted set.
//!
//! # Example
//!
//! Three participants sign, chunk and send their updates; a node puts them
//! back together, checks them and aggregates.
//!
//! ```
//! use mc_learn_core::aggregate::Rule;
//! use mc_learn_core::ed25519_dalek::SigningKey;
//! use mc_learn_core::round::{Collector, Config, NormBound};
//! use mc_learn_core::{CampaignId, SignedUpdate, chunk, model_hash, update};
//! use rand::{SeedableRng, rngs::ChaCha8Rng};
//!
//! let mut rng = ChaCha8Rng::seed_from_u64(1);
//! let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate(&mut rng)).collect();
//! let campaign = CampaignId::from_name("anomaly-detector");
//! let base = vec![0.0f32; 1000];
//! let mut collector = Collector::new(Config {
//!     campaign,
//!     round: 0,
//!     base_hash: model_hash(&base),
//!     num_params: 1000,
//!     participants: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
//!     norm_bound: NormBound::Delta { base: base.clone().into(), max: 100.0 },
//! })?;
//! let mut reassembler = chunk::Reassembler::new(chunk::Limits::default());
//! for (sender, key) in keys.iter().enumerate() {
//!     let weights = vec![sender as f32; 1000];
//!     let update = update::sign(key, campaign, 0, model_hash(&base), 100, weights)?;
//!     // Across the transport in chunks of at most 1 KiB, in any order.
//!     for piece in chunk::split(&update.encode(), 1024)?.into_iter().rev() {
//!         if let Some(bytes) = reassembler.insert(sender, piece)? {
//!             collector.offer(SignedUpdate::decode(&bytes, 1 << 20)?)?;
//!         }
//!     }
//! }
//! assert!(collector.is_complete());
//! let outcome = collector.aggregate(Rule::Median)?;
//! assert_eq!(outcome.model, vec![1.0; 1000]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Determinism
//!
//! Aggregation depends on the *set* of accepted updates only: inputs are put
//! in a canonical order, every sum has a fixed order, and parallel work is
//! split at constant boundaries and reduced in a fixed order. Nodes that
//! accepted the same updates (equal [`round::Collector::accepted_digest`])
//! hold byte-identical models, whatever the arrival order or thread count.
//!
//! # Layout
//!
//! - [`digest`]: [`Digest`] (BLAKE3), [`CampaignId`], [`AuthorKey`] and
//!   [`model_hash`], the hash of a model's little-endian bytes.
//! - [`update`]: [`UpdateHeader`], [`SignedUpdate`], signing, verification
//!   and the size-bounded wire encoding ([`update::UpdateError`]).
//! - [`chunk`]: [`Chunk`], [`chunk::split`] and the [`chunk::Reassembler`]
//!   ([`chunk::ChunkError`]).
//! - [`round`]: [`round::Collector`] for one round, its [`round::Config`],
//!   [`round::Rejection`] and [`round::Evidence`].
//! - [`aggregate`]: [`aggregate::Rule`] and [`aggregate::aggregate`]
//!   ([`aggregate::AggregateError`]).
//! - [`schema`]: [`ModelSchema`] and [`Task`], what a model is; the built-in
//!   operations models.
//! - [`dataset`]: [`Dataset`], a model's feature rows and targets in time
//!   order, split by time for testing.
//! - [`table`]: [`Table`], named numeric columns; [`Table::select`] takes a
//!   schema's columns, [`Table::to_csv`] writes them out.
//! - [`csv`]: [`csv::parse_csv`], the checked import of an uploaded file, and
//!   its errors by line and column ([`csv::CsvError`], [`csv::RowError`]).
//! - [`synth`]: synthetic hourly operations data with one shared ground
//!   truth and non-IID organisations ([`synth::OrgProfile`],
//!   [`synth::consortium`], [`synth::generate`]).
//! - [`metrics`]: R², MAE, RMSE, [`metrics::Classification`], the mean and
//!   last-value baselines, and drift ([`metrics::psi`],
//!   [`metrics::DriftDetector`]).
//! - [`scaffold`]: drift correction for non-IID members, SCAFFOLD-style
//!   control variates in the space of weight displacements (not to be
//!   confused with data drift, [`metrics::drift`]).
//! - [`evaluate`]: scores of predictions and the baseline comparison of
//!   custom training; [`worker`]: the protocol between a node and its
//!   learning worker process.
//! - [`plan`]: what a campaign's participants do in a round (the same
//!   number of local steps, a decaying learning rate) and how round 0's
//!   moments are pooled under FedAvg and under robust rules; [`campaign`]:
//!   the rounds of a campaign as one sans-IO state machine
//!   ([`campaign::Campaign`]) that the node core and the benchmark drive.
//! - `kernel` (private): the fixed-order numeric loops aggregation
//!   relies on for bit-identical results; `wire` (private): serde adapters
//!   for byte fields.
//!
//! # Performance
//!
//! `cargo bench -p mc-learn-core` measures verifying 100 signed updates of
//! 1,000,000 parameters and aggregating them with each rule.

pub mod aggregate;
pub mod campaign;
pub mod chunk;
pub mod csv;
pub mod dataset;
pub mod digest;
pub mod evaluate;
pub mod init;
mod kernel;
pub mod metrics;
pub mod plan;
pub mod round;
pub mod scaffold;
pub mod schema;
pub mod synth;
pub mod table;
pub mod update;
mod wire;
pub mod worker;

/// The ed25519 implementation the signatures use, for callers that make keys.
pub use ed25519_dalek;

pub use chunk::Chunk;
pub use dataset::Dataset;
pub use digest::{AuthorKey, CampaignId, Digest, model_hash};
pub use evaluate::{Evaluation, Scores};
pub use schema::{ModelSchema, TargetScale, Task};
pub use table::Table;
pub use update::{SignedUpdate, UpdateHeader};
