//! The conformance suite on the candle backend (CPU).

hamos_conformance::conformance_suite!(|| std::sync::Arc::new(hamos_candle::CandleBackend::cpu()));
