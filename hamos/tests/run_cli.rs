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

/// `hamos eval` on the run reproduces the run's own records for the same scorer, and adds others.
fn evaluate_again(cache: &Path, run: &Path, records: &[serde_json::Value]) {
    let eval_dir = run.join("again");
    let result = hamos(cache)
        .args(["eval", "--scorers", "knn,odin", "--run"])
        .arg(run)
        .arg("--out")
        .arg(&eval_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("| hamos | odin |") && stdout.contains("| pretrained | knn |"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("metrics.json")).unwrap()).unwrap();
    let again = json["records"].as_array().unwrap();
    for r in records.iter().filter(|r| r["scorer"] == "knn") {
        let same = again
            .iter()
            .find(|a| a["model"] == r["model"] && a["scorer"] == "knn" && a["dataset"] == r["dataset"])
            .unwrap_or_else(|| panic!("no record for {r}"));
        for field in ["fpr95", "auroc", "id_acc"] {
            assert_eq!(same[field], r[field], "{field} of {r}");
        }
    }
    assert!(eval_dir.join("scores/hamos/odin/mnist.npy").is_file());
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

/// `hamos table` over two hand-written metrics files: mean and sample std, per set and average.
#[test]
fn table_aggregates_runs_with_mean_and_sample_std() {
    let tmp = tempfile::tempdir().unwrap();
    let record = |dataset: &str, fpr95: f64, auroc: f64| {
        serde_json::json!({"model": "hamos", "scorer": "knn", "dataset": dataset, "fpr95": fpr95,
            "auroc": auroc, "aupr_in": 0.5, "aupr_out": 0.5, "fpr95_openood": fpr95, "id_acc": 0.9})
    };
    let runs = [(0.1, 0.9), (0.3, 0.8), (0.2, 0.7)];
    let mut paths = Vec::new();
    for (i, (fpr, auroc)) in runs.iter().enumerate() {
        let path = tmp.path().join(format!("run{i}.json"));
        let json =
            serde_json::json!({"records": [record("mnist", *fpr, *auroc), record("average", *fpr, *auroc)]});
        std::fs::write(&path, json.to_string()).unwrap();
        paths.push(path);
    }
    let out = tmp.path().join("table.md");
    let result = hamos(&tmp.path().join("cache"))
        .arg("table")
        .args(&paths)
        .arg("--per-set")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}{}", String::from_utf8_lossy(&result.stderr));
    // FPR95 0.1, 0.3, 0.2: mean 20 %, sample std 10 %; AUROC 0.9, 0.8, 0.7: 80 % +- 10 %.
    assert!(
        stdout.contains("| hamos | knn | mnist | 20.00 ± 10.00 | 80.00 ± 10.00 | 90.00 ± 0.00 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| hamos | knn | average | 20.00 ± 10.00 |"), "{stdout}");
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
