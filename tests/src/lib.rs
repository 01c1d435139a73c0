//! Workspace-level integration tests of HamOS; the tests live in `tests/`.
//!
//! This crate names `hamos` (which names every plugin crate and backend) and the example plugin
//! crate, so that their registrations are linked into every test binary that uses it.

use hamos as _;
use hamos_example_plugin as _;

/// Writes `contents` to `name` in a fresh temporary directory, returning both.
pub fn write_config(name: &str, contents: &str) -> std::io::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(name);
    std::fs::write(&path, contents)?;
    Ok((dir, path))
}
