//! The gradient of a training loss by hand, without autograd.
//!
//! The forward pass keeps every layer's input; the backward pass writes
//! each trained layer's weight and bias gradients straight into one flat
//! buffer, in the flat order of [`super`], so the optimiser gets the whole
//! gradient without a concatenation. Autograd computes the same quantities
//! (a unit test compares the two), but it records a graph node for every
//! operation and runs its engine once a step. On this product's networks a
//! step is a few microseconds of arithmetic and libtorch's per-operation
//! overhead is most of the rest, so fewer, plainer operations make a step
//! faster (figures in docs/benchmarks.md, "Campaign wall time").

use tch::{Kind, Reduction, Tensor};

use super::Mlp;
use crate::ModelError;

/// A training loss: the mean over the batch's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Squared error of a regression output.
    MeanSquared,
    /// Binary cross-entropy of a logit (a classifier's output).
    LogisticWithLogits,
}

/// The gradient of the trained parameters: one flat tensor (the trained
/// part of the flat order) and each trained layer's weight and bias views
/// of it.
#[derive(Debug)]
pub(crate) struct Gradient {
    flat: Tensor,
    layers: Vec<(Tensor, Tensor)>,
}

impl Gradient {
    /// The whole gradient, in the flat order of the trained parameters.
    pub(crate) fn flat(&self) -> &Tensor {
        &self.flat
    }
}

impl Mlp {
    /// A zeroed gradient buffer for the layers trained now.
    pub(crate) fn gradient_buffer(&self) -> Result<Gradient, ModelError> {
        let trained = &self.layers[self.first_trainable..];
        let total: usize = trained.iter().map(|l| l.outputs * (l.inputs + 1)).sum();
        let flat = Tensor::f_zeros([total as i64], (Kind::Float, self.device()))?;
        let mut layers = Vec::with_capacity(trained.len());
        let mut offset = 0i64;
        for layer in trained {
            let (rows, cols) = (layer.outputs as i64, layer.inputs as i64);
            let weight = flat
                .f_narrow(0, offset, rows * cols)?
                .f_view([rows, cols])?;
            offset += rows * cols;
            let bias = flat.f_narrow(0, offset, rows)?;
            offset += rows;
            layers.push((weight, bias));
        }
        Ok(Gradient { flat, layers })
    }

    /// Writes into `grad` the gradient of `loss` on the batch `x` (shape
    /// `[rows, inputs]`, standardised) against the targets `y` (`[rows, 1]`)
    /// with respect to the trained parameters. Returns the loss itself when
    /// `want_loss` (it costs a few more operations).
    pub(crate) fn gradient(
        &self,
        x: &Tensor,
        y: &Tensor,
        loss: Loss,
        grad: &mut Gradient,
        want_loss: bool,
    ) -> Result<Option<Tensor>, ModelError> {
        tch::no_grad(|| {
            let last = self.layers.len() - 1;
            // inputs[i] is layer i's input: x, then each hidden ReLU output.
            let mut inputs = Vec::with_capacity(self.layers.len());
            let mut h = x.shallow_clone();
            for (index, layer) in self.layers.iter().enumerate() {
                let mut z = layer.bias.f_addmm(&h, &layer.weight.f_tr()?)?;
                if index != last {
                    let _ = z.f_relu_()?;
                }
                inputs.push(std::mem::replace(&mut h, z));
            }
            let per_row = 1.0 / h.numel().max(1) as f64;
            let (mut delta, value) = match loss {
                Loss::MeanSquared => {
                    let diff = h.f_sub(y)?;
                    let value = match want_loss {
                        true => Some(diff.f_square()?.f_mean(Kind::Float)?),
                        false => None,
                    };
                    (diff.f_mul_scalar(2.0 * per_row)?, value)
                }
                Loss::LogisticWithLogits => {
                    let value = match want_loss {
                        true => Some(h.f_binary_cross_entropy_with_logits::<Tensor>(
                            y,
                            None,
                            None,
                            Reduction::Mean,
                        )?),
                        false => None,
                    };
                    (h.f_sigmoid()?.f_sub(y)?.f_mul_scalar(per_row)?, value)
                }
            };
            // `delta` is the loss's gradient at layer `index`'s output.
            for index in (self.first_trainable..self.layers.len()).rev() {
                let (weight_grad, bias_grad) = &grad.layers[index - self.first_trainable];
                let input = &inputs[index];
                let _ = delta.f_tr()?.f_mm_out(weight_grad, input)?;
                let _ =
                    delta.f_sum_intlist_out(bias_grad, [0i64].as_slice(), false, Kind::Float)?;
                if index > self.first_trainable {
                    let back = delta.f_mm(&self.layers[index].weight)?;
                    // The ReLU passes gradient where its output was positive.
                    delta = input.f_threshold_backward(&back, 0.0)?;
                }
            }
            Ok(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::ChaCha8Rng;
    use tch::Device;

    use super::*;

    /// Autograd's gradient of the same loss, in the same flat order.
    fn autograd(mlp: &Mlp, x: &Tensor, y: &Tensor, loss: Loss) -> (Vec<f32>, f64) {
        let out = mlp.forward(x).unwrap();
        let value = match loss {
            Loss::MeanSquared => out.mse_loss(y, Reduction::Mean),
            Loss::LogisticWithLogits => {
                out.binary_cross_entropy_with_logits::<Tensor>(y, None, None, Reduction::Mean)
            }
        };
        let leaves: Vec<&Tensor> = mlp.layers[mlp.first_trainable..]
            .iter()
            .flat_map(|l| [&l.weight, &l.bias])
            .collect();
        let grads = Tensor::run_backward(&[&value], &leaves, false, false);
        let flat: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
        let flat = Tensor::cat(&flat, 0);
        (
            Vec::<f32>::try_from(&flat).unwrap(),
            value.double_value(&[]),
        )
    }

    fn check(loss: Loss, frozen: usize) {
        let mut mlp = Mlp::zeros(&[5, 7, 4, 1], Device::Cpu).unwrap();
        mlp.init(&mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        if frozen > 0 {
            mlp.freeze_all_but_last(3 - frozen);
        }
        let x = Tensor::randn([9, 5], (Kind::Float, Device::Cpu));
        let y = match loss {
            Loss::MeanSquared => Tensor::randn([9, 1], (Kind::Float, Device::Cpu)),
            Loss::LogisticWithLogits => {
                Tensor::from_slice(&[1f32, 0., 0., 1., 1., 0., 1., 0., 0.]).view([9, 1])
            }
        };
        let (expected, expected_loss) = autograd(&mlp, &x, &y, loss);
        let mut grad = mlp.gradient_buffer().unwrap();
        let value = mlp
            .gradient(&x, &y, loss, &mut grad, true)
            .unwrap()
            .unwrap();
        let got = Vec::<f32>::try_from(grad.flat()).unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(
            expected.iter().any(|g| g.abs() > 1e-3),
            "a gradient to compare"
        );
        for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{i}: {a} against {b}"
            );
        }
        assert!((value.double_value(&[]) - expected_loss).abs() < 1e-6);
        assert!(
            mlp.gradient(&x, &y, loss, &mut grad, false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn squared_error_gradient_equals_autograd() {
        check(Loss::MeanSquared, 0);
    }

    #[test]
    fn logistic_gradient_equals_autograd() {
        check(Loss::LogisticWithLogits, 0);
    }

    #[test]
    fn frozen_layers_get_no_gradient_and_the_rest_equal_autograd() {
        check(Loss::MeanSquared, 1);
        check(Loss::LogisticWithLogits, 2);
    }
}
