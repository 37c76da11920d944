use thiserror::Error;

/// Every error hiedge-core can return. Messages are full sentences meant to be shown to a user.
#[derive(Debug, Error)]
pub enum Error {
    /// The manifest is not valid JSON or does not have the expected structure.
    #[error("manifest is not valid JSON for a hiedge manifest: {0}")]
    ManifestParse(#[from] serde_json::Error),
    /// The manifest parsed but one of its fields is wrong.
    #[error("manifest field `{field}` is invalid: {reason}")]
    ManifestInvalid {
        /// Dotted path of the offending field, e.g. `input.normalize.std`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest has no model with that name.
    #[error("manifest has no model named `{name}` (it has: {available})")]
    UnknownModel {
        /// Requested name.
        name: String,
        /// Comma-separated names the manifest does have.
        available: String,
    },
    /// The model bytes do not hash to the manifest's sha256.
    #[error("model `{name}` does not match the manifest: sha256 is {actual}, manifest says {expected}")]
    ModelHashMismatch {
        /// Model name.
        name: String,
        /// sha256 from the manifest.
        expected: String,
        /// sha256 of the bytes given.
        actual: String,
    },
    /// tract could not load, optimise or run the model.
    #[error("model error: {0}")]
    Model(String),
    /// An input of the wrong length was given.
    #[error("input has {actual} values but the model expects {expected}")]
    InputLength {
        /// Expected number of values.
        expected: usize,
        /// Number of values given.
        actual: usize,
    },
    /// A probability vector given to a decision policy is unusable.
    #[error("invalid probabilities: {0}")]
    InvalidProbabilities(String),
    /// A decision policy was configured with parameters it cannot use.
    #[error("invalid policy configuration: {0}")]
    InvalidPolicy(String),
    /// A data file (IDX, fixture) is malformed.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A file could not be read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<tract_onnx::prelude::TractError> for Error {
    fn from(e: tract_onnx::prelude::TractError) -> Self {
        Error::Model(format!("{e:#}"))
    }
}

/// `Result` with hiedge-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
