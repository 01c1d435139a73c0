//! Networks around a backbone: [`Classifier`] (backbone + `fc`) and [`DualHeadNet`], the
//! paper's network (Section 3.3) with the HamOS authors' `HamOSNet` names: the classifier under
//! `backbone.*` (`backbone.fc.*` is the classification head), the projection head
//! `head.0` (`Linear(w, w)`), ReLU, `head.2` (`Linear(w, d)`), then L2 normalization, and the
//! class prototypes as buffer `prototypes` `[classes, d]`.

use std::sync::Arc;

use hamos_api::{join_name, Backbone, Error, Forward, Module, ParamStore, Result, Tensor};
use rand::RngCore;

use crate::layers::Linear;

/// A copy of a backbone config (through its serde form, since plugins are trait objects).
pub fn clone_backbone(backbone: &dyn Backbone) -> Result<Arc<dyn Backbone>> {
    let value = toml::Value::try_from(backbone).map_err(|e| Error::Config(format!("model: {e}")))?;
    let copy: Box<dyn Backbone> = value.try_into().map_err(|e| Error::Config(format!("model: {e}")))?;
    Ok(Arc::from(copy))
}

/// A backbone followed by the linear classification head `fc`. With prefix `""` its parameter
/// names are the backbone's own PyTorch names plus `fc.weight`, `fc.bias`.
#[derive(Debug, Clone)]
pub struct Classifier {
    backbone: Arc<dyn Backbone>,
    net: Arc<dyn Module>,
    fc: Linear,
    classes: usize,
}

impl Classifier {
    /// `backbone` with a `classes`-way head, parameters under `prefix`.
    pub fn new(backbone: Arc<dyn Backbone>, classes: usize, prefix: &str) -> Result<Self> {
        backbone.validate()?;
        if classes < 2 {
            return Err(Error::invalid(
                "classes",
                format!("a classifier needs at least 2 classes, got {classes}"),
            ));
        }
        let fc = Linear::new(&join_name(prefix, "fc"), backbone.feature_dim(), classes, true);
        let net = Arc::from(backbone.build(prefix)?);
        Ok(Classifier { backbone, net, fc, classes })
    }

    /// The backbone's config.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Registers the backbone's parameters, then `fc`'s (PyTorch's module order).
    pub fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        self.net.init(params, rng)?;
        self.fc.init(params, rng)
    }

    /// A fresh store on `backend` holding this network's initial parameters.
    pub fn init_store(
        &self,
        backend: Arc<dyn hamos_api::Backend>,
        rng: &mut dyn RngCore,
    ) -> Result<ParamStore> {
        ParamStore::build(backend, |params| self.init(params, rng))
    }

    /// Penultimate features `[n, w]`.
    pub fn features(&self, pass: &Forward, images: &Tensor) -> Result<Tensor> {
        self.net.forward(pass, images)
    }

    /// Class logits of features `[n, w]`.
    pub fn head(&self, pass: &Forward, features: &Tensor) -> Result<Tensor> {
        self.fc.forward(pass, features)
    }

    /// Class logits `[n, classes]` of images.
    pub fn logits(&self, pass: &Forward, images: &Tensor) -> Result<Tensor> {
        self.head(pass, &self.features(pass, images)?)
    }
}

/// What one forward pass of a [`DualHeadNet`] gives.
#[derive(Debug, Clone)]
pub struct DualHeadOutput {
    /// Penultimate backbone features `[n, w]`.
    pub features: Tensor,
    /// Class logits `[n, classes]`.
    pub logits: Tensor,
    /// Unit-norm projected embeddings `[n, d]`.
    pub embeddings: Tensor,
}

/// The dual-head network of HamOS (names as the authors' `HamOSNet`).
#[derive(Debug, Clone)]
pub struct DualHeadNet {
    classifier: Classifier,
    head0: Linear,
    head2: Linear,
    embedding_dim: usize,
}

impl DualHeadNet {
    /// Name of the class-prototype buffer.
    pub const PROTOTYPES: &'static str = "prototypes";

    /// `backbone` with a `classes`-way classifier and a projection onto the unit sphere of
    /// dimension `embedding_dim`.
    pub fn new(backbone: Arc<dyn Backbone>, classes: usize, embedding_dim: usize) -> Result<Self> {
        if embedding_dim == 0 {
            return Err(Error::invalid("train.feature_dim", "must be at least 1"));
        }
        let width = backbone.feature_dim();
        let classifier = Classifier::new(backbone, classes, "backbone")?;
        Ok(DualHeadNet {
            classifier,
            head0: Linear::new("head.0", width, width, true),
            head2: Linear::new("head.2", width, embedding_dim, true),
            embedding_dim,
        })
    }

    /// The classifier part (`backbone.*`).
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Dimension of the embeddings.
    pub fn embedding_dim(&self) -> usize {
        self.embedding_dim
    }

    /// Registers every parameter; the prototypes start at zero (the trainer sets them from
    /// class means of the training data).
    pub fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        self.classifier.init(params, rng)?;
        self.head0.init(params, rng)?;
        self.head2.init(params, rng)?;
        let zeros = params.backend().zeros(&[self.classifier.classes(), self.embedding_dim])?;
        params.add_buffer(Self::PROTOTYPES, &zeros)
    }

    /// A fresh store on `backend` holding this network's initial parameters.
    pub fn init_store(
        &self,
        backend: Arc<dyn hamos_api::Backend>,
        rng: &mut dyn RngCore,
    ) -> Result<ParamStore> {
        ParamStore::build(backend, |params| self.init(params, rng))
    }

    /// Unit-norm embeddings `[n, d]` of features `[n, w]`.
    pub fn project(&self, pass: &Forward, features: &Tensor) -> Result<Tensor> {
        let hidden = self.head0.forward(pass, features)?.relu()?;
        self.head2.forward(pass, &hidden)?.l2_normalize(1)
    }

    /// Features, logits and embeddings of images.
    pub fn forward(&self, pass: &Forward, images: &Tensor) -> Result<DualHeadOutput> {
        let features = self.classifier.features(pass, images)?;
        let logits = self.classifier.head(pass, &features)?;
        let embeddings = self.project(pass, &features)?;
        Ok(DualHeadOutput { features, logits, embeddings })
    }
}
