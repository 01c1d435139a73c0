//! `hamos table` over run directories (mean and sample std, warnings on repeated and differing
//! runs) and `hamos bench step`.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod cli_common;

use std::path::Path;

use cli_common::{hamos, small};

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
        .args(small().iter().flat_map(|s| ["--set", s]))
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
