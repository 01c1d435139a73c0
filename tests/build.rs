//! With the `tch` feature, embeds the libtorch directory (from hamos-tch) as an rpath so the
//! `hamos` binary and tests run without `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_HAMOS_TCH_LIBTORCH_LIB");
    if let Some(dir) = std::env::var_os("DEP_HAMOS_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", std::path::Path::new(&dir).display());
    }
}
