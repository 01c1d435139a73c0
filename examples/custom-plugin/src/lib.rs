//! An example plugin crate: a sampler registered outside the HamOS workspace crates.
