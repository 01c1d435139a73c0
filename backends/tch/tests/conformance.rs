//! The conformance suite on the tch backend: CPU always, CUDA when this build and machine have it.

/// libtorch's OpenMP pool spin-waits; test threads already run in parallel, so one thread each.
fn cpu() -> std::sync::Arc<dyn hamos_api::Backend> {
    hamos_tch::set_threads(1);
    std::sync::Arc::new(hamos_tch::TchBackend::cpu())
}

hamos_conformance::conformance_suite!(cpu);

mod cuda {
    //! The suite on `cuda:0`; skipped unless built with `--features cuda` on a machine with a GPU.

    hamos_conformance::conformance_suite!(optional || hamos_api::open_backend("tch", "cuda:0"));
}

/// Ops mixing tch and candle tensors give `Error::BackendMismatch`, in both orders.
#[test]
fn cross_backend_mismatch_with_candle() {
    let tch = cpu();
    let candle: std::sync::Arc<dyn hamos_api::Backend> =
        std::sync::Arc::new(hamos_candle::CandleBackend::cpu());
    hamos_conformance::cross_backend_mismatch(&tch, &candle).unwrap();
    hamos_conformance::cross_backend_mismatch(&candle, &tch).unwrap();
}
