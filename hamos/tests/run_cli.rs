//! `hamos run` end to end on a small slice of the shipped data: the run directory holds what
//! the README promises, its metrics can be recomputed from the raw scores, and bad input is a
//! one-line error.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::path::Path;
use std::process::Command;

fn hamos(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hamos"));
    cmd.env("HAMOS_CACHE_DIR", cache).env("RAYON_NUM_THREADS", "2");
    cmd
}

const SMALL: [&str; 9] = [
    "model.kind=mlp",
    "data.train_limit=352",
    "train.batch_size=32",
    "train.epochs=1",
    "train.pretrain_epochs=1",
    "train.buffer_size=32",
    "energy.k=8",
    "threads=1",
    "seed=3",
];

fn read_npy(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<f64>().unwrap()
}

#[test]
fn run_writes_the_run_directory_and_its_metrics_recompute() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut cmd = hamos(&tmp.path().join("cache"));
    cmd.arg("run").arg("--out").arg(&out);
    for set in SMALL {
        cmd.arg("--set").arg(set);
    }
    let result = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("| hamos | knn |") && stdout.contains("run directory:"), "{stdout}");
    for file in ["config.toml", "VERSION", "metrics.json", "metrics.csv", "report.md", "diagnostics.jsonl"] {
        assert!(out.join(file).is_file(), "missing {file}");
    }
    for plot in
        ["hamos_knn_scores.png", "hamos_knn_roc.png", "pretrained_knn_scores.png", "hamos_embeddings.png"]
    {
        let bytes = std::fs::read(out.join("plots").join(plot)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{plot}");
    }
    assert!(out.join("checkpoints/hamos.safetensors").is_file());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let records = json["records"].as_array().unwrap();
    let models: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["cider_only", "hamos", "pretrained"].into_iter().collect());
    for r in records {
        for field in ["fpr95", "auroc", "aupr_in", "aupr_out", "id_acc"] {
            let v = r[field].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{field} = {v} in {r}");
        }
    }
    // AUROC of one record from the raw scores, by brute force over all pairs.
    let record = records.iter().find(|r| r["model"] == "hamos" && r["dataset"] == "mnist").unwrap();
    let id = read_npy(&out.join("scores/hamos/knn/id.npy"));
    let ood = read_npy(&out.join("scores/hamos/knn/mnist.npy"));
    let wins: f64 = id
        .iter()
        .map(|a| {
            ood.iter()
                .map(|b| {
                    if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum();
    let auroc = wins / (id.len() * ood.len()) as f64;
    assert!((auroc - record["auroc"].as_f64().unwrap()).abs() < 1e-12, "{auroc} vs {record}");
    check_features_and_groups(&out, records);
    let diagnostics = std::fs::read_to_string(out.join("diagnostics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(diagnostics.lines().next().unwrap()).unwrap();
    assert!(first["rounds"].as_array().is_some_and(|r| !r.is_empty()), "{first}");
    // Every line names its model and phase; both fine-tuned models are there.
    let lines: Vec<serde_json::Value> =
        diagnostics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l["phase"] == "finetune"), "{first}");
    for model in ["hamos", "cider_only"] {
        assert!(lines.iter().any(|l| l["model"] == model), "no {model} line");
    }
    assert!(lines.iter().filter(|l| l["model"] == "cider_only").all(|l| l["acceptance"].is_null()));
    // Logs to a pipe: no colour codes, no NaN, a line per evaluation phase.
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in piped logs: {stderr}");
    assert!(!stderr.contains("NaN"), "{stderr}");
    assert!(stderr.contains("evaluating pretrained, hamos and cider_only"), "{stderr}");
    check_provenance(&out);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("| pretrained | odin |") && report.contains("inter-class dispersion"),
        "{report}"
    );
    let sphere: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hyperspherical.json")).unwrap()).unwrap();
    let sphere = sphere["metrics"].as_array().unwrap();
    assert_eq!(sphere.len(), 3);
    for m in sphere {
        for field in ["dispersion_deg", "compactness_deg", "mean_separation_deg"] {
            let v = m[field].as_f64().unwrap();
            assert!((0.0..=180.0).contains(&v), "{field} = {v} in {m}");
        }
    }

    evaluate_again(&tmp.path().join("cache"), &out, records);
    embed_a_set(&tmp.path().join("cache"), &out, tmp.path());
    config_is_what_the_run_used(&tmp.path().join("cache"), &out);
    a_second_run_is_refused(&tmp.path().join("cache"), &out);
}

/// `hamos config` with the job's arguments prints exactly the run's `config.toml`.
fn config_is_what_the_run_used(cache: &Path, run: &Path) {
    let result = hamos(cache).arg("config").args(SMALL.iter().flat_map(|s| ["--set", s])).output().unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let printed = String::from_utf8(result.stdout).unwrap();
    assert_eq!(printed, std::fs::read_to_string(run.join("config.toml")).unwrap());
    assert!(printed.contains("mean = [0.286]"), "floats as written: {printed}");
}

/// A second `run` or `train` into a finished run's directory is refused, and leaves it as it was.
fn a_second_run_is_refused(cache: &Path, run: &Path) {
    let before = std::fs::read(run.join("config.toml")).unwrap();
    for command in ["run", "train"] {
        let result = hamos(cache)
            .args([command, "--out"])
            .arg(run)
            .args(SMALL.iter().flat_map(|s| ["--set", s]))
            .args(["--set", "seed=4"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{command} into a finished run: {stderr}");
        assert!(stderr.contains("holds a run") && stderr.contains("--force"), "{stderr}");
        assert!(stderr.contains("--resume"), "{stderr}");
    }
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), before);
    // Resuming with a changed setting is refused too.
    let result =
        hamos(cache).args(["train", "--resume", "--set", "seed=4", "--out"]).arg(run).output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("seed = 4 (run: 3)"), "{stderr}");
}

/// `--resume` needs a run with a checkpoint; `--force` clears only run directories.
#[test]
fn resume_without_a_checkpoint_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let train = |args: &[&str], out: &Path| {
        let result = hamos(&cache).arg("train").args(args).arg("--out").arg(out).output().unwrap();
        assert!(!result.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(!stderr.contains("panicked") && stderr.lines().count() == 1, "{stderr}");
        stderr
    };
    // Nothing there.
    let stderr = train(&["--resume"], &tmp.path().join("nothing"));
    assert!(stderr.contains("no run to resume"), "{stderr}");
    // A run that never finished an epoch: its config.toml, no checkpoint.
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    let config =
        hamos(&cache).args(["config"]).args(SMALL.iter().flat_map(|s| ["--set", s])).output().unwrap();
    std::fs::write(run.join("config.toml"), &config.stdout).unwrap();
    let stderr = train(&["--resume"], &run);
    assert!(stderr.contains("no checkpoint") && stderr.contains("hamos.safetensors"), "{stderr}");
    let stderr = train(&["--resume", "--no-outliers"], &run);
    assert!(stderr.contains("cider_only.safetensors"), "{stderr}");
    let stderr = train(&["--resume", "--config", "examples/configs/default.toml"], &run);
    assert!(stderr.contains("drop --config"), "{stderr}");
    // --force never clears a directory that is not a run's.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let stderr = train(&["--force"], &other);
    assert!(stderr.contains("not a run directory"), "{stderr}");
    assert!(other.join("notes.txt").is_file());
}

/// report.md opens with what produced it and states its unit once.
fn check_provenance(out: &Path) {
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let head: String = report.lines().take(12).collect::<Vec<_>>().join("\n");
    for needle in [
        "seed 3, backend candle on cpu",
        "model mlp",
        "loss cider",
        "sampler hmc",
        "fine-tuning 1 epoch (",
        "data.train_limit = 352",
        "ID test ",
        "validation ",
        concat!("hamos ", env!("CARGO_PKG_VERSION"), ", commit "),
        "total time",
    ] {
        assert!(head.contains(needle), "{needle} in the head of report.md: {head}");
    }
    assert!(report.contains("in percent") && !report.contains("fractions"), "{report}");
    assert!(report.contains("- hamos epoch 1/1:") && report.contains("- cider_only epoch 1/1:"), "{report}");
    assert!(!report.contains("NaN"), "{report}");
    let cache = report.lines().find(|l| l.contains("cached at")).unwrap_or_default();
    let cache_path = cache.rsplit("cached at ").next().unwrap_or_default();
    assert!(Path::new(cache_path.trim()).is_absolute(), "relative cache path: {cache}");
}

/// Brute-force AUROC over all (ID, OOD) pairs, ties counting one half.
fn pairwise_auroc(id: &[f64], ood: &[f64]) -> f64 {
    let wins: f64 = id
        .iter()
        .flat_map(|a| ood.iter().map(move |b| (a > b) as u8 as f64 + 0.5 * (a == b) as u8 as f64))
        .sum();
    wins / (id.len() * ood.len()) as f64
}

/// Both fine-tuned models have `knn` (head) and `knn_features` (penultimate features) records
/// for every OOD set and the three averages, with raw scores; the near and far averages are the
/// means of the default groups (MNIST and Animal-MNIST near, the rest far); report.md and
/// metrics.csv show them.
fn check_features_and_groups(out: &Path, records: &[serde_json::Value]) {
    let near = ["mnist", "animal_mnist"];
    let far = ["textures", "gaussian_noise", "uniform_noise"];
    let find = |model: &str, scorer: &str, dataset: &str| {
        records
            .iter()
            .find(|r| r["model"] == model && r["scorer"] == scorer && r["dataset"] == dataset)
            .unwrap_or_else(|| panic!("no record {model} / {scorer} / {dataset}"))
    };
    for model in ["hamos", "cider_only"] {
        for scorer in ["knn", "knn_features"] {
            for set in near.iter().chain(&far) {
                let group = if near.contains(set) { "near" } else { "far" };
                assert_eq!(find(model, scorer, set)["group"], group, "{model} {scorer} {set}");
            }
            for (average, members) in [
                ("average", near.iter().chain(&far).copied().collect::<Vec<_>>()),
                ("near_average", near.to_vec()),
                ("far_average", far.to_vec()),
            ] {
                let record = find(model, scorer, average);
                for field in ["fpr95", "auroc", "aupr_in", "aupr_out", "fpr95_openood", "id_acc"] {
                    let want =
                        members.iter().map(|s| find(model, scorer, s)[field].as_f64().unwrap()).sum::<f64>()
                            / members.len() as f64;
                    let got = record[field].as_f64().unwrap();
                    assert!(
                        (got - want).abs() < 1e-12,
                        "{model} {scorer} {average} {field}: {got} vs {want}"
                    );
                }
            }
        }
        // The raw scores of `knn_features` recompute its AUROC; they differ from the head's.
        let base = out.join("scores").join(model);
        let id = read_npy(&base.join("knn_features/id.npy"));
        let mnist = read_npy(&base.join("knn_features/mnist.npy"));
        let auroc = find(model, "knn_features", "mnist")["auroc"].as_f64().unwrap();
        assert!((pairwise_auroc(&id, &mnist) - auroc).abs() < 1e-12, "{model}: {auroc}");
        assert_ne!(id, read_npy(&base.join("knn/id.npy")), "{model}: features and head scored alike");
        for set in far {
            assert!(base.join(format!("knn_features/{set}.npy")).is_file(), "{model} {set}");
        }
    }
    assert!(!records.iter().any(|r| r["model"] == "pretrained" && r["scorer"] == "knn_features"));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| hamos | knn_features |",
        "| cider_only | knn_features |",
        "near-OOD avg FPR95 | near-OOD avg FPR95 (OpenOOD) | near-OOD avg AUROC | far-OOD avg FPR95",
        "mnist (near) FPR95 | mnist (near) FPR95 (OpenOOD)",
        "textures (far) AUROC",
        "ID-OOD separation (near avg)",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("model,scorer,dataset,group,fpr95,"), "{csv}");
    assert!(csv.contains("\nhamos,knn_features,near_average,near,"), "{csv}");
    let sphere: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hyperspherical.json")).unwrap()).unwrap();
    for m in sphere["metrics"].as_array().unwrap() {
        let separation = m["separation_deg"].as_array().unwrap();
        let mean = |sets: &[&str]| {
            let values: Vec<f64> = separation
                .iter()
                .filter(|p| sets.contains(&p[0].as_str().unwrap()))
                .map(|p| p[1].as_f64().unwrap())
                .collect();
            values.iter().sum::<f64>() / values.len() as f64
        };
        assert!((m["near_separation_deg"].as_f64().unwrap() - mean(&near)).abs() < 1e-9, "{m}");
        assert!((m["far_separation_deg"].as_f64().unwrap() - mean(&far)).abs() < 1e-9, "{m}");
    }
}

