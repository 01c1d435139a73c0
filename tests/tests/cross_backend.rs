//! A tensor of one backend handed to another is a clear error, not a panic.
#![cfg(feature = "tch")]

use std::sync::Arc;

#[test]
fn mixing_candle_and_tch_tensors_is_an_error() {
    hamos_tch::set_threads(1);
    let candle: Arc<dyn hamos_api::Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
    let tch = hamos_api::open_backend("tch", "cpu").unwrap();
    hamos_conformance::cross_backend_mismatch(&candle, &tch).unwrap();
    hamos_conformance::cross_backend_mismatch(&tch, &candle).unwrap();
}
