//! `hamos embed`: a data set through a saved model, written as `.npz` (features, projected
//! embeddings, logits, labels) for `hamos synth` or the user's own tools.

use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};
use hamos_nn::checkpoint::{self, HostFile};
use npyz::WriterBuilder;

use crate::config::{DatasetSpec, RunConfig};
use crate::data::{self, ImageSet, Normalizer};
use crate::eval::models::{EvalModel, Network};
use crate::pipeline::Pipeline;
use crate::train::{self, embed::Embedded};

/// What `hamos embed` wrote.
pub struct EmbedOutcome {
    /// Rows written.
    pub rows: usize,
    /// The arrays in the file, with their shapes.
    pub arrays: Vec<(String, Vec<usize>)>,
    /// The model kind found in the checkpoint.
    pub network: &'static str,
}

/// The config for a checkpoint: `config` if given, else the `config.toml` of the run directory
/// holding `checkpoint` (`<run>/checkpoints/<file>`), else the shipped preset.
pub fn config_for(checkpoint: &Path, config: Option<PathBuf>, overrides: Vec<String>) -> Result<RunConfig> {
    let run_config =
        checkpoint.parent().and_then(Path::parent).map(|run| crate::RunDir::at(run).config_file());
    crate::load_config(config.or(run_config.filter(|file| file.is_file())), overrides)
}

/// The set named by `data`: `train` or `validation` (the config's split; only these read the
/// training set), `test`, the name of one of the config's OOD sets, or an inline TOML data set
/// such as `format = "idx", images = "x.gz", labels = "y.gz"` (labelled or not).
pub fn resolve_set(config: &RunConfig, data: &str) -> Result<ImageSet> {
    let shape = Some(config.model.input_shape());
    match data {
        "train" => return Ok(Pipeline::new(config).prepare()?.train.as_ref().clone()),
        "validation" => return Ok(Pipeline::new(config).prepare()?.validation),
        "test" => return data::load(&config.data.test, config.seed, shape),
        _ => {}
    }
    if let Some((index, set)) = config.data.ood.iter().enumerate().find(|(_, s)| s.name == data) {
        let mut images = data::load(&set.dataset, data::noise_seed(config.seed, index), shape)?;
        images.name = set.name.clone();
        return Ok(images);
    }
    let names: Vec<&str> = config.data.ood.iter().map(|s| s.name.as_str()).collect();
    // `format = "idx", images = "..."` is an inline table without its braces.
    let inner = data.trim().trim_start_matches('{').trim_end_matches('}');
    let parsed = toml::from_str::<toml::Table>(&format!("data = {{ {inner} }}"))
        .map_err(|e| e.to_string())
        .and_then(|mut table| {
            let value = table.remove("data").ok_or_else(|| "no value".to_string())?;
            value.try_into::<DatasetSpec>().map_err(|e| e.to_string())
        });
    let spec: DatasetSpec = parsed.map_err(|e| {
        Error::invalid(
            "--data",
            format!(
                "`{data}` is neither `train`, `validation`, `test`, an OOD set of the config ({}) nor \
                 an inline data set like `format = \"idx\", images = \"x.gz\"` ({e})",
                names.join(", ")
            ),
        )
    })?;
    data::load(&spec, config.seed, shape)
}

/// The classes of a checkpoint's classification layer (`fc.weight` or `backbone.fc.weight`).
fn checkpoint_classes(file: &HostFile, path: &Path) -> Result<usize> {
    ["backbone.fc.weight", "fc.weight"]
        .iter()
        .find_map(|name| file.get(*name))
        .and_then(|(_, dims, _)| (dims.len() == 2).then_some(dims[0]))
        .ok_or_else(|| {
            Error::Data(format!(
                "{}: no classification layer (`fc.weight` or `backbone.fc.weight` of rank 2); not a \
                 checkpoint of `hamos run`/`hamos train` or a PyTorch classifier under OpenOOD's names",
                path.display()
            ))
        })
}

/// The registered backbones (each with its default config) whose every parameter the checkpoint
/// holds with the same shape, under `backbone.` or bare names.
fn matching_backbones(config: &RunConfig, file: &HostFile, classes: usize) -> Vec<String> {
    let backend = match crate::open_backend(config) {
        Ok(backend) => backend,
        Err(_) => return Vec::new(),
    };
    let mut found = Vec::new();
    for name in hamos_api::registry::plugin_names(hamos_api::PluginKind::Model) {
        let table: toml::Table =
            [("kind".to_string(), toml::Value::String(name.into()))].into_iter().collect();
        let Ok(backbone) = toml::Value::Table(table).try_into::<Box<dyn hamos_api::Backbone>>() else {
            continue;
        };
        let Ok(net) = hamos_nn::Classifier::new(backbone.into(), classes, "") else { continue };
        let Ok(params) = net.init_store(backend.clone(), &mut hamos_api::rng_from_seed(0)) else { continue };
        let held = |param: &str, dims: Vec<usize>| {
            [format!("backbone.{param}"), param.to_string()]
                .iter()
                .any(|n| file.get(n).is_some_and(|(_, shape, _)| *shape == dims))
        };
        if params.iter().all(|(param, p)| checkpoint::is_optional(param) || held(param, p.tensor.dims())) {
            found.push(name.to_string());
        }
    }
    found
}

