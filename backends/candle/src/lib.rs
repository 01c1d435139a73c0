//! # hamos-candle: the candle backend of HamOS
//!
//! Pure Rust, CPU by default, CUDA with the `cuda` feature. Implements the shared tensor trait
//! of [`hamos_api`] and registers itself as backend `candle`.
//!
//! ```
//! use hamos_api::Backend;
//! let backend = hamos_candle::CandleBackend::cpu();
//! let x = backend.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! assert_eq!(x.sum(1, false)?.to_vec_f32()?, vec![3.0, 7.0]);
//! # Ok::<(), hamos_api::Error>(())
//! ```

mod backend;
mod fused;
mod tensor;

pub use backend::CandleBackend;
pub use tensor::CandleTensor;

inventory::submit! {
    hamos_api::BackendRegistration {
        name: "candle",
        description: "candle 0.11, pure Rust; cpu, or cuda:N with the `cuda` feature",
        open: backend::open,
    }
}
