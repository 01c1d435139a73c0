//! Embeds the libtorch library directory as an rpath, so that this crate's tests, examples and
//! binaries run without `LD_LIBRARY_PATH`, and hands the directory on to dependents.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");

    // torch-sys (`links = "tch"`) exports `cargo:libtorch_lib=<dir>` on Linux and macOS; fall
    // back to `$LIBTORCH/lib` elsewhere.
    let lib_dir = env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| env::var_os("LIBTORCH").map(|dir| PathBuf::from(dir).join("lib")));

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = target_os != "windows" && target_os != "macos" && target_os != "ios";

    if let Some(dir) = &lib_dir {
        let dir = dir.display();
        if target_os != "windows" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
        // Read by dependents' build scripts as DEP_HAMOS_TCH_LIBTORCH_LIB.
        println!("cargo:libtorch_lib={dir}");
    }

    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        if elf {
            // rustc links with --as-needed, which drops libtorch (and with it libtorch_cuda)
            // because no symbol of it is referenced directly; CUDA devices then vanish.
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
        println!("cargo:cuda=1");
    }
}
