//! The runtime layer: model files as optimised tract plans ([`Model`], the two-stage
//! [`EarlyExitModel`]), raw pixels to model input ([`Preprocessor`]), the one sha256 check
//! ([`verify`]), and the kernels hiedge swaps in where tract is slow in the browser ([`kernels`]).
//! It reads the manifest schema and probability maths; it knows nothing of policies.

pub mod early_exit;
pub mod image;
pub mod kernels;
pub mod model;
pub mod preprocess;
pub mod reader;
pub mod split;
pub mod verify;

pub use early_exit::{EarlyExitModel, Features, Stage1, Stage2};
#[cfg(feature = "onnx")]
pub use model::onnx_to_nnef;
pub use model::{Model, ModelFormat, OpTime, Prediction};
pub use preprocess::Preprocessor;
pub use verify::{sha256_hex, verify};
