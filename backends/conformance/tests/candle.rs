//! The conformance suite on the candle backend: on the CPU always, and with
//! `cargo test -p hamos-conformance --features cuda` also on `cuda:0` (skipped, with a note on
//! stderr, where the GPU cannot be opened).

mod cpu {
    hamos_conformance::conformance_suite!(|| std::sync::Arc::new(
        hamos_candle::CandleBackend::cpu()
    ));
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;

    use hamos_api::{Backend, DeviceSpec};
    use hamos_candle::CandleBackend;

    fn open_cuda() -> hamos_api::Result<Arc<dyn Backend>> {
        Ok(Arc::new(CandleBackend::new(DeviceSpec::Cuda(0))?))
    }

    hamos_conformance::conformance_suite!(optional open_cuda);
}
