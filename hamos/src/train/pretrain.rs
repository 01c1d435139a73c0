//! The classifier HamOS fine-tunes: loaded from `train.pretrained`, or pretrained here with
//! cross-entropy (Appendix F's warm-up) and, when the caller gives a cache folder, cached there,
//! so a second run with the same model, data, schedule, seed and backend reuses it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hamos_api::{Backbone, Backend, Error, ParamStore, Result};
use hamos_nn::checkpoint;
use hamos_nn::{cross_entropy_step, Classifier};

use super::feed::{epoch_batches, Feed};
use super::Prepared;
use crate::config::RunConfig;
use crate::pipeline::Observer;

/// Where the `hamos` command caches pretrained classifiers: `HAMOS_CACHE_DIR`, else
/// `runs/cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HAMOS_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("runs/cache"))
}

/// The cache file of this config's pretraining in the folder `cache`: a hash of everything that shapes its result,
/// the training images and labels themselves included (a data file replaced under the same
/// config must not reuse a classifier trained on the old one).
pub fn cache_path(cache: &Path, config: &RunConfig, data: &Prepared, backend: &str) -> Result<PathBuf> {
    let model = toml::to_string(&config.model).map_err(|e| Error::Config(format!("model: {e}")))?;
    // The data fields the pretraining reads: not the OOD test sets or the loader's threads, and
    // the augmentation only when it augments.
    let spec = &config.data;
    let augment = config.train.pretrain_augment.then_some(&spec.augment);
    let read = (&spec.train, spec.validation_fraction, spec.train_limit, &spec.mean, &spec.std, augment);
    let data_config = serde_json::to_string(&read).map_err(|e| Error::Config(format!("data: {e}")))?;
    let mut hasher = DefaultHasher::new();
    // Everything the pretraining reads: the network, the data and its feed, the optimizer
    // (`optimizer(.., nesterov = false)`), the schedule, the seed, where it runs, the version.
    let train = &config.train;
    (model, data_config, backend, &config.device, config.seed, train.pretrain_epochs, train.batch_size)
        .hash(&mut hasher);
    for value in [train.pretrain_learning_rate, train.momentum, train.weight_decay] {
        value.to_bits().hash(&mut hasher);
    }
    train.pretrain_augment.hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    for set in [data.train.as_ref(), &data.validation] {
        (&set.pixels, &set.labels, set.shape).hash(&mut hasher);
    }
    Ok(cache.join(format!("pretrained-{:016x}.safetensors", hasher.finish())))
}

/// The pretrained classifier's parameters (names `backbone.*`) and where they came from.
pub fn pretrained(
    config: &RunConfig,
    backbone: Arc<dyn Backbone>,
    data: &Prepared,
    backend: &Arc<dyn Backend>,
    cache: Option<&Path>,
    observer: &dyn Observer,
) -> Result<(Classifier, ParamStore, String)> {
    let net = Classifier::new(backbone, data.classes, "backbone")?;
    let mut rng = hamos_api::rng_from_seed(config.seed);
    let mut params = net.init_store(backend.clone(), &mut rng)?;
    if let Some(path) = &config.train.pretrained {
        load_prefixed(&mut params, path)?;
        return Ok((net, params, format!("loaded {}", path.display())));
    }
    let cached = cache.map(|folder| cache_path(folder, config, data, backend.name())).transpose()?;
    if let Some(cached) = cached.as_ref().filter(|path| path.is_file()) {
        checkpoint::load(&mut params, cached)?;
        return Ok((net, params, format!("cached {}", cached.display())));
    }
    let epochs = config.train.pretrain_epochs;
    let (mut sgd, schedule, steps_per_epoch) =
        super::optimizer(config, data, config.train.pretrain_learning_rate, epochs, false)?;
    let phase = "pretrain (cross-entropy)";
    observer.phase_started(phase, (epochs * steps_per_epoch) as u64, 0);
    let mut step = 0;
    for epoch in 0..epochs {
        let feed = Feed {
            config,
            data,
            two_views: false,
            augment: config.train.pretrain_augment,
            seed: config.seed ^ 0x5052_4554,
        };
        for batch in epoch_batches(&feed, epoch)? {
            let batch = batch?;
            let started = std::time::Instant::now();
            let images = backend.from_f32(&batch.images, &batch.dims())?;
            let labels = backend.from_i64(&batch.labels, &[batch.labels.len()])?;
            let lr = schedule.rate(step);
            let loss = cross_entropy_step(&net, &mut params, &mut sgd, &images, &labels, lr)
                .map_err(|e| Error::Data(format!("pretraining epoch {} step {step}: {e}", epoch + 1)))?;
            let rate = batch.labels.len() as f64 / started.elapsed().as_secs_f64();
            observer.phase_advanced(
                phase,
                &format!("epoch {}/{epochs} loss {loss:.3} {rate:.0} img/s", epoch + 1),
            );
            step += 1;
        }
    }
    observer.phase_finished(phase);
    let source = match cached {
        Some(cached) => {
            checkpoint::save(&params, &cached)?;
            format!("pretrained for {epochs} epochs, cached at {}", cached.display())
        }
        None => format!("pretrained for {epochs} epochs"),
    };
    Ok((net, params, source))
}

/// Loads a classifier checkpoint whose names are `backbone.*` or the backbone's own
/// (PyTorch) names, which then get the `backbone.` prefix.
pub fn load_prefixed(params: &mut ParamStore, path: &Path) -> Result<()> {
    let file = checkpoint::read(path)?;
    let prefixed = file.keys().all(|name| name.starts_with("backbone."));
    let renamed: checkpoint::HostFile = file
        .into_iter()
        .map(|(name, value)| (if prefixed { name } else { format!("backbone.{name}") }, value))
        .collect();
    checkpoint::load_host(params, renamed, path)
}
