//! The `hamos` command: [`hamos::cli::main`] with the workspace's plugins.

fn main() -> std::process::ExitCode {
    hamos::cli::main()
}
