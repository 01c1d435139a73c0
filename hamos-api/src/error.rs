//! The one error type of the contracts crate; other crates wrap it with `#[from]`.

use std::path::PathBuf;

/// Result alias used by every fallible operation in HamOS.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the contracts: tensor ops, backends, plugins and configs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes, dims or dtypes that an op cannot accept.
    #[error("{op}: {msg}")]
    Shape {
        /// The op that refused its input, e.g. `matmul`.
        op: &'static str,
        /// What was wrong, naming the shapes.
        msg: String,
    },
    /// Two tensors of different backends (or devices) met in one op.
    #[error("{op}: tensors live on different backends ({left} vs {right}); move both to one backend")]
    BackendMismatch {
        /// The op.
        op: &'static str,
        /// Backend and device of the left operand.
        left: String,
        /// Backend and device of the right operand.
        right: String,
    },
    /// The backend library itself failed.
    #[error("{backend} {op}: {source}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The op that failed.
        op: &'static str,
        /// The backend's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A backend or device was asked for that this build or machine does not have.
    #[error("backend `{name}` on device `{device}` is not available: {hint}")]
    BackendUnavailable {
        /// Backend name from the config.
        name: String,
        /// Device string from the config.
        device: String,
        /// What to do about it.
        hint: String,
    },
    /// A config value is present and well-typed but invalid.
    #[error("invalid config `{field}`: {msg}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `sampler.step_size`.
        field: String,
        /// Why it is invalid and what is allowed.
        msg: String,
    },
    /// A config could not be read or deserialized.
    #[error("config: {0}")]
    Config(String),
    /// A plugin name that is not registered.
    #[error("unknown {kind} plugin `{name}`; registered: {valid}")]
    UnknownPlugin {
        /// The plugin kind, e.g. `sampler`.
        kind: String,
        /// The requested name.
        name: String,
        /// Comma-separated registered names.
        valid: String,
    },
    /// Input data that cannot be used.
    #[error("data: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `reading config`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidConfig { field: field.into(), msg: msg.into() }
    }

    /// Wraps a backend library error, naming the op.
    pub fn backend(
        backend: &'static str,
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend { backend, op, source: Box::new(source) }
    }
}
