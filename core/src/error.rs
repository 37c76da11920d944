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
    /// The model does not fit the manifest's contract (output count, shapes, stage outputs).
    #[error("model error: {0}")]
    Model(String),
    /// tract could not parse, optimise or run the model (the tract error is kept as the source).
    #[error("model error: {0:#}")]
    #[cfg(feature = "runtime")]
    Tract(#[from] tract_nnef::prelude::TractError),
    /// A model file this build cannot read, or an ONNX graph that cannot be compiled to NNEF.
    #[error("unsupported model file: {0}")]
    UnsupportedModelFormat(String),
    /// An input of the wrong length was given.
    #[error("input has {actual} values but the model expects {expected}")]
    InputLength {
        /// Expected number of values.
        expected: usize,
        /// Number of values given.
        actual: usize,
    },
    /// An image given for conversion to the model's input is unusable (size, bytes, colour).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A probability vector given to a decision policy is unusable.
    #[error("invalid probabilities: {0}")]
    InvalidProbabilities(String),
    /// A decision policy was configured with parameters it cannot use.
    #[error("invalid policy configuration: {0}")]
    InvalidPolicy(String),
    /// A monitor's configuration or one of its observations is unusable.
    #[error("monitor: {0}")]
    Monitor(String),

    /// Settings that cannot work (a circuit breaker, a rollout); the message names the setting.
    #[error("{0}")]
    InvalidSettings(String),
    /// `only_remote`: the Worker could not answer and the mode forbids a device answer.
    #[error("the Worker could not answer and the mode is only_remote: {0}")]
    RemoteUnavailable(String),
    /// A file could not be read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The variant's name (`"ManifestInvalid"`, `"InputLength"`, ...): a stable code callers can
    /// branch on (the JavaScript client puts it in `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::ManifestParse(_) => "ManifestParse",
            Error::ManifestInvalid { .. } => "ManifestInvalid",
            Error::UnknownModel { .. } => "UnknownModel",
            Error::ModelHashMismatch { .. } => "ModelHashMismatch",
            Error::Model(_) => "Model",
            #[cfg(feature = "runtime")]
            Error::Tract(_) => "Tract",
            Error::UnsupportedModelFormat(_) => "UnsupportedModelFormat",
            Error::InputLength { .. } => "InputLength",
            Error::InvalidImage(_) => "InvalidImage",
            Error::InvalidProbabilities(_) => "InvalidProbabilities",
            Error::InvalidPolicy(_) => "InvalidPolicy",
            Error::Monitor(_) => "Monitor",
            Error::InvalidSettings(_) => "InvalidOptions",
            Error::RemoteUnavailable(_) => "RemoteUnavailable",
            Error::Io(_) => "Io",
        }
    }
}

/// `Result` with hiedge-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tract_errors_keep_their_source_and_every_variant_has_a_code() {
        let tract = tract_nnef::prelude::TractError::msg("inner cause");
        let e = Error::from(tract);
        assert_eq!(e.code(), "Tract");
        let source = std::error::Error::source(&e).expect("the tract error is the source");
        assert!(source.to_string().contains("inner cause"), "{source}");
        assert!(e.to_string().contains("inner cause"), "{e}");
        let io = Error::from(std::io::Error::other("disk"));
        assert_eq!((io.code(), std::error::Error::source(&io).is_some()), ("Io", true));
        assert_eq!(Error::InputLength { expected: 2, actual: 1 }.code(), "InputLength");
        let settings = Error::InvalidSettings("breaker: needs failures >= 1".into());
        assert_eq!(
            (settings.code(), settings.to_string().as_str()),
            ("InvalidOptions", "breaker: needs failures >= 1")
        );
    }
}
