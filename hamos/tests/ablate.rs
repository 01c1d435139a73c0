//! `hamos ablate` on a slice of the shipped data: an ablation killed midway and rerun runs only
//! the missing cells and ends with the table of an uninterrupted run; a cell with a bad value
//! fails alone; the table's means and standard deviations are those of the cells' own
//! `metrics.json`; every shipped grid resolves to valid configs.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hamos::ablate::{Grid, GridArgs, GridFile};

/// A grid on a slice of the data: a small MLP, one epoch each, 2 seeds.
const SMALL_GRID: &str = r#"
seeds = [3, 4]
set = ["model.kind=mlp", "data.train_limit=352", "train.batch_size=32", "train.epochs=1",
       "train.pretrain_epochs=1", "train.buffer_size=32", "energy.k=8", "threads=1"]
[[vary]]
key = "sampler.kind"
values = ["random_walk", "hmc"]
"#;

fn ablate(cache: &Path, grid: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hamos"));
    cmd.env("HAMOS_CACHE_DIR", cache).env("RAYON_NUM_THREADS", "2");
    cmd.arg("ablate").arg("--grid").arg(grid).arg("--out").arg(out);
    cmd
}

fn write_grid(dir: &Path) -> PathBuf {
    let path = dir.join("grid.toml");
    std::fs::write(&path, SMALL_GRID).unwrap();
    path
}

/// `dir/file` (a CSV) without the timing columns (wall-clock time differs between any two runs).
fn csv_without_times(dir: &Path, file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let rows: Vec<Vec<String>> = text.lines().map(|l| l.split(',').map(String::from).collect()).collect();
    let timing: Vec<usize> =
        rows[0].iter().enumerate().filter(|(_, h)| h.starts_with("synthesis_ms")).map(|(i, _)| i).collect();
    assert!(!timing.is_empty(), "{:?}", rows[0]);
    rows.into_iter()
        .map(|row| row.into_iter().enumerate().filter(|(i, _)| !timing.contains(i)).map(|(_, v)| v).collect())
        .collect()
}

fn cell(out: &Path, kind: &str, seed: u64) -> PathBuf {
    out.join("cells").join(format!("sampler.kind={kind}")).join(format!("seed-{seed}"))
}

#[test]
fn a_killed_ablation_resumes_only_the_missing_cells_and_matches_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, grid) = (tmp.path().join("cache"), write_grid(tmp.path()));

    let whole = tmp.path().join("whole");
    let output = ablate(&cache, &grid, &whole).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr.matches(": running into ").count(), 4, "{stderr}");

    // Killed as soon as its first cell is complete.
    let killed = tmp.path().join("killed");
    let mut child =
        ablate(&cache, &grid, &killed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let first = cell(&killed, "random_walk", 3);
    let started = Instant::now();
    while !first.join("report.md").is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the ablation ended before its first cell was seen");
        assert!(started.elapsed() < Duration::from_secs(300), "no cell completed in 5 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!cell(&killed, "hmc", 4).join("report.md").exists(), "killed too late to test a resume");
    let first_metrics = std::fs::read(first.join("metrics.json")).unwrap();

    let output = ablate(&cache, &grid, &killed).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("sampler.kind=random_walk, seed 3: complete already, skipped"), "{stderr}");
    let ran = stderr.matches(": running into ").count();
    assert!((1..=3).contains(&ran), "ran {ran} cells on the rerun:\n{stderr}");
    assert_eq!(
        std::fs::read(first.join("metrics.json")).unwrap(),
        first_metrics,
        "a complete cell was rerun"
    );

    for file in ["table.csv", "cells.csv"] {
        assert_eq!(csv_without_times(&killed, file), csv_without_times(&whole, file), "{file}");
    }
    for (kind, seed) in [("random_walk", 3), ("random_walk", 4), ("hmc", 3), ("hmc", 4)] {
        assert_eq!(
            std::fs::read(cell(&killed, kind, seed).join("metrics.json")).unwrap(),
            std::fs::read(cell(&whole, kind, seed).join("metrics.json")).unwrap(),
            "{kind} seed {seed}"
        );
    }
    let png = std::fs::read(whole.join("fpr95.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // The table's near FPR95 mean and std of a row, against the cells' own metrics.json.
    let near_fpr95 = |kind: &str, seed: u64| -> f64 {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cell(&whole, kind, seed).join("metrics.json")).unwrap())
                .unwrap();
        let records = json["records"].as_array().unwrap();
        let record = records
            .iter()
            .find(|r| r["model"] == "hamos" && r["scorer"] == "knn" && r["dataset"] == "near_average")
            .unwrap();
        record["fpr95"].as_f64().unwrap()
    };
    let (a, b) = (near_fpr95("hmc", 3), near_fpr95("hmc", 4));
    let (mean, std) = ((a + b) / 2.0, (a - b).abs() / 2f64.sqrt());
    let table = csv_without_times(&whole, "table.csv");
    let column = |name: &str| table[0].iter().position(|h| h == name).unwrap();
    let hmc = table.iter().find(|row| row[0] == "hmc").unwrap();
    assert!((hmc[column("near_fpr95_mean")].parse::<f64>().unwrap() - mean).abs() < 1e-12);
    assert!((hmc[column("near_fpr95_std")].parse::<f64>().unwrap() - std).abs() < 1e-12);
    assert_eq!(hmc[column("seeds")], "2");
    let markdown = std::fs::read_to_string(whole.join("table.md")).unwrap();
    assert!(
        markdown.contains(&format!("| hmc | hamos | 2/2 | {:.2} ± {:.2} |", 100.0 * mean, 100.0 * std)),
        "{markdown}"
    );
}

