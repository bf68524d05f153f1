//! A trained (or trainable) model: a schema, its [`Normaliser`] and its
//! [`Mlp`], with training, prediction and evaluation.

use std::time::{Duration, Instant};

use mc_learn_core::schema::SchemaError;
use mc_learn_core::{Dataset, ModelSchema, TargetScale, Task};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::ChaCha8Rng};
use tch::{Device, Kind, Tensor};

use crate::evaluate::{Evaluation, Scores};
use crate::mlp::{Loss, Mlp};
use crate::normalise::Normaliser;
use crate::optim::FlatOptimiser;

/// Rows per forward pass when predicting, to bound memory on big tables.
const PREDICT_CHUNK: usize = 65_536;

/// Why a model could not be built, trained or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The schema failed validation.
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
    /// Layer sizes with fewer than two entries or a zero width.
    #[error("layer sizes {0:?}: need inputs and an output, none zero")]
    BadLayerSizes(Vec<usize>),
    /// A flat weight vector does not have one value per parameter.
    #[error("{got} weights for a model of {expected} parameters")]
    WrongLength {
        /// The model's number of parameters.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A weight is NaN or infinite.
    #[error("weight {index} is not finite")]
    NonFiniteWeight {
        /// Position in the flat vector.
        index: usize,
    },
    /// The table's columns are not the schema's.
    #[error(
        "table columns {got:?} -> {got_target:?} do not match the schema's {expected:?} -> {expected_target:?}"
    )]
    Columns {
        /// The schema's feature columns.
        expected: Vec<String>,
        /// The schema's target column.
        expected_target: String,
        /// The table's feature columns.
        got: Vec<String>,
        /// The table's target column.
        got_target: String,
    },
    /// The table's value count is not rows × features.
    #[error("table has {values} feature values for {rows} rows of {features} features")]
    Ragged {
        /// Rows (targets).
        rows: usize,
        /// Feature values.
        values: usize,
        /// Feature columns.
        features: usize,
    },
    /// A feature or target is NaN or infinite.
    #[error("row {row} has a value that is not finite")]
    NonFiniteData {
        /// The first such row.
        row: usize,
    },
    /// A classification target is neither 0 nor 1.
    #[error("row {row}: classification target {value} is not 0 or 1")]
    NotBinary {
        /// The first such row.
        row: usize,
        /// Its target.
        value: f32,
    },
    /// A log-scale target ([`mc_learn_core::TargetScale::Log`]) is zero or
    /// negative.
    #[error("row {row}: target {value} must be positive on a log scale")]
    NonPositiveTarget {
        /// The first such row.
        row: usize,
        /// Its target.
        value: f32,
    },
    /// Training was asked to run on a table with no rows.
    #[error("no rows to train on")]
    Empty,
    /// Moments or a normaliser of the wrong width.
    #[error("moments or normaliser of width {got}, expected {expected}")]
    MomentsShape {
        /// Width the schema implies.
        expected: usize,
        /// Width given.
        got: usize,
    },
    /// Moments or a normaliser with impossible values.
    #[error("bad moments: {0}")]
    BadMoments(&'static str),
    /// A training setting out of range.
    #[error("bad training configuration: {0}")]
    BadConfig(&'static str),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Settings of one training run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per gradient step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Adam's L2 weight decay.
    pub weight_decay: f64,
    /// Seeds the initial weights and the minibatch order.
    pub seed: u64,
    /// Where models made by [`crate::custom`], [`crate::transfer`] and
    /// [`crate::federated`] live; [`Model::train`] uses its model's own.
    pub device: Device,
}

impl Default for TrainConfig {
    /// 40 epochs of 64 rows at learning rate 10⁻³, weight decay 10⁻⁵,
    /// seed 0, on the GPU when there is one.
    fn default() -> Self {
        Self {
            epochs: 40,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-5,
            seed: 0,
            device: crate::default_device(),
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), ModelError> {
        if self.batch_size == 0 {
            return Err(ModelError::BadConfig("batch_size is 0"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ModelError::BadConfig("learning_rate must be positive"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ModelError::BadConfig("weight_decay must be non-negative"));
        }
        Ok(())
    }
}

/// The optimiser of a training run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimiser {
    /// Adam (β = 0.9, 0.999): custom and transfer training, and a
    /// campaign's local steps (`federated::LOCAL_OPTIMISER`).
    Adam,
    /// Stochastic gradient descent with this momentum. Its steps scale with
    /// the gradient, so a member whose rows the model already fits moves it
    /// little; kept for experiments with local training.
    SgdMomentum(f64),
}

/// What a training run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// Rows trained on (per epoch).
    pub samples: u64,
    /// Mean loss over the last epoch's batches (MSE on the standardised
    /// target, or binary cross-entropy); NaN when no epoch ran.
    pub final_loss: f64,
}

/// A schema, its normaliser and its network.
#[derive(Debug)]
pub struct Model {
    schema: ModelSchema,
    normaliser: Normaliser,
    mlp: Mlp,
}

impl Model {
    /// A model with weights drawn from `rng` (see [`Mlp::init`]).
    pub fn init<R: Rng + ?Sized>(
        schema: &ModelSchema,
        normaliser: Normaliser,
        rng: &mut R,
        device: Device,
    ) -> Result<Self, ModelError> {
        let mut model = Self::zeros(schema, normaliser, device)?;
        model.mlp.init(rng)?;
        Ok(model)
    }

    /// A model with the given flat weights (see [`crate::mlp`] for the
    /// order).
    pub fn from_flat(
        schema: &ModelSchema,
        normaliser: Normaliser,
        flat: &[f32],
        device: Device,
    ) -> Result<Self, ModelError> {
        let mut model = Self::zeros(schema, normaliser, device)?;
        model.set_flat_weights(flat)?;
        Ok(model)
    }

    fn zeros(
        schema: &ModelSchema,
        normaliser: Normaliser,
        device: Device,
    ) -> Result<Self, ModelError> {
        schema.validate()?;
        normaliser.validate(schema.features.len())?;
        let mlp = Mlp::zeros(&schema.layer_sizes(), device)?;
        Ok(Self {
            schema: schema.clone(),
            normaliser,
            mlp,
        })
    }

    /// A copy on `device` with every layer trainable.
    pub fn to_device(&self, device: Device) -> Result<Self, ModelError> {
        Self::from_flat(
            &self.schema,
            self.normaliser.clone(),
            &self.mlp.flat()?,
            device,
        )
    }

    /// The schema.
    pub fn schema(&self) -> &ModelSchema {
        &self.schema
    }

    /// The normaliser the weights assume.
    pub fn normaliser(&self) -> &Normaliser {
        &self.normaliser
    }

    /// The network.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.mlp.device()
    }

    /// Number of parameters: [`ModelSchema::num_params`].
    pub fn num_params(&self) -> usize {
        self.mlp.num_params()
    }

    /// Every parameter in the flat order of [`crate::mlp`], on the CPU.
    ///
    /// # Panics
    ///
    /// Only if libtorch cannot copy a parameter to the CPU (a device
    /// failure).
    pub fn flat_weights(&self) -> Vec<f32> {
        self.mlp
            .flat()
            .expect("libtorch copies f32 parameters to the CPU")
    }

    /// Overwrites every parameter. The length must be
    /// [`Model::num_params`] and every value finite.
    pub fn set_flat_weights(&mut self, flat: &[f32]) -> Result<(), ModelError> {
        if let Some(index) = flat.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFiniteWeight { index });
        }
        self.mlp.set_flat(flat)
    }

    /// Makes only the last `k` Linear layers trainable (see
    /// [`Mlp::freeze_all_but_last`]).
    pub fn freeze_all_but_last(&mut self, k: usize) {
        self.mlp.freeze_all_but_last(k);
    }

    /// Checks that `data` has the schema's columns, is rectangular and
    /// finite, and (classification) that its targets are 0 or 1.
    pub fn check_data(&self, data: &Dataset) -> Result<(), ModelError> {
        check_data(&self.schema, data)
    }

    /// Trains on `data` with Adam, shuffling minibatches with a
    /// [`ChaCha8Rng`] seeded from `cfg.seed`.
    pub fn train(&mut self, data: &Dataset, cfg: &TrainConfig) -> Result<TrainReport, ModelError> {
        self.train_with_rng(data, cfg, &mut ChaCha8Rng::seed_from_u64(cfg.seed))
    }

    /// Trains on `data` with Adam, shuffling minibatches with `rng`
    /// (`cfg.seed` is not used). On the CPU, the same weights, data,
    /// configuration and rng state give bit-identical weights.
    pub fn train_with_rng<R: Rng + ?Sized>(
        &mut self,
        data: &Dataset,
        cfg: &TrainConfig,
        rng: &mut R,
    ) -> Result<TrainReport, ModelError> {
        let steps = cfg.epochs * data.len().div_ceil(cfg.batch_size.max(1));
        self.train_loop(data, cfg, steps, Optimiser::Adam, None, rng)
    }

    /// Trains on `data` with `optimiser` for exactly `steps` minibatches of
    /// `cfg.batch_size` rows (`cfg.epochs` is not used): epoch after epoch,
    /// each reshuffled with a [`ChaCha8Rng`] seeded from `cfg.seed`, the
    /// last one cut short. This is a campaign's local work
    /// ([`mc_learn_core::plan`]): every participant runs the same number of
    /// steps whatever its number of rows.
    ///
    /// With a `correction` (flat, [`Model::num_params`] long), it is added
    /// to the weights after every optimiser step: the drift correction of
    /// [`mc_learn_core::scaffold`].
    pub fn train_steps(
        &mut self,
        data: &Dataset,
        steps: usize,
        optimiser: Optimiser,
        correction: Option<&[f32]>,
        cfg: &TrainConfig,
    ) -> Result<TrainReport, ModelError> {
        self.train_loop(
            data,
            cfg,
            steps,
            optimiser,
            correction,
            &mut ChaCha8Rng::seed_from_u64(cfg.seed),
        )
    }

    /// `steps` optimiser steps over reshuffled epochs of `data`.
    fn train_loop<R: Rng + ?Sized>(
        &mut self,
        data: &Dataset,
        cfg: &TrainConfig,
        steps: usize,
        optimiser: Optimiser,
        correction: Option<&[f32]>,
        rng: &mut R,
    ) -> Result<TrainReport, ModelError> {
        cfg.validate()?;
        self.check_data(data)?;
        if data.is_empty() {
            return Err(ModelError::Empty);
        }
        let correction = correction
            .map(|flat| {
                let all = self.mlp.flat_tensor(flat)?;
                self.mlp.trainable_part(&all)
            })
            .transpose()?;
        let (x, y) = self.tensors(data)?;
        let n = data.len();
        let per_epoch = n.div_ceil(cfg.batch_size);
        let mut params = self.mlp.trainable()?;
        let mut grad = self.mlp.gradient_buffer()?;
        let loss_kind = self.loss_kind();
        let mut opt = match optimiser {
            Optimiser::Adam => FlatOptimiser::adam(
                params.numel(),
                cfg.learning_rate,
                cfg.weight_decay,
                self.device(),
            )?,
            Optimiser::SgdMomentum(momentum) => {
                FlatOptimiser::sgd(momentum, cfg.learning_rate, cfg.weight_decay)
            }
        };
        let mut order: Vec<i64> = (0..n as i64).collect();
        let mut final_loss = f64::NAN;
        let mut done = 0usize;
        let mut epochs = 0usize;
        while done < steps {
            order.shuffle(rng);
            // One gather and one split per epoch; every batch is a view.
            let order_t = Tensor::f_from_slice(&order)?.f_to_device(self.device())?;
            let batch = cfg.batch_size as i64;
            let xs = x.f_index_select(0, &order_t)?.f_split(batch, 0)?;
            let ys = y.f_index_select(0, &order_t)?.f_split(batch, 0)?;
            let batches_now = per_epoch.min(steps - done);
            let last_epoch = done + batches_now >= steps;
            let mut loss_sum = Tensor::f_zeros([], (Kind::Float, self.device()))?;
            for (xb, yb) in xs.iter().zip(&ys).take(batches_now) {
                let loss = self
                    .mlp
                    .gradient(xb, yb, loss_kind, &mut grad, last_epoch)?;
                if grad.flat().numel() > 0 {
                    opt.step(&mut params, grad.flat().shallow_clone())?;
                    if let Some(correction) = &correction {
                        let _ = tch::no_grad(|| params.f_add_(correction))?;
                    }
                }
                if let Some(loss) = loss {
                    loss_sum = loss_sum.f_add(&loss)?;
                }
            }
            done += batches_now;
            epochs += 1;
            if last_epoch {
                // Mean loss over the last (possibly partial) epoch.
                final_loss = loss_sum.f_double_value(&[])? / batches_now as f64;
            }
        }
        Ok(TrainReport {
            epochs,
            samples: n as u64,
            final_loss,
        })
    }

    /// Predictions for every row: target units for regression,
    /// probabilities of class 1 for classification.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<f32>, ModelError> {
        self.check_columns(data)?;
        let f = data.n_features();
        let mut out = Vec::with_capacity(data.len());
        tch::no_grad(|| -> Result<(), ModelError> {
            for start in (0..data.len()).step_by(PREDICT_CHUNK) {
                let end = (start + PREDICT_CHUNK).min(data.len());
                let x = Tensor::f_from_slice(&self.inputs(&data.x[start * f..end * f]))?
                    .f_reshape([(end - start) as i64, f as i64])?
                    .f_to_device(self.device())?;
                let mut h = self.mlp.forward(&x)?;
                if self.schema.task == Task::BinaryClassification {
                    h = h.f_sigmoid()?;
                }
                let h = h.f_flatten(0, -1)?.f_to_device(Device::Cpu)?;
                out.extend(Vec::<f32>::try_from(&h)?);
            }
            Ok(())
        })?;
        if self.schema.task == Task::Regression {
            self.normaliser
                .outputs_on(self.schema.target_scale, &mut out)?;
        }
        Ok(out)
    }

    /// Scores the model on `data`, and measures the forward pass.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation, ModelError> {
        self.check_data(data)?;
        // A measurement reported to people, not an input to any decision.
        let started = Instant::now();
        let predictions = self.predict(data)?;
        let elapsed = started.elapsed();
        Ok(Evaluation {
            rows: data.len(),
            scores: Scores::of(self.schema.task, &predictions, &data.y),
            measured_inference_time_per_row: Duration::from_secs_f64(
                elapsed.as_secs_f64() / data.len().max(1) as f64,
            ),
        })
    }

    fn check_columns(&self, data: &Dataset) -> Result<(), ModelError> {
        check_columns(&self.schema, data)
    }

    /// Row-major raw features as the network sees them: the schema's
    /// log-scale columns transformed, then every column standardised.
    fn inputs(&self, x: &[f32]) -> Vec<f32> {
        self.normaliser.features(&self.schema.model_inputs(x))
    }

    /// Standardised features `[rows, f]` and targets `[rows, 1]` on the
    /// model's device.
    fn tensors(&self, data: &Dataset) -> Result<(Tensor, Tensor), ModelError> {
        let n = data.len() as i64;
        let x = Tensor::f_from_slice(&self.inputs(&data.x))?
            .f_reshape([n, data.n_features() as i64])?
            .f_to_device(self.device())?;
        let y = match self.schema.task {
            Task::Regression => self
                .normaliser
                .targets_on(self.schema.target_scale, &data.y)?,
            Task::BinaryClassification => self.normaliser.targets(&data.y),
        };
        let y = Tensor::f_from_slice(&y)?
            .f_reshape([n, 1])?
            .f_to_device(self.device())?;
        Ok((x, y))
    }

    fn loss_kind(&self) -> Loss {
        match self.schema.task {
            Task::Regression => Loss::MeanSquared,
            Task::BinaryClassification => Loss::LogisticWithLogits,
        }
    }
}

