//! The crate's own `hamos` binary (`hamos::cli::main` with this crate linked) selects the custom
//! sampler by name: it is listed, configured from the preset, and a run on a slice of the
//! shipped data synthesizes outliers with it, fine-tunes and evaluates.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::process::Command;

/// A run on a slice of the shipped data: a small MLP, one epoch each.
const SMALL: [&str; 8] = hamos::config::SMOKE_OVERRIDES;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hamos-with-midpoint-jitter"))
}

#[test]
fn the_crates_binary_lists_and_configures_the_custom_sampler() {
    let listing = binary().arg("plugins").output().unwrap();
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains("midpoint_jitter"));
    let config = binary().args(["config", "--set", "sampler.kind=midpoint_jitter"]).output().unwrap();
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(config.status.success(), "{}", String::from_utf8_lossy(&config.stderr));
    assert!(text.contains("kind = \"midpoint_jitter\"") && !text.contains("leapfrog_steps"), "{text}");
}

#[test]
fn a_run_trains_and_evaluates_with_the_custom_sampler() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut cmd = binary();
    cmd.env("HAMOS_CACHE_DIR", tmp.path().join("cache")).arg("run").arg("--out").arg(&out);
    cmd.args(["--set", "sampler.kind=midpoint_jitter"]);
    for set in SMALL {
        cmd.arg("--set").arg(set);
    }
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("kind = \"midpoint_jitter\""), "{config}");
    // Every fine-tuning step of the HamOS model synthesized outliers with the custom sampler.
    let diagnostics = std::fs::read_to_string(out.join("diagnostics.jsonl")).unwrap();
    let hamos_steps: Vec<serde_json::Value> = diagnostics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["model"] == "hamos")
        .collect();
    assert!(!hamos_steps.is_empty());
    assert!(hamos_steps.iter().all(|v| v["outliers"].as_u64().unwrap() > 0), "{diagnostics}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let records = metrics["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["model"] == "hamos" && r["dataset"] == "near_average"));
}

#[test]
fn an_ablation_through_the_crates_binary_has_the_custom_sampler_as_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ablation");
    let mut cmd = binary();
    cmd.env("HAMOS_CACHE_DIR", tmp.path().join("cache")).arg("ablate").arg("--out").arg(&out);
    cmd.args(["--vary", "sampler.kind=hmc,midpoint_jitter", "--seed-list", "3"]);
    for set in SMALL {
        cmd.arg("--set").arg(set);
    }
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for row in ["| hmc | hamos | 1/1 |", "| midpoint_jitter | hamos | 1/1 |"] {
        assert!(stdout.contains(row), "{row} missing:\n{stdout}");
    }
    let table = std::fs::read_to_string(out.join("table.csv")).unwrap();
    let row = table.lines().find(|l| l.starts_with("midpoint_jitter,")).unwrap();
    // The custom sampler's row has its synthesis diagnostics (acceptance in [0, 1]).
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let values: Vec<&str> = row.split(',').collect();
    let acceptance: f64 =
        values[header.iter().position(|h| *h == "acceptance_mean").unwrap()].parse().unwrap();
    assert!((0.0..=1.0).contains(&acceptance), "{row}");
}

#[test]
fn the_table_9_grid_resolves_with_the_custom_sampler_registered() {
    use hamos::ablate::{Grid, GridArgs, GridFile};
    use hamos_example_plugin as _;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ablations/table9-samplers.toml");
    let grid = Grid::resolve(Some(GridFile::read(&path).unwrap()), GridArgs::default()).unwrap();
    let kinds: Vec<String> = grid.settings().iter().map(|s| s.0[0].1.clone()).collect();
    assert_eq!(kinds, ["random_walk", "hmc", "mala", "mmala", "rmhmc", "midpoint_jitter"]);
    for cell in grid.cells() {
        let config = grid.config(&cell).unwrap_or_else(|e| panic!("{}: {e}", cell.label()));
        assert_eq!(config.sampler.typetag_name(), cell.setting.0[0].1);
        assert_eq!(config.train.epochs, 3);
    }
}
