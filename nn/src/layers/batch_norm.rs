use hamos_api::{join_name, DType, Error, Forward, ParamStore, Result, Tensor};

/// Batch-norm settings, PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the new batch statistic in the running averages.
    pub momentum: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig { eps: 1e-5, momentum: 0.1 }
    }
}

/// PyTorch's `nn.BatchNorm2d` with affine parameters and running statistics.
///
/// Training normalizes with the batch's mean and biased variance over `(n, h, w)` and reports
/// new running averages (the unbiased variance enters them, as in PyTorch) and
/// `num_batches_tracked + 1` as buffer updates; evaluation normalizes with the running
/// statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    prefix: String,
    names: BatchNormNames,
    channels: usize,
    config: BatchNormConfig,
}

/// The parameter and buffer names of one batch norm, resolved once.
#[derive(Debug, Clone)]
struct BatchNormNames {
    weight: String,
    bias: String,
    running_mean: String,
    running_var: String,
    num_batches_tracked: String,
}

impl BatchNorm2d {
    /// Over `channels` channels, parameters under `prefix`.
    pub fn new(prefix: &str, channels: usize) -> Self {
        let name = |leaf: &str| join_name(prefix, leaf);
        let names = BatchNormNames {
            weight: name("weight"),
            bias: name("bias"),
            running_mean: name("running_mean"),
            running_var: name("running_var"),
            num_batches_tracked: name("num_batches_tracked"),
        };
        BatchNorm2d { prefix: prefix.to_string(), names, channels, config: BatchNormConfig::default() }
    }

    /// With other settings.
    pub fn with_config(self, config: BatchNormConfig) -> Self {
        BatchNorm2d { config, ..self }
    }

    /// Registers `weight` (ones), `bias` (zeros), `running_mean` (zeros), `running_var` (ones)
    /// and `num_batches_tracked` (an `I64` scalar), in PyTorch's order.
    pub fn init(&self, params: &mut ParamStore) -> Result<()> {
        let backend = params.backend().clone();
        let c = [self.channels];
        params.add_trainable(&self.names.weight, &backend.ones(&c)?)?;
        params.add_trainable(&self.names.bias, &backend.zeros(&c)?)?;
        params.add_buffer(&self.names.running_mean, &backend.zeros(&c)?)?;
        params.add_buffer(&self.names.running_var, &backend.ones(&c)?)?;
        params.add_buffer(&self.names.num_batches_tracked, &backend.from_i64(&[0], &[])?)
    }

    /// Normalizes `x` `[n, c, h, w]`.
    pub fn forward(&self, pass: &Forward, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.channels {
            return Err(Error::shape(
                "batch_norm2d",
                format!("`{}` expects [n, {}, h, w], got {dims:?}", self.prefix, self.channels),
            ));
        }
        let per_channel = [1, self.channels, 1, 1];
        if !pass.is_train() {
            let weight = pass.param(&self.names.weight)?.reshape(&per_channel)?;
            let bias = pass.param(&self.names.bias)?.reshape(&per_channel)?;
            let mean = pass.param(&self.names.running_mean)?.reshape(&per_channel)?;
            let var = pass.param(&self.names.running_var)?.reshape(&per_channel)?;
            // Folded into one scale and one shift: two broadcast ops over the activations.
            let scale = weight.div(&var.add_scalar(self.config.eps)?.sqrt()?)?;
            let shift = bias.sub(&mean.mul(&scale)?)?;
            return x.mul(&scale)?.add(&shift);
        }
        let count = dims[0] * dims[2] * dims[3];
        let weight = pass.param(&self.names.weight)?;
        let bias = pass.param(&self.names.bias)?;
        let out = x.batch_norm_train(&weight, &bias, self.config.eps).map_err(|e| match e {
            Error::Shape { msg, .. } => Error::shape("batch_norm2d", format!("`{}`: {msg}", self.prefix)),
            other => other,
        })?;
        self.record_running_stats(pass, &out.mean, &out.variance, count)?;
        Ok(out.output)
    }

    fn record_running_stats(&self, pass: &Forward, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.config.momentum;
        let c = [self.channels];
        let blend = |name: &str, batch: Tensor| -> Result<Tensor> {
            pass.params().get(name)?.scale(1.0 - m)?.add(&batch.reshape(&c)?.detach()?.scale(m)?)
        };
        let unbiased = var.scale(count as f64 / (count - 1) as f64)?;
        pass.update_buffer(&self.names.running_mean, blend(&self.names.running_mean, mean.clone())?);
        pass.update_buffer(&self.names.running_var, blend(&self.names.running_var, unbiased)?);
        let tracked = pass.params().get(&self.names.num_batches_tracked)?;
        let one = tracked.backend().from_i64(&[1], &[])?;
        pass.update_buffer(&self.names.num_batches_tracked, tracked.add(&one)?.to_dtype(DType::I64)?);
        Ok(())
    }
}