fn check_columns(schema: &ModelSchema, data: &Dataset) -> Result<(), ModelError> {
    if data.features != schema.features || data.target != schema.target {
        return Err(ModelError::Columns {
            expected: schema.features.clone(),
            expected_target: schema.target.clone(),
            got: data.features.clone(),
            got_target: data.target.clone(),
        });
    }
    if data.x.len() != data.len() * data.n_features() {
        return Err(ModelError::Ragged {
            rows: data.len(),
            values: data.x.len(),
            features: data.n_features(),
        });
    }
    Ok(())
}

/// Checks that `data` has `schema`'s columns, is rectangular and finite,
/// that classification targets are 0 or 1 and log-scale targets positive.
pub(crate) fn check_data(schema: &ModelSchema, data: &Dataset) -> Result<(), ModelError> {
    check_columns(schema, data)?;
    for i in 0..data.len() {
        let y = data.y[i];
        if !y.is_finite() || data.row(i).iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFiniteData { row: i });
        }
        if schema.task == Task::BinaryClassification && y != 0.0 && y != 1.0 {
            return Err(ModelError::NotBinary { row: i, value: y });
        }
        if schema.target_scale == TargetScale::Log && y <= 0.0 {
            return Err(ModelError::NonPositiveTarget { row: i, value: y });
        }
    }
    Ok(())
}
