//! SGD with momentum and weight decay under PyTorch's update rule (`torch.optim.SGD`, no
//! dampening, optional Nesterov), so trajectories compare with PyTorch's, and cosine annealing.

use std::collections::BTreeMap;

use hamos_api::{config::finite_in, Error, ParamStore, Result, Tensor};

/// SGD settings; defaults from the paper's Table 4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate at the start of the schedule.
    pub learning_rate: f64,
    /// Momentum (0 disables the buffers).
    pub momentum: f64,
    /// L2 weight decay added to every gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (PyTorch's form: the step is `g + momentum buf`, not `buf`).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { learning_rate: 0.01, momentum: 0.9, weight_decay: 1e-4, nesterov: false }
    }
}

impl SgdConfig {
    /// Checks ranges, naming the field.
    pub fn validate(&self) -> Result<()> {
        finite_in("train.learning_rate", self.learning_rate, 0.0, f64::INFINITY, false)?;
        finite_in("train.momentum", self.momentum, 0.0, 1.0, true)?;
        finite_in("train.weight_decay", self.weight_decay, 0.0, f64::INFINITY, true)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
        Ok(())
    }
}

/// SGD over the trainable tensors of a [`ParamStore`]:
/// `g = grad + wd p; buf = momentum buf + g` (`buf = g` on the first step); `p -= lr buf`, or
/// with Nesterov `p -= lr (g + momentum buf)`.
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    momentum_buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// A fresh optimizer (no momentum yet).
    pub fn new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Sgd { config, momentum_buffers: BTreeMap::new() })
    }

    /// The settings.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// One step at learning rate `lr` with `grads[i]` the gradient of the `i`-th entry of
    /// `params.trainable()`.
    pub fn step(&mut self, params: &mut ParamStore, grads: &[Tensor], lr: f64) -> Result<()> {
        let names: Vec<String> = params.trainable().iter().map(|(name, _)| name.to_string()).collect();
        if names.len() != grads.len() {
            return Err(Error::shape(
                "sgd",
                format!("{} gradients for {} trainable parameters", grads.len(), names.len()),
            ));
        }
        for (name, grad) in names.iter().zip(grads) {
            let value = params.get(name)?.detach()?;
            let mut direction = grad.detach()?;
            if self.config.weight_decay != 0.0 {
                direction = direction.add(&value.scale(self.config.weight_decay)?)?;
            }
            if self.config.momentum != 0.0 {
                let buffer = match self.momentum_buffers.get(name) {
                    Some(buffer) => buffer.scale(self.config.momentum)?.add(&direction)?,
                    None => direction.clone(),
                };
                self.momentum_buffers.insert(name.clone(), buffer.clone());
                direction = if self.config.nesterov {
                    direction.add(&buffer.scale(self.config.momentum)?)?
                } else {
                    buffer
                };
            }
            params.set(name, &value.sub(&direction.scale(lr)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name (for checkpoints).
    pub fn momentum_buffers(&self) -> &BTreeMap<String, Tensor> {
        &self.momentum_buffers
    }

    /// Restores momentum buffers saved from [`Sgd::momentum_buffers`].
    pub fn set_momentum_buffers(&mut self, buffers: BTreeMap<String, Tensor>) {
        self.momentum_buffers = buffers;
    }
}

/// Cosine annealing from `base` to `min` over `total` steps (PyTorch's `CosineAnnealingLR`
/// closed form): `min + (base - min) (1 + cos(pi t / total)) / 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineSchedule {
    /// Rate at step 0.
    pub base: f64,
    /// Rate at the last step.
    pub min: f64,
    /// Steps in the schedule.
    pub total: usize,
}

impl CosineSchedule {
    /// The rate at step `t` (held at `min` past the end).
    pub fn rate(&self, t: usize) -> f64 {
        if self.total == 0 {
            return self.base;
        }
        let progress = (t.min(self.total) as f64) / self.total as f64;
        self.min + (self.base - self.min) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
    }
}