/// `hamos eval` on the run reproduces the run's own records for the same scorer, and adds others.
fn evaluate_again(cache: &Path, run: &Path, records: &[serde_json::Value]) {
    let eval_dir = run.join("again");
    let result = hamos(cache)
        .args(["eval", "--scorers", "knn,knn_features,odin", "--run"])
        .arg(run)
        .arg("--out")
        .arg(&eval_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("| hamos | odin |") && stdout.contains("| pretrained | knn |"), "{stdout}");
    assert!(stdout.contains("| cider_only | knn_features |"), "{stdout}");
    // The same model order as `hamos run`, timings in its report.
    let order = |text: &str| -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| model")) {
            let model = line.split('|').nth(1).unwrap_or_default().trim().to_string();
            if !seen.contains(&model) {
                seen.push(model);
            }
        }
        seen
    };
    assert_eq!(order(&stdout), ["pretrained", "hamos", "cider_only"], "{stdout}");
    let report = std::fs::read_to_string(eval_dir.join("report.md")).unwrap();
    assert!(report.contains("- features, scoring and metrics: ") && report.contains("- total: "), "{report}");
    assert!(report.contains("evaluation of run "), "{report}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("metrics.json")).unwrap()).unwrap();
    let again = json["records"].as_array().unwrap();
    // Every dataset, the near, far and overall averages included, of both KNN views.
    for r in records.iter().filter(|r| r["scorer"] == "knn" || r["scorer"] == "knn_features") {
        let same = again
            .iter()
            .find(|a| a["model"] == r["model"] && a["scorer"] == r["scorer"] && a["dataset"] == r["dataset"])
            .unwrap_or_else(|| panic!("no record for {r}"));
        for field in ["fpr95", "auroc", "fpr95_openood", "id_acc", "group"] {
            assert_eq!(same[field], r[field], "{field} of {r}");
        }
    }
    assert!(again.iter().any(|a| a["scorer"] == "knn_features" && a["dataset"] == "far_average"));
    assert!(eval_dir.join("scores/hamos/odin/mnist.npy").is_file());
    assert!(eval_dir.join("scores/cider_only/knn_features/textures.npy").is_file());
    assert!(eval_dir.join("plots/hamos_knn_roc.png").is_file());
}