#[test]
fn a_cell_with_a_bad_value_fails_alone_and_the_others_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, grid) = (tmp.path().join("cache"), write_grid(tmp.path()));
    let out = tmp.path().join("out");
    let output = ablate(&cache, &grid, &out)
        .args(["--seed-list", "3", "--vary", "sampler.step_size=0.05,-1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("error: data: 2 of 4 cells failed"), "{stderr}");
    for kind in ["random_walk", "hmc"] {
        let failed = format!("sampler.kind={kind}, sampler.step_size=-1, seed 3: FAILED: ");
        let line = stderr.lines().find(|l| l.contains(&failed)).unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.contains("sampler.step_size"), "the error does not name the field: {line}");
        let good =
            out.join("cells").join(format!("sampler.kind={kind},sampler.step_size=0.05")).join("seed-3");
        assert!(good.join("report.md").is_file(), "{stderr}");
    }
    assert!(stdout.contains("| random_walk | 0.05 | hamos | 1/1 |"), "{stdout}");
    assert!(stdout.contains("| hmc | -1 | hamos | 0/1 | - |"), "{stdout}");
    assert!(stdout.contains("Cells without results (2):"), "{stdout}");
}

#[test]
fn every_shipped_grid_resolves_to_valid_configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ablations");
    let mut grids = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        grids += 1;
        let grid = Grid::resolve(Some(GridFile::read(&path).unwrap()), GridArgs::default()).unwrap();
        assert!(grid.seeds.len() >= 3, "{}", path.display());
        for cell in grid.cells() {
            let setting = cell.setting.label();
            // The custom sampler is registered only in examples/custom-plugin's binary (its tests
            // resolve that grid with it).
            if setting.contains("midpoint_jitter") {
                continue;
            }
            let config = grid.config(&cell).unwrap_or_else(|e| panic!("{}: {setting}: {e}", path.display()));
            assert_eq!(config.seed, cell.seed);
            // Every row is the preset's schedule, comparable with the main job.
            assert_eq!(config.train.epochs, 3, "{}: {setting}", path.display());
            let text = config.to_toml().unwrap();
            for (key, value) in &cell.setting.0 {
                let field = key.rsplit('.').next().unwrap();
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{field} = ")) && l.contains(value.trim_matches('"'))),
                    "{}: {key} = {value} not in the config",
                    path.display()
                );
            }
        }
    }
    assert!(grids >= 10, "found {grids} grids in {}", dir.display());
}
