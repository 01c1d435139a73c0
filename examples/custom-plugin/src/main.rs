//! The `hamos` command line with this crate's sampler (`midpoint_jitter`) registered: a plugin
//! crate's binary is these lines.

use hamos_example_plugin as _;

fn main() -> std::process::ExitCode {
    hamos::cli::main()
}
