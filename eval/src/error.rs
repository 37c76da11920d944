use thiserror::Error;

/// Every error hiedge-eval can return.
#[derive(Debug, Error)]
pub enum Error {
    /// A data file (IDX, fixture) or a set of samples is malformed.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// `hiedge import` cannot write a manifest for these files and options.
    #[error("{0}")]
    Import(String),
    /// A fit (temperature, logistic regression) could not be done on these samples.
    #[error("fit failed: {0}")]
    Fit(String),
    /// The runtime failed (a model, a policy, a manifest).
    #[error(transparent)]
    Core(#[from] hiedge_core::Error),
    /// A file could not be read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with hiedge-eval's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
