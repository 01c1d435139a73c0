//! `hamos run` end to end on a small slice of the shipped data: the run directory holds what
//! the README promises, its metrics can be recomputed from the raw scores, evaluated again and
//! embedded, and a second run into it is refused.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod cli_common;

use std::path::Path;

use cli_common::{hamos, small};

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
    for set in small() {
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
    let result = hamos(cache).arg("config").args(small().iter().flat_map(|s| ["--set", s])).output().unwrap();
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
            .args(small().iter().flat_map(|s| ["--set", s]))
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
        hamos(&cache).args(["config"]).args(small().iter().flat_map(|s| ["--set", s])).output().unwrap();
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
