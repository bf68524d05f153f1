//! Optimisers over one flat parameter tensor.
//!
//! The models here are small (a 2 × 32 MLP has about 1,300 parameters), so
//! a local step's time is libtorch's per-operation overhead, not
//! arithmetic. `tch`'s optimisers update every parameter tensor on its own,
//! about ten operations each; a network of three layers has six tensors.
//! [`crate::mlp::Mlp`] keeps all its parameters in one tensor (the layers'
//! weights and biases are views of it), so the optimisers here update the
//! trainable part with a handful of operations in all, whatever the number
//! of layers. The arithmetic is libtorch's own `Adam` (L2 weight decay
//! added to the gradient, bias-corrected moments, `ε` added after the
//! square root) and `SGD` with momentum (no dampening, not Nesterov); a
//! test checks both against `tch::nn` step for step.

use tch::{Device, Kind, Tensor};

use crate::ModelError;

/// Adam's `β₁`, `β₂` and `ε` (libtorch's defaults, as `tch::nn::Adam`).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The update rule and its state.
#[derive(Debug)]
enum State {
    Adam {
        m: Tensor,
        v: Tensor,
        t: i32,
    },
    Sgd {
        momentum: f64,
        buffer: Option<Tensor>,
    },
}

/// An optimiser of a flat tensor of `n` parameters.
#[derive(Debug)]
pub struct FlatOptimiser {
    state: State,
    learning_rate: f64,
    weight_decay: f64,
}

impl FlatOptimiser {
    /// Adam for `n` parameters on `device`.
    pub fn adam(
        n: usize,
        learning_rate: f64,
        weight_decay: f64,
        device: Device,
    ) -> Result<Self, ModelError> {
        let zeros = || Tensor::f_zeros([n as i64], (Kind::Float, device));
        Ok(Self {
            state: State::Adam {
                m: zeros()?,
                v: zeros()?,
                t: 0,
            },
            learning_rate,
            weight_decay,
        })
    }

    /// SGD with `momentum` (0 for none).
    pub fn sgd(momentum: f64, learning_rate: f64, weight_decay: f64) -> Self {
        Self {
            state: State::Sgd {
                momentum,
                buffer: None,
            },
            learning_rate,
            weight_decay,
        }
    }

    /// One step: `params` (a flat tensor, updated in place) with its
    /// gradient `grad` of the same shape.
    pub fn step(&mut self, params: &mut Tensor, grad: Tensor) -> Result<(), ModelError> {
        tch::no_grad(|| -> Result<(), ModelError> {
            let grad = if self.weight_decay != 0.0 {
                grad.f_add(&params.f_mul_scalar(self.weight_decay)?)?
            } else {
                grad
            };
            match &mut self.state {
                State::Adam { m, v, t } => {
                    *t += 1;
                    let correction1 = 1.0 - BETA1.powi(*t);
                    let correction2 = 1.0 - BETA2.powi(*t);
                    let _ = m.f_lerp_(&grad, 1.0 - BETA1)?;
                    let _ = v.f_mul_scalar_(BETA2)?;
                    let _ = v.f_addcmul_(&grad.f_mul_scalar(1.0 - BETA2)?, &grad)?;
                    let denom = v
                        .f_sqrt()?
                        .f_div_scalar(correction2.sqrt())?
                        .f_add_scalar(EPS)?;
                    let step = m.f_mul_scalar(-self.learning_rate / correction1)?;
                    let _ = params.f_addcdiv_(&step, &denom)?;
                }
                State::Sgd { momentum, buffer } => {
                    let direction = if *momentum != 0.0 {
                        match buffer {
                            Some(b) => {
                                let _ = b.f_mul_scalar_(*momentum)?;
                                let _ = b.f_add_(&grad)?;
                                b.shallow_clone()
                            }
                            None => {
                                let b = grad.f_detach_copy()?;
                                *buffer = Some(b.shallow_clone());
                                b
                            }
                        }
                    } else {
                        grad
                    };
                    let _ = params.f_sub_(&direction.f_mul_scalar(self.learning_rate)?)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, OptimizerConfig};

    use super::*;

    /// `steps` steps of minimising `‖A·w − b‖²` from `w0`, with `tch::nn`'s
    /// optimiser and with ours.
    fn both(optimiser: &str, steps: usize) -> (Vec<f32>, Vec<f32>) {
        let a = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5, 3.0, -2.0]).view([3, 2]);
        let b = Tensor::from_slice(&[1.0f32, -1.0, 2.0]);
        let w0 = [0.3f32, -0.7];
        let loss = |w: &Tensor| (a.matmul(w) - &b).square().sum(Kind::Float);

        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&w0));
        let mut reference = match optimiser {
            "adam" => nn::Adam {
                wd: 0.01,
                ..Default::default()
            }
            .build(&vs, 0.05)
            .unwrap(),
            _ => nn::Sgd {
                momentum: 0.9,
                wd: 0.01,
                ..Default::default()
            }
            .build(&vs, 0.01)
            .unwrap(),
        };
        for _ in 0..steps {
            reference.zero_grad();
            loss(&w).backward();
            reference.step();
        }

        let mut params = Tensor::from_slice(&w0);
        let leaf = params.detach().set_requires_grad(true);
        let mut ours = match optimiser {
            "adam" => FlatOptimiser::adam(2, 0.05, 0.01, Device::Cpu).unwrap(),
            _ => FlatOptimiser::sgd(0.9, 0.01, 0.01),
        };
        for _ in 0..steps {
            let grad = Tensor::run_backward(&[loss(&leaf)], &[&leaf], false, false)
                .pop()
                .unwrap();
            ours.step(&mut params, grad).unwrap();
        }
        (
            Vec::<f32>::try_from(&w.detach()).unwrap(),
            Vec::<f32>::try_from(&params).unwrap(),
        )
    }

    #[test]
    fn flat_adam_follows_libtorch_adam_step_for_step() {
        let (reference, ours) = both("adam", 50);
        for (r, o) in reference.iter().zip(&ours) {
            assert!((r - o).abs() < 1e-5, "{reference:?} against {ours:?}");
        }
        assert!(ours.iter().any(|w| (w - 0.3).abs() > 0.1), "it moved");
    }

    #[test]
    fn flat_sgd_with_momentum_follows_libtorch_sgd_step_for_step() {
        let (reference, ours) = both("sgd", 50);
        for (r, o) in reference.iter().zip(&ours) {
            assert!((r - o).abs() < 1e-5, "{reference:?} against {ours:?}");
        }
    }
}
