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
    for plot in ["hamos_scores.png", "hamos_roc.png", "hamos_embeddings.png"] {
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
