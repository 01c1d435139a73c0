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

/// A run small enough for a test: an MLP on 352 images, one epoch each, a small buffer.
pub const SMALL: [&str; 9] = [
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
