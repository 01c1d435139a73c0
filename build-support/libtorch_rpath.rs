//! Build script shared by the packages whose binaries or tests link libtorch (`hamos`,
//! `hamos-samplers`, `hamos-integration-tests`): when their tch feature pulls in hamos-tch, it
//! embeds the libtorch directory (handed over as `DEP_HAMOS_TCH_LIBTORCH_LIB`) as an rpath, so
//! they run without `LD_LIBRARY_PATH`. Without tch it does nothing.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_HAMOS_TCH_LIBTORCH_LIB");
    if let Some(dir) = std::env::var_os("DEP_HAMOS_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", std::path::Path::new(&dir).display());
    }
}
