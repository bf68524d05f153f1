//! The network: Linear layers with ReLU between them, its parameters in a
//! fixed flat order, and a seeded initialisation.
//!
//! # Flat order
//!
//! Layer `i` (input side first) has `layers.{i}.weight`, shape `[out, in]`,
//! row-major, followed by `layers.{i}.bias`, shape `[out]`. The flat vector
//! is layer 0's weight, layer 0's bias, layer 1's weight, and so on — the
//! order of a PyTorch `nn.Sequential` state dict with the ReLUs removed. It
//! never depends on anything but the layer sizes, so every node flattens
//! the same model to the same vector.
//!
//! # One tensor
//!
//! The parameters live in one flat tensor in that order; each layer's
//! weight and bias are views of it (they share its storage). Reading,
//! writing and correcting the weights, and the optimiser's step
//! ([`crate::optim`]), are then a few operations on the flat tensor
//! instead of a few per parameter tensor, and the gradient is written by
//! hand into one flat buffer of the same order (`backprop`): on small
//! models libtorch's per-operation overhead is most of a step's time. The
//! views are autograd leaves too, so autograd can check the hand gradient.

use rand::{Rng, RngExt};
use tch::{Device, Kind, Tensor};

use crate::ModelError;

mod backprop;

pub(crate) use backprop::Loss;

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
    /// Every parameter in flat order; `layers` holds views of it.
    flat: Tensor,
    layers: Vec<Layer>,
    /// The first layer the optimiser trains ([`Mlp::freeze_all_but_last`]).
    first_trainable: usize,
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
        let total: usize = sizes.windows(2).map(|w| w[1] * (w[0] + 1)).sum();
        let flat = Tensor::f_zeros([total as i64], (Kind::Float, device))?;
        // A leaf view of `flat`: shares its storage, has its own gradient.
        let view = |offset: usize, shape: &[i64]| -> Result<Tensor, ModelError> {
            let n: i64 = shape.iter().product();
            Ok(flat
                .f_narrow(0, offset as i64, n)?
                .f_view(shape)?
                .f_detach()?
                .set_requires_grad(true))
        };
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let mut offset = 0;
        for pair in sizes.windows(2) {
            let (inputs, outputs) = (pair[0], pair[1]);
            let weight = view(offset, &[outputs as i64, inputs as i64])?;
            let bias = view(offset + inputs * outputs, &[outputs as i64])?;
            offset += outputs * (inputs + 1);
            layers.push(Layer {
                weight,
                bias,
                inputs,
                outputs,
            });
        }
        Ok(Self {
            flat,
            layers,
            first_trainable: 0,
        })
    }

    /// Draws every weight from `rng` and zeroes every bias, for training
    /// from scratch on one node's rows: He-uniform (`±√(6/fan_in)`) for
    /// layers followed by a ReLU, Xavier-uniform (`±√(6/(fan_in+fan_out))`)
    /// for the output layer. (A campaign starts from
    /// [`mc_learn_core::init::init_weights`], as its `init` setting says.)
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
        self.flat.device()
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
        let cpu = self.flat.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
        Ok(Vec::<f32>::try_from(&cpu)?)
    }

    /// Overwrites every parameter from a flat vector (see the module docs
    /// for the order). The length must be [`Mlp::num_params`].
    pub fn set_flat(&mut self, flat: &[f32]) -> Result<(), ModelError> {
        let values = self.flat_tensor(flat)?;
        tch::no_grad(|| self.flat.f_copy_(&values))?;
        Ok(())
    }

    /// `flat` (in [`Self::flat`]'s order) as a tensor on the model's device.
    pub fn flat_tensor(&self, flat: &[f32]) -> Result<Tensor, ModelError> {
        let expected = self.num_params();
        if flat.len() != expected {
            return Err(ModelError::WrongLength {
                expected,
                got: flat.len(),
            });
        }
        Ok(Tensor::f_from_slice(flat)?.f_to_device(self.device())?)
    }

    /// Where the trained parameters start in the flat order: the frozen
    /// layers come first.
    fn trainable_offset(&self) -> usize {
        self.layers[..self.first_trainable]
            .iter()
            .map(|l| l.outputs * (l.inputs + 1))
            .sum()
    }

    /// The trained parameters: a view of the flat tensor (in-place changes
    /// change the model), in flat order.
    pub(crate) fn trainable(&self) -> Result<Tensor, ModelError> {
        self.trainable_part(&self.flat)
    }

    /// The part of a flat vector of every parameter (a tensor from
    /// [`Self::flat_tensor`]) that falls on the trained parameters.
    pub(crate) fn trainable_part(&self, all: &Tensor) -> Result<Tensor, ModelError> {
        let offset = self.trainable_offset();
        Ok(all.f_narrow(0, offset as i64, (self.num_params() - offset) as i64)?)
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
    /// values through training (the optimiser skips them).
    pub fn freeze_all_but_last(&mut self, k: usize) {
        self.first_trainable = self.layers.len().saturating_sub(k);
        for (index, layer) in self.layers.iter().enumerate() {
            let trainable = index >= self.first_trainable;
            let _ = layer.weight.set_requires_grad(trainable);
            let _ = layer.bias.set_requires_grad(trainable);
        }
    }

    /// Whether layer `index`'s parameters are trained.
    pub fn is_trainable(&self, index: usize) -> bool {
        index >= self.first_trainable && index < self.layers.len()
    }
}
