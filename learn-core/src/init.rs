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

/// How a campaign draws its round-1 weights. Both are drawn from a ChaCha8
/// generator seeded with the campaign's seed: equal seeds give equal
/// vectors on every machine.
///
/// Which one is the default, and what each measured, is in
/// `docs/benchmarks.md` ("Starting weights").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He-uniform weights (`±√(6 / inputs)`) and zero biases: the start of
    /// every campaign declared before this was a setting.
    HeUniform,
    /// PyTorch's `nn.Linear` default: weights and biases uniform on
    /// `±1/√inputs`. What plain FedAvg in PyTorch starts from.
    Torch,
}

/// The start of a campaign whose declaration names none: PyTorch's, since
/// the local steps lost their weight decay (`mc_learn::federated`). With
/// the campaign defaults otherwise, `mc-learn bench federated` (seed 1)
/// gave the global model mean R² 0.981 / MAE 6.48 from it against 0.959 /
/// 10.46 from He-uniform, and `scripts/fl-compare` on `auto_mpg` (seeds
/// 7–9) −0.009 / −0.028 against −0.017 / −0.050 behind plain FedAvg
/// (5 / 10 organisations; both on an AMD EPYC VM, the rate decaying to a
/// tenth). He-uniform's larger weights make the untrained
/// network's outputs large (pooled R² as low as −4 before round 1), and
/// the first rounds are spent shrinking them.
pub const DEFAULT_INIT: Init = Init::Torch;

impl Init {
    /// The start of campaigns declared before the start was a setting.
    pub fn legacy() -> Init {
        Init::HeUniform
    }

    /// The setting's name as campaigns spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Init::HeUniform => "he_uniform",
            Init::Torch => "torch",
        }
    }
}

impl std::str::FromStr for Init {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "he_uniform" => Ok(Init::HeUniform),
            "torch" => Ok(Init::Torch),
            other => Err(format!(
                "init must be \"he_uniform\" or \"torch\", not {other:?}"
            )),
        }
    }
}

/// A model's starting weights as `init` draws them from `seed`.
pub fn init_weights(schema: &ModelSchema, seed: u64, init: Init) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut flat = vec![0.0f32; schema.num_params()];
    for layer in layout(schema) {
        let inputs = layer.inputs.max(1) as f64;
        let (weight_bound, bias_bound) = match init {
            Init::HeUniform => ((6.0 / inputs).sqrt() as f32, 0.0),
            Init::Torch => {
                let bound = (1.0 / inputs).sqrt() as f32;
                (bound, bound)
            }
        };
        for w in &mut flat[layer.weight_offset..layer.bias_offset] {
            *w = rng.random_range(-weight_bound..=weight_bound);
        }
        if bias_bound > 0.0 {
            let bias = layer.bias_offset..layer.bias_offset + layer.outputs;
            for b in &mut flat[bias] {
                *b = rng.random_range(-bias_bound..=bias_bound);
            }
        }
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
    fn init_is_seeded_bounded_and_biases_are_zero() {
        let schema = builtin_named("latency").unwrap();
        let a = init_weights(&schema, 7, Init::HeUniform);
        assert_eq!(a, init_weights(&schema, 7, Init::HeUniform));
        assert_ne!(a, init_weights(&schema, 8, Init::HeUniform));
        for layer in layout(&schema) {
            let bound = (6.0 / layer.inputs as f64).sqrt() as f32;
            let weights = &a[layer.weight_offset..layer.bias_offset];
            assert!(weights.iter().all(|w| w.abs() <= bound));
            assert!(weights.iter().any(|w| *w != 0.0));
            let bias = &a[layer.bias_offset..layer.bias_offset + layer.outputs];
            assert!(bias.iter().all(|b| *b == 0.0));
        }
    }

    #[test]
    fn torch_init_draws_weights_and_biases_within_one_over_root_fan_in() {
        let schema = builtin_named("latency").unwrap();
        let a = init_weights(&schema, 7, Init::Torch);
        assert_eq!(a, init_weights(&schema, 7, Init::Torch));
        assert_ne!(a, init_weights(&schema, 7, Init::HeUniform));
        for layer in layout(&schema) {
            let bound = (1.0 / layer.inputs as f64).sqrt() as f32;
            let end = layer.bias_offset + layer.outputs;
            assert!(a[layer.weight_offset..end].iter().all(|w| w.abs() <= bound));
            let bias = &a[layer.bias_offset..end];
            assert!(bias.iter().any(|b| *b != 0.0), "biases are drawn too");
        }
    }

    #[test]
    fn init_names_round_trip_and_bad_names_are_refused() {
        for init in [Init::HeUniform, Init::Torch] {
            assert_eq!(init.as_str().parse::<Init>(), Ok(init));
            let json = serde_json::to_string(&init).unwrap();
            assert_eq!(json, format!("\"{}\"", init.as_str()));
        }
        let error = "xavier".parse::<Init>().unwrap_err();
        assert!(error.contains("he_uniform"), "{error}");
    }
}
