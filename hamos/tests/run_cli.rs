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
        ["hamos_knn_scores.png", "hamos_knn_roc.png", "pretrained_msp_scores.png", "hamos_embeddings.png"]
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
    for (set, expected) in cases {
        let result = hamos(&tmp.path().join("cache"))
            .args(["run", "--out"])
            .arg(tmp.path().join("run"))
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
