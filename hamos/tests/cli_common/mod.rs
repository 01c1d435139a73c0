//! Shared by the command-line tests: the `hamos` binary with its own pretraining cache, and
//! the overrides of a small run.
#![allow(dead_code)] // each test binary uses some of them

use std::path::Path;
use std::process::Command;

/// The `hamos` binary, caching pretrained classifiers in `cache`, on two threads.
pub fn hamos(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hamos"));
    cmd.env("HAMOS_CACHE_DIR", cache).env("RAYON_NUM_THREADS", "2");
    cmd
}

/// A run small enough for a test ([`hamos::config::SMOKE_OVERRIDES`]) at seed 3.
pub fn small() -> Vec<&'static str> {
    hamos::config::SMOKE_OVERRIDES.iter().copied().chain(["seed=3"]).collect()
}
