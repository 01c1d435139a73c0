//! # hamos-nn: networks written once against the shared tensor trait
//!
//! Layers ([`layers`]: [`Linear`](layers::Linear), [`Conv2d`](layers::Conv2d),
//! [`BatchNorm2d`](layers::BatchNorm2d)), the backbones as [`hamos_api::Backbone`] plugins
//! (`mlp`, `small_cnn`, `resnet18_cifar`), the paper's [`DualHeadNet`], cross-entropy, SGD with
//! PyTorch's update rule and cosine annealing ([`optim`]), and safetensors checkpoints under
//! PyTorch names ([`checkpoint`]). Nothing here is written per backend: every layer runs on
//! candle and tch alike.
//!
//! Parameters live in a [`hamos_api::ParamStore`]; a layer knows only its names and reads its
//! tensors through a [`hamos_api::Forward`] pass (training or evaluation).
//!
//! ```
//! use std::sync::Arc;
//! use hamos_api::{rng_from_seed, Backend, Forward};
//! use hamos_nn::{backbones::SmallCnn, optim::{Sgd, SgdConfig}, Classifier};
//! # fn main() -> hamos_api::Result<()> {
//! let backend: Arc<dyn Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
//! let mut rng = rng_from_seed(0);
//! let net = Classifier::new(Arc::new(SmallCnn::default()), 10, "")?;
//! let mut params = net.init_store(backend.clone(), &mut rng)?;
//! let images = backend.randn(&[4, 1, 28, 28], 0.0, 1.0, &mut rng)?;
//! let labels = backend.from_i64(&[0, 1, 2, 3], &[4])?;
//! let mut sgd = Sgd::new(SgdConfig::default())?;
//! let loss = hamos_nn::cross_entropy_step(&net, &mut params, &mut sgd, &images, &labels, 0.01)?;
//! assert!(loss.is_finite());
//! let logits = net.logits(&Forward::eval(&params), &images)?;
//! assert_eq!(logits.dims(), vec![4, 10]);
//! # Ok(()) }
//! ```

pub mod backbones;
pub mod checkpoint;
pub mod init;
pub mod layers;
pub mod loss;
pub mod network;
pub mod optim;
pub mod step;

pub use loss::cross_entropy;
pub use network::{clone_backbone, Classifier, DualHeadNet, DualHeadOutput};
pub use step::cross_entropy_step;
