//! When the workspace is built with tch (feature unification gives `hamos` its `tch` feature),
//! this crate's binary links libtorch without depending on hamos-tch itself, so it gets no
//! `DEP_HAMOS_TCH_LIBTORCH_LIB`; the `LIBTORCH` directory that `scripts/test.sh` exports is
//! embedded as an rpath instead, so the binary runs without `LD_LIBRARY_PATH`. Harmless without tch.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&dir).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
