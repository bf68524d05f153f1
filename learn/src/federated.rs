//! One participant's step of a federated round: start from the global
//! weights, train on local rows, hand back the new weights and the number
//! of rows they were trained on (FedAvg's weight).
//!
//! Every participant must use the same [`Normaliser`] (pooled from
//! everyone's [`crate::Moments`]) so that the weights mean the same thing
//! on every node; the signing, exchange and aggregation of the result are
//! `mc_learn_core`'s.

use mc_learn_core::{Dataset, ModelSchema};

use crate::{Model, ModelError, Normaliser, TrainConfig};

/// Trains the global model `global_flat` for `epochs` epochs on `data` with
/// `cfg` (its `epochs` is replaced, its `seed` orders the minibatches) and
/// returns the new flat weights and the number of rows trained on.
pub fn local_update(
    schema: &ModelSchema,
    normaliser: &Normaliser,
    global_flat: &[f32],
    data: &Dataset,
    epochs: usize,
    cfg: &TrainConfig,
) -> Result<(Vec<f32>, u64), ModelError> {
    let mut model = Model::from_flat(schema, normaliser.clone(), global_flat, cfg.device)?;
    let report = model.train(data, &TrainConfig { epochs, ..*cfg })?;
    Ok((model.flat_weights(), report.samples))
}
