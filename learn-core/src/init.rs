//! The starting weights of a model, the same on every node.
//!
//! A campaign's round-0 model must be identical everywhere without anyone
//! sending it, so it is drawn from a ChaCha generator seeded by the campaign.
//!
//! # Flat layout
//!
//! Every weight vector in Mission Control Mesh (updates, aggregates, stored
//! versions) lists a model's parameters in this order: for each layer from
//! input to output, its weight matrix `[out × in]` row by row, then its bias
//! `[out]`. [`layout`] gives the offsets.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::schema::ModelSchema;

/// Where one layer's parameters sit in the flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSlice {
    /// Inputs of the layer.
    pub inputs: usize,
    /// Outputs of the layer.
    pub outputs: usize,
    /// Offset of the weight matrix (`outputs × inputs`, row-major).
    pub weight_offset: usize,
    /// Offset of the bias (`outputs` values).
    pub bias_offset: usize,
}

/// The flat layout of `schema`'s parameters, layer by layer.
pub fn layout(schema: &ModelSchema) -> Vec<LayerSlice> {
    let mut offset = 0;
    schema
        .layer_sizes()
        .windows(2)
        .map(|w| {
            let slice = LayerSlice {
                inputs: w[0],
                outputs: w[1],
                weight_offset: offset,
                bias_offset: offset + w[0] * w[1],
            };
            offset += w[0] * w[1] + w[1];
            slice
        })
        .collect()
}

/// The starting weights of a campaign: [`draw_weights`] from a ChaCha8
/// generator seeded with `seed`, so equal seeds give equal vectors on every
/// machine.
pub fn init_weights(schema: &ModelSchema, seed: u64) -> Vec<f32> {
    draw_weights(&schema.layer_sizes(), &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Every weight and bias of an MLP with these layer sizes, in flat order,
/// drawn uniformly from `±1/√fan_in` of its layer: the distribution of
/// PyTorch's `nn.Linear` default initialisation, which the independent
/// references of `scripts/fl-compare` (plain FedAvg, local-only and central
/// training in PyTorch) start from.
///
/// It replaced He-uniform weights (`±√(6/fan_in)`, 2.4 times wider) with
/// zero biases. Plain FedAvg in PyTorch started from those lost held-out R²
/// against the same FedAvg started from the default (2 × 32 MLP, 40 rounds
/// × 5 local epochs, the fl-compare splits): `auto_mpg` 0.846 against 0.854
/// with 5 organisations and 0.785 against 0.816 with 10 (seeds 1–6);
/// `seattle_weather` 0.861 against 0.877 and 0.852 against 0.872 (seeds
/// 1–4). Wider starting weights fit a few dozen rows per member faster and
/// generalise worse. On `mc-learn bench federated` (60 rounds × 16 local
/// epochs on up to 7,000 rows per member) the wider start was better: seed
/// 1's global model 0.973 mean R² against 0.956 (see docs/benchmarks.md).
pub fn draw_weights<R: rand::Rng + ?Sized>(sizes: &[usize], rng: &mut R) -> Vec<f32> {
    let mut flat = Vec::new();
    for pair in sizes.windows(2) {
        let (inputs, outputs) = (pair[0], pair[1]);
        let bound = (1.0 / inputs.max(1) as f64).sqrt() as f32;
        flat.extend((0..outputs * (inputs + 1)).map(|_| rng.random_range(-bound..=bound)));
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::builtin_named;

    #[test]
    fn layout_covers_every_parameter_once() {
        let schema = builtin_named("latency").unwrap();
        let layers = layout(&schema);
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[0].weight_offset, 0);
        assert_eq!(layers[0].bias_offset, 7 * 32);
        let last = layers.last().unwrap();
        assert_eq!(last.bias_offset + last.outputs, schema.num_params());
    }

    #[test]
    fn init_is_seeded_and_within_one_over_root_fan_in() {
        let schema = builtin_named("latency").unwrap();
        let a = init_weights(&schema, 7);
        assert_eq!(a.len(), schema.num_params());
        assert_eq!(a, init_weights(&schema, 7));
        assert_ne!(a, init_weights(&schema, 8));
        for layer in layout(&schema) {
            let bound = (1.0 / layer.inputs as f64).sqrt() as f32;
            let all = &a[layer.weight_offset..layer.bias_offset + layer.outputs];
            assert!(all.iter().all(|w| w.abs() <= bound));
            // Spread over the interval, not bunched at zero: a uniform's
            // mean absolute value is half its bound.
            let mean_abs = all.iter().map(|w| w.abs()).sum::<f32>() / all.len() as f32;
            assert!(
                (mean_abs / bound - 0.5).abs() < 0.15,
                "{mean_abs} of {bound}"
            );
            let bias = &a[layer.bias_offset..layer.bias_offset + layer.outputs];
            assert!(bias.iter().any(|b| *b != 0.0), "biases are drawn too");
        }
    }
}