/// The network a checkpoint holds: a dual-head network when it has a projection head. When the
/// configured backbone does not fit the file, the error says which registered ones do.
fn load_model(config: &RunConfig, path: &Path, file: &HostFile, classes: usize) -> Result<EvalModel> {
    let dual = file.contains_key("head.0.weight");
    let backend = crate::open_backend(config)?;
    let rng = &mut hamos_api::rng_from_seed(config.seed);
    EvalModel::load(config, &backend, path, classes, dual, rng).map_err(|error| {
        let configured = config.model.typetag_name();
        let fits = matching_backbones(config, file, classes);
        let hint = match fits.as_slice() {
            [] => "no registered backbone with its default config fits it".to_string(),
            [one] if one == configured => return error,
            [one] => format!("it looks like a `{one}` network: add `--set model.kind={one}`"),
            many => format!("it fits the registered backbones {}", many.join(", ")),
        };
        Error::Data(format!("{error}; the config's model is `{configured}`, {hint}"))
    })
}

/// Writes `data` through the model of `checkpoint` to `out` (`.npz`). Reads only the model
/// config, the normalization and the set to embed (the training set only for `train` and
/// `validation`); the class count comes from the checkpoint.
pub fn embed(config: &RunConfig, checkpoint: &Path, data: &str, out: &Path) -> Result<EmbedOutcome> {
    if out.extension().is_none_or(|e| e != "npz") {
        return Err(Error::invalid("--out", format!("{} must end in .npz", out.display())));
    }
    crate::synth::check_out_folder("--out", out)?;
    let file = checkpoint::read(checkpoint)?;
    let classes = checkpoint_classes(&file, checkpoint)?;
    // The model first: a wrong kind is the likeliest mistake, and its error names the fix.
    let model = load_model(config, checkpoint, &file, classes)?;
    let normalizer = Normalizer::from_config(&config.data)?;
    normalizer.check(config.model.input_shape())?;
    let set = resolve_set(config, data)?;
    if set.is_empty() {
        return Err(Error::Data(format!("data set `{data}` has no images")));
    }
    let rows = model.embed(&set, &normalizer, train::eval_chunk(config))?;
    let network = match model.network {
        Network::Classifier(_) => "classifier",
        Network::Dual(_) => "dual-head",
    };
    let arrays = write_npz(out, &rows)?;
    Ok(EmbedOutcome { rows: rows.len(), arrays, network })
}

/// Unit-norm embeddings: the projected ones, or the L2-normalized features of a classifier.
fn unit_embeddings(rows: &Embedded) -> (Vec<f32>, usize) {
    if rows.embedding_dim > 0 {
        return (rows.embeddings.clone(), rows.embedding_dim);
    }
    let d = rows.feature_dim.max(1);
    let mut out = rows.features.clone();
    for row in out.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    (out, d)
}

fn write_npz(path: &Path, rows: &Embedded) -> Result<Vec<(String, Vec<usize>)>> {
    let n = rows.len();
    let (embeddings, d) = unit_embeddings(rows);
    let mut arrays = vec![
        ("features".to_string(), vec![n, rows.feature_dim]),
        ("embeddings".to_string(), vec![n, d]),
        ("logits".to_string(), vec![n, rows.classes]),
    ];
    let write = || -> std::io::Result<()> {
        let mut npz = npyz::npz::NpzWriter::create(path)?;
        let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for ((name, dims), values) in arrays.iter().zip([&rows.features, &embeddings, &rows.logits]) {
            let shape: Vec<u64> = dims.iter().map(|&v| v as u64).collect();
            let mut w = npz.array::<f32>(name, options)?.default_dtype().shape(&shape).begin_nd()?;
            w.extend(values.iter().copied())?;
            w.finish()?;
        }
        if let Some(labels) = &rows.labels {
            let mut w = npz.array::<i64>("labels", options)?.default_dtype().shape(&[n as u64]).begin_nd()?;
            w.extend(labels.iter().copied())?;
            w.finish()?;
        }
        Ok(())
    };
    write().map_err(|source| Error::Io { op: "writing embeddings", path: path.to_path_buf(), source })?;
    if rows.labels.is_some() {
        arrays.push(("labels".to_string(), vec![n]));
    }
    Ok(arrays)
}