/// `hamos embed` writes the test set through the fine-tuned network.
fn embed_a_set(cache: &Path, run: &Path, tmp: &Path) {
    let npz = tmp.join("test-embeddings.npz");
    let result = hamos(cache)
        .args(["embed", "--data", "mnist", "--checkpoint"])
        .arg(run.join("checkpoints/hamos.safetensors"))
        .arg("--out")
        .arg(&npz)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    let file = std::fs::File::open(&npz).unwrap();
    let mut archive = npyz::npz::NpzArchive::new(std::io::BufReader::new(file)).unwrap();
    let embeddings = archive.by_name("embeddings").unwrap().unwrap();
    let shape = embeddings.shape().to_vec();
    let values: Vec<f32> = embeddings.into_vec().unwrap();
    assert_eq!(shape[1], 128, "{shape:?}");
    // The same rows as the run's own evaluation: KNN scores are minus distances on these rows,
    // so here only their norm is checked (unit vectors).
    for row in values.chunks(128) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let logits_shape = archive.by_name("logits").unwrap().unwrap().shape().to_vec();
    assert_eq!(logits_shape, [shape[0], 10]);

    // Any data set inline, through the pretrained classifier: features, normalized, as embeddings.
    let inline = tmp.join("textures.npz");
    let result = hamos(cache)
        .args(["embed", "--data", "format = \"shipped\", name = \"textures\"", "--checkpoint"])
        .arg(run.join("checkpoints/pretrained.safetensors"))
        .arg("--out")
        .arg(&inline)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("243 rows through the classifier"), "{stdout}");
    let bad = hamos(cache)
        .args(["embed", "--data", "nonsense", "--out", "x.npz", "--checkpoint"])
        .arg(run.join("checkpoints/hamos.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("--data") && stderr.contains("mnist"), "{stderr}");
}

/// A run directory with `config.toml` and `VERSION` but no checkpoint, or from another version.
#[test]
fn eval_names_what_is_wrong_with_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    let config = hamos(&cache).args(["config"]).output().unwrap();
    std::fs::write(run.join("config.toml"), &config.stdout).unwrap();
    let version = hamos(&cache).arg("--version").output().unwrap();
    std::fs::write(run.join("VERSION"), &version.stdout).unwrap();
    let eval = |dir: &Path| {
        let result = hamos(&cache).args(["eval", "--run"]).arg(dir).output().unwrap();
        assert!(!result.status.success());
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = eval(&run);
    assert!(stderr.contains("no checkpoint") && stderr.contains("hamos run --out"), "{stderr}");
    std::fs::write(run.join("VERSION"), "hamos 0.0.1\n").unwrap();
    let stderr = eval(&run);
    assert!(stderr.contains("written by hamos 0.0.1"), "{stderr}");
    let stderr = eval(&tmp.path().join("nowhere"));
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// Writes idx files of `n` 28x28 images and the given labels.
fn write_idx(dir: &Path, name: &str, labels: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let n = labels.len() as u32;
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    images.extend((0..n as usize * 784).map(|i| (i * 7 % 251) as u8));
    let mut label_bytes = vec![0, 0, 8, 1];
    label_bytes.extend(n.to_be_bytes());
    label_bytes.extend(labels);
    let (i, l) = (dir.join(format!("{name}-images")), dir.join(format!("{name}-labels")));
    std::fs::write(&i, images).unwrap();
    std::fs::write(&l, label_bytes).unwrap();
    (i, l)
}

/// An empty ID test set and single-class training data stop with a message naming the problem.
#[test]
fn empty_test_set_and_single_class_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (empty_images, empty_labels) = write_idx(tmp.path(), "empty", &[]);
    let (one_images, one_labels) = write_idx(tmp.path(), "one", &[3; 64]);
    let spec = |i: &Path, l: &Path| format!("{{ format = \"idx\", images = {:?}, labels = {:?} }}", i, l);
    let cases = [
        (format!("data.test={}", spec(&empty_images, &empty_labels)), "empty"),
        (format!("data.train={}", spec(&one_images, &one_labels)), "class"),
    ];
    for (i, (set, expected)) in cases.into_iter().enumerate() {
        let result = hamos(&tmp.path().join("cache"))
            .args(["run", "--out"])
            .arg(tmp.path().join(format!("run{i}")))
            .args(SMALL.iter().flat_map(|s| ["--set", s]))
            .args(["--set", &set])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{set}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error:") && last.contains(expected), "{set}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_input_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[data.ood]]\nname = \"mine\"\ndataset = { format = \"idx\", images = \"no/such/images.gz\" }\n",
    )
    .unwrap();
    let result = hamos(&tmp.path().join("cache"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .args(SMALL.iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error:") && last.contains("no/such/images.gz"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `hamos table` over three hand-written metrics files: mean and sample std; by default the
/// near, far and overall averages side by side (FPR95, FPR95 (OpenOOD), AUROC, then ID acc),
/// with `--per-set` every record as a row too; a record missing from some runs says so.
#[test]
fn table_aggregates_runs_with_mean_and_sample_std() {
    let tmp = tempfile::tempdir().unwrap();
    let record = |scorer: &str, dataset: &str, group: &str, [fpr95, openood, auroc]: [f64; 3]| {
        serde_json::json!({"model": "hamos", "scorer": scorer, "dataset": dataset, "group": group,
            "fpr95": fpr95, "auroc": auroc, "aupr_in": 0.5, "aupr_out": 0.5, "fpr95_openood": openood,
            "id_acc": 0.9})
    };
    // Per run: (FPR95, FPR95 (OpenOOD), AUROC) of the near average (also mnist's), the far
    // average (also textures') and the overall average.
    let runs = [
        [[0.1, 0.2, 0.9], [0.05, 0.04, 0.99], [0.3, 0.5, 0.6]],
        [[0.3, 0.2, 0.8], [0.05, 0.06, 0.97], [0.4, 0.5, 0.6]],
        [[0.2, 0.2, 0.7], [0.11, 0.08, 0.95], [0.5, 0.5, 0.6]],
    ];
    let mut paths = Vec::new();
    for (i, [near, far, all]) in runs.iter().enumerate() {
        let path = tmp.path().join(format!("run{i}.json"));
        let mut records = vec![
            record("knn", "mnist", "near", *near),
            record("knn", "textures", "far", *far),
            record("knn", "average", "all", *all),
            record("knn", "near_average", "near", *near),
            record("knn", "far_average", "far", *far),
        ];
        if i < 2 {
            // As written before groups existed, in two of the three runs.
            let mut old = record("energy", "average", "", [0.5, 0.5, 0.5]);
            old.as_object_mut().unwrap().remove("group");
            records.push(old);
        }
        std::fs::write(&path, serde_json::json!({ "records": records }).to_string()).unwrap();
        paths.push(path);
    }
    let table = |per_set: bool, out: Option<&Path>| {
        let mut cmd = hamos(&tmp.path().join("cache"));
        cmd.arg("table").args(&paths);
        if per_set {
            cmd.arg("--per-set");
        }
        if let Some(out) = out {
            cmd.arg("--out").arg(out);
        }
        let result = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
        assert!(result.status.success(), "{stdout}{}", String::from_utf8_lossy(&result.stderr));
        stdout
    };
    let stdout = table(false, None);
    assert!(
        stdout.contains(
            "| model | scorer | near FPR95 | near FPR95 (OpenOOD) | near AUROC | far FPR95 | \
             far FPR95 (OpenOOD) | far AUROC | all FPR95 | all FPR95 (OpenOOD) | all AUROC | ID acc |"
        ),
        "{stdout}"
    );
    // Near: FPR95 0.1, 0.3, 0.2 (mean 20 %, sample std 10 %), OpenOOD 0.2 thrice, AUROC 0.9, 0.8,
    // 0.7. Far: FPR95 0.05, 0.05, 0.11 (7 %, std sqrt(0.0012) = 3.46 %), OpenOOD 0.04, 0.06,
    // 0.08, AUROC 0.99, 0.97, 0.95. All: FPR95 0.3, 0.4, 0.5.
    assert!(
        stdout.contains(
            "| hamos | knn | 20.00 ± 10.00 | 20.00 ± 0.00 | 80.00 ± 10.00 | 7.00 ± 3.46 | 6.00 ± 2.00 | \
             97.00 ± 2.00 | 40.00 ± 10.00 | 50.00 ± 0.00 | 60.00 ± 0.00 | 90.00 ± 0.00 |"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("| hamos | energy | - | - | - | - | - | - | 50.00 ± 0.00 (2 runs) | 50.00 ± 0.00 |"),
        "{stdout}"
    );
    assert!(!stdout.contains("mnist"), "per-set rows without --per-set: {stdout}");
    let out = tmp.path().join("table.md");
    let stdout = table(true, Some(&out));
    assert!(
        stdout.contains(
            "| hamos | knn | mnist | 20.00 ± 10.00 | 20.00 ± 0.00 | 80.00 ± 10.00 | 90.00 ± 0.00 |"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("| hamos | knn | far_average | 7.00 ± 3.46 | 6.00 ± 2.00 | 97.00 ± 2.00 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| hamos | knn | 20.00 ± 10.00 | 20.00 ± 0.00 |"), "averages first: {stdout}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stdout);
    let missing = hamos(&tmp.path().join("cache")).args(["table", "no/such/run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("no/such/run"), "{stderr}");
}

/// `hamos bench step` runs the trainer's step and splits its time.
#[test]
fn bench_step_prints_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    let result = hamos(&tmp.path().join("cache"))
        .args(["bench", "step", "--backends", "candle", "--steps", "2"])
        .args(SMALL.iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}{}", String::from_utf8_lossy(&result.stderr));
    let row =
        stdout.lines().find(|l| l.starts_with("| mlp | candle | 32 |")).unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<f64> =
        row.split('|').filter_map(|c| c.trim().trim_end_matches(" %").parse().ok()).collect();
    // batch, ms/step, images/s, data, network, synthesis, share: all finite, synthesis > 0.
    assert_eq!(cells.len(), 7, "{row}");
    assert!(cells.iter().all(|v| v.is_finite() && *v >= 0.0) && cells[5] > 0.0, "{row}");
}

/// `hamos table` counts a run given twice once, says that one run has no spread, and warns when
/// runs differ beyond the seed.
#[test]
fn table_warns_on_repeated_and_differing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let record = |fpr95: f64| {
        serde_json::json!({"model": "hamos", "scorer": "knn", "dataset": "average", "group": "all",
            "fpr95": fpr95, "auroc": 0.9, "aupr_in": 0.5, "aupr_out": 0.5, "fpr95_openood": 0.3,
            "id_acc": 0.9})
    };
    let config = hamos(&cache).args(["config"]).output().unwrap().stdout;
    let run = |name: &str, fpr95: f64, seed: u64, threads: usize| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.json"),
            serde_json::json!({ "records": [record(fpr95)] }).to_string(),
        )
        .unwrap();
        let mut text = String::from_utf8(config.clone()).unwrap();
        assert!(text.contains("seed = 0\n") && text.contains("threads = 0\n"), "{text}");
        text = text.replacen("seed = 0\n", &format!("seed = {seed}\n"), 1);
        text = text.replacen("threads = 0\n", &format!("threads = {threads}\n"), 1);
        std::fs::write(dir.join("config.toml"), text).unwrap();
        dir
    };
    let seed0 = run("seed0", 0.2, 0, 0);
    let seed1 = run("seed1", 0.4, 1, 0);
    let small = run("small", 0.6, 2, 1);
    let table = |runs: &[&Path]| {
        let result = hamos(&cache).arg("table").args(runs).output().unwrap();
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        (String::from_utf8(result.stdout).unwrap(), String::from_utf8(result.stderr).unwrap())
    };
    // The same run twice (once as its metrics.json): one run, no spread.
    let metrics = seed0.join("metrics.json");
    let (stdout, stderr) = table(&[&seed0, &metrics]);
    assert!(stderr.contains("same run") && stderr.contains("counted once"), "{stderr}");
    assert!(stdout.contains("over 1 run ") && stdout.contains("| 20.00 ± n/a |"), "{stdout}");
    // Two seeds: no warning, a real spread.
    let (stdout, stderr) = table(&[&seed0, &seed1]);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.contains("over 2 runs") && stdout.contains("| 30.00 ± 14.14 |"), "{stdout}");
    // A run with another config is averaged with a warning that names the difference.
    let (stdout, stderr) = table(&[&seed0, &seed1, &small]);
    assert!(stderr.contains("differs from") && stderr.contains("threads = 1 (0)"), "{stderr}");
    assert!(!stderr.contains("seed = "), "the seed may differ: {stderr}");
    assert!(stdout.contains("Warning:") && stdout.contains("threads = 1"), "{stdout}");
}

/// Output folders are never created silently, and a benchmark of a backend that is not compiled
/// in is an error rather than an empty table.
#[test]
fn missing_output_folders_and_backends_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("no/such/dir/x.npz");
    let result = hamos(&cache)
        .args(["embed", "--data", "test", "--checkpoint", "none.safetensors", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("does not exist"), "{stderr}");
    assert!(!tmp.path().join("no").exists());
    if !cfg!(feature = "tch") {
        let result =
            hamos(&cache).args(["bench", "train", "--backends", "tch", "--steps", "1"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && stderr.contains("`tch` is not compiled in"), "{stderr}");
    }
}
