use std::fmt::{self, Debug};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An inference-time OOD score (Section 3.4): fitted on ID training data, then scores test
/// inputs. Higher means more in-distribution.
///
/// [`consumes`](Scorer::consumes) and [`fitted`](Scorer::fitted) describe what the caller must
/// compute for it (e.g. whether penultimate features and the classification layer are needed);
/// a scorer given a [`ScoreInput`] without something it consumes returns an error naming itself
/// and the missing input (see [`ScoreInput::require`]).
#[typetag::serde(tag = "kind")]
pub trait Scorer: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The parts of a [`ScoreInput`] this scorer reads, at fitting and scoring time. The
    /// default is the one field every input carries, [`Consumes::Embeddings`].
    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Embeddings]
    }

    /// Whether [`fit`](Scorer::fit) uses the ID training data. `false` means `fit` ignores its
    /// argument, so a caller may skip computing the training pass; the default `true` is the
    /// safe answer for plugins that do not say.
    fn fitted(&self) -> bool {
        true
    }

    /// Fits on ID training data.
    fn fit(&self, train: &ScoreInput) -> Result<Box<dyn FittedScorer>>;
}

/// A scorer after [`Scorer::fit`].
pub trait FittedScorer: Send {
    /// ID-ness scores `[m]` (higher = more ID).
    fn score(&self, input: &ScoreInput) -> Result<Tensor>;
}

/// One part of a [`ScoreInput`] that a scorer may consume ([`Scorer::consumes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Consumes {
    /// Classifier logits, [`ScoreInput::logits`].
    Logits,
    /// Penultimate backbone features, [`ScoreInput::features`].
    Features,
    /// Unit-norm projected embeddings, [`ScoreInput::embeddings`] (always present).
    Embeddings,
    /// The classification layer, [`ScoreInput::head`].
    Head,
    /// The input images and the model as a differentiable function of them
    /// ([`ScoreInput::inputs`]), for input-perturbation scorers such as ODIN.
    InputGradients,
}

impl fmt::Display for Consumes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Consumes::Logits => "classifier logits (ScoreInput.logits)",
            Consumes::Features => "penultimate backbone features (ScoreInput.features)",
            Consumes::Embeddings => "embeddings (ScoreInput.embeddings)",
            Consumes::Head => "the classification layer (ScoreInput.head)",
            Consumes::InputGradients => "the input images and the model (ScoreInput.inputs)",
        })
    }
}

/// The classification layer `logits = features W^T + b`, for scorers that reshape the
/// penultimate activations and recompute the logits (ASH, SCALE).
#[derive(Debug, Clone)]
pub struct LinearHead {
    /// Weight `[c, w]`.
    pub weight: Tensor,
    /// Bias `[c]`.
    pub bias: Tensor,
}

impl LinearHead {
    /// `features W^T + b` for `features` `[m, w]`, shape `[m, c]`.
    pub fn apply(&self, features: &Tensor) -> Result<Tensor> {
        self.check()?;
        features.matmul(&self.weight.t()?)?.add(&self.bias)
    }

    /// `(c, w)`, or an error naming the shapes when weight and bias do not form a layer.
    pub fn check(&self) -> Result<(usize, usize)> {
        match (&self.weight.dims()[..], &self.bias.dims()[..]) {
            ([c, w], [cb]) if c == cb && *w > 0 => Ok((*c, *w)),
            (w, b) => Err(Error::shape(
                "linear head",
                format!("weight must be [c, w] and bias [c], got weight {w:?} and bias {b:?}"),
            )),
        }
    }
}

/// What a scorer sees of a batch.
#[derive(Debug, Clone)]
pub struct ScoreInput {
    /// Unit-norm embeddings `[m, d]`.
    pub embeddings: Tensor,
    /// Classifier logits `[m, c]`, when the model has a classification head.
    pub logits: Option<Tensor>,
    /// Labels `[m]` (`I64`), known for training data only.
    pub labels: Option<Tensor>,
    /// Penultimate backbone features `[m, w]` (before the projection head and the classifier).
    pub features: Option<Tensor>,
    /// The classification layer mapping `features` to `logits`.
    pub head: Option<LinearHead>,
    /// The images behind these rows and the model, for scorers that differentiate through it.
    pub inputs: Option<ModelInputs>,
}

/// The model under evaluation as a function of its input images, in evaluation mode and with
/// autograd history back to the images, for scorers that perturb inputs (ODIN).
pub trait InputModel: Debug {
    /// Logits `[m, c]` of images `[m, channels, height, width]` given in pixel units (`[0, 1]`,
    /// before the dataset's normalization, which the model applies itself; a perturbation of
    /// `epsilon` is then `epsilon` in pixel units, as in the ODIN paper).
    fn logits(&self, images: &Tensor) -> Result<Tensor>;
}

/// Input images `[m, channels, height, width]` in pixel units and the model that maps them to
/// the logits of the [`ScoreInput`] they come with.
#[derive(Debug, Clone)]
pub struct ModelInputs {
    /// The images, in `[0, 1]`.
    pub images: Tensor,
    /// The model.
    pub model: Rc<dyn InputModel>,
}

impl ScoreInput {
    /// An input carrying only `embeddings`; set the other fields as the scorer needs.
    pub fn from_embeddings(embeddings: Tensor) -> Self {
        ScoreInput { embeddings, logits: None, labels: None, features: None, head: None, inputs: None }
    }

    /// Errors with a message naming `scorer` and the first part of `consumes` this input
    /// lacks; checks presence only (each scorer checks shapes).
    pub fn require(&self, scorer: &str, consumes: &[Consumes]) -> Result<()> {
        for &part in consumes {
            let present = match part {
                Consumes::Logits => self.logits.is_some(),
                Consumes::Features => self.features.is_some(),
                Consumes::Embeddings => true,
                Consumes::Head => self.head.is_some(),
                Consumes::InputGradients => self.inputs.is_some(),
            };
            if !present {
                let all = match consumes {
                    [_] => String::new(),
                    _ => format!(
                        " (it consumes {})",
                        consumes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                };
                return Err(Error::Data(format!(
                    "the `{scorer}` scorer needs {part}, but the score input has none{all}"
                )));
            }
        }
        Ok(())
    }
}
