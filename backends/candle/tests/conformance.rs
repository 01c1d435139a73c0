//! The shared backend conformance suite, run on candle.

mod cpu {
    hamos_conformance::conformance_suite!(|| std::sync::Arc::new(hamos_candle::CandleBackend::cpu()));
}

#[cfg(feature = "cuda")]
mod cuda {
    hamos_conformance::conformance_suite!(optional || hamos_api::open_backend("candle", "cuda:0"));
}
