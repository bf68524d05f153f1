//! The network: Linear layers with ReLU between them, its parameters in a
//! fixed flat order, and a seeded initialisation.
//!
//! # Flat order
//!
//! Layer `i` (input side first) has `layers.{i}.weight`, shape `[out, in]`,
//! row-major, followed by `layers.{i}.bias`, shape `[out]`. The flat vector
//! is layer 0's weight, layer 0's bias, layer 1's weight, and so on — the
//! order of a PyTorch `nn.Sequential` state dict with the ReLUs removed. It
//! never depends on the var store's `HashMap` order, so every node flattens
//! the same model to the same vector.

use rand::{Rng, RngExt};
use tch::{Device, Kind, Tensor, nn};

use crate::ModelError;

/// One Linear layer's parameters.
#[derive(Debug)]
struct Layer {
    weight: Tensor,
    bias: Tensor,
    inputs: usize,
    outputs: usize,
}

/// A multi-layer perceptron of the given widths, on one device.
#[derive(Debug)]
pub struct Mlp {
    // Owns the parameters; `layers` holds shallow clones of them.
    vs: nn::VarStore,
    layers: Vec<Layer>,
}

/// The name of layer `index`'s weight (`"weight"`) or bias (`"bias"`).
pub fn param_name(index: usize, which: &str) -> String {
    format!("layers.{index}.{which}")
}

impl Mlp {
    /// A network of `sizes` (`[inputs, hidden…, 1]`, at least two entries)
    /// with every parameter zero. No random number generator is touched:
    /// callers set the weights with [`Mlp::init`] or [`Mlp::set_flat`].
    pub fn zeros(sizes: &[usize], device: Device) -> Result<Self, ModelError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(ModelError::BadLayerSizes(sizes.to_vec()));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (index, pair) in sizes.windows(2).enumerate() {
            let (inputs, outputs) = (pair[0], pair[1]);
            let path = root.sub("layers").sub(index);
            let weight = path.f_zeros("weight", &[outputs as i64, inputs as i64])?;
            let bias = path.f_zeros("bias", &[outputs as i64])?;
            layers.push(Layer {
                weight,
                bias,
                inputs,
                outputs,
            });
        }
        Ok(Self { vs, layers })
    }

    /// Draws every weight from `rng` and zeroes every bias: He-uniform
    /// (`±√(6/fan_in)`) for layers followed by a ReLU, Xavier-uniform
    /// (`±√(6/(fan_in+fan_out))`) for the output layer.
    pub fn init<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Result<(), ModelError> {
        let last = self.layers.len() - 1;
        let mut flat = Vec::with_capacity(self.num_params());
        for (index, layer) in self.layers.iter().enumerate() {
            let fan = if index == last {
                (layer.inputs + layer.outputs) as f32
            } else {
                layer.inputs as f32
            };
            let bound = (6.0 / fan).sqrt();
            flat.extend((0..layer.inputs * layer.outputs).map(|_| rng.random_range(-bound..bound)));
            flat.extend(std::iter::repeat_n(0.0f32, layer.outputs));
        }
        self.set_flat(&flat)
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Number of Linear layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of parameters (weights and biases).
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(|l| l.outputs * (l.inputs + 1)).sum()
    }

    /// The parameters with their names and shapes, in flat order.
    pub fn named_params(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (index, layer) in self.layers.iter().enumerate() {
            out.push((param_name(index, "weight"), &layer.weight));
            out.push((param_name(index, "bias"), &layer.bias));
        }
        out
    }

    /// Every parameter in flat order, copied to the CPU.
    pub fn flat(&self) -> Result<Vec<f32>, ModelError> {
        let mut flat = Vec::with_capacity(self.num_params());
        for (_, tensor) in self.named_params() {
            let cpu = tensor
                .f_to_device(Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_flatten(0, -1)?;
            flat.extend(Vec::<f32>::try_from(&cpu)?);
        }
        Ok(flat)
    }

    /// Overwrites every parameter from a flat vector (see the module docs
    /// for the order). The length must be [`Mlp::num_params`].
    pub fn set_flat(&mut self, flat: &[f32]) -> Result<(), ModelError> {
        let values = self.shaped_like_params(flat)?;
        tch::no_grad(|| -> Result<(), ModelError> {
            for ((_, param), value) in self.named_params().into_iter().zip(&values) {
                param.shallow_clone().f_copy_(value)?;
            }
            Ok(())
        })
    }

    /// `flat` (in [`Self::flat`]'s order) cut into tensors shaped like the
    /// parameters, on their device.
    pub fn shaped_like_params(&self, flat: &[f32]) -> Result<Vec<Tensor>, ModelError> {
        let expected = self.num_params();
        if flat.len() != expected {
            return Err(ModelError::WrongLength {
                expected,
                got: flat.len(),
            });
        }
        let device = self.device();
        let mut offset = 0;
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (_, param) in self.named_params() {
            let n = param.numel();
            out.push(
                Tensor::f_from_slice(&flat[offset..offset + n])?
                    .f_reshape(param.size())?
                    .f_to_device(device)?,
            );
            offset += n;
        }
        Ok(out)
    }

    /// Adds `deltas` (from [`Self::shaped_like_params`]) to the trainable
    /// parameters in place; frozen ones keep their values.
    pub fn add_to_params(&mut self, deltas: &[Tensor]) -> Result<(), ModelError> {
        tch::no_grad(|| -> Result<(), ModelError> {
            for ((_, param), delta) in self.named_params().into_iter().zip(deltas) {
                if param.requires_grad() {
                    let mut param = param.shallow_clone();
                    let _ = param.f_add_(delta)?;
                }
            }
            Ok(())
        })
    }

    /// The output logits (or standardised regression values), shape
    /// `[rows, 1]`, for standardised inputs of shape `[rows, inputs]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let last = self.layers.len() - 1;
        let mut h = x.shallow_clone();
        for (index, layer) in self.layers.iter().enumerate() {
            h = h.f_linear(&layer.weight, Some(&layer.bias))?;
            if index != last {
                h = h.f_relu()?;
            }
        }
        Ok(h)
    }

    /// Makes only the last `k` layers trainable: the others keep their
    /// values through training (`requires_grad` off, so the optimiser
    /// skips them).
    pub fn freeze_all_but_last(&mut self, k: usize) {
        let first_trainable = self.layers.len().saturating_sub(k);
        for (index, layer) in self.layers.iter().enumerate() {
            let trainable = index >= first_trainable;
            let _ = layer.weight.set_requires_grad(trainable);
            let _ = layer.bias.set_requires_grad(trainable);
        }
    }

    /// Whether layer `index`'s parameters are trained.
    pub fn is_trainable(&self, index: usize) -> bool {
        self.layers
            .get(index)
            .is_some_and(|l| l.weight.requires_grad())
    }

    /// The var store, for building an optimiser over the parameters.
    pub(crate) fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}
