//! The runtime layer: model files as optimised tract plans ([`Model`], the two-stage
//! [`EarlyExitModel`]), raw pixels to model input ([`Preprocessor`]), the one sha256 check
//! ([`verify`]), and the kernels hiedge swaps in where tract is slow in the browser ([`kernels`]).
//! It reads the manifest schema and probability maths; it knows nothing of policies.

#[cfg(feature = "decode")]
pub mod decode;
#[cfg(feature = "runtime")]
pub mod early_exit;
pub mod image;
#[cfg(feature = "runtime")]
pub use hiedge_kernels as kernels;
#[cfg(feature = "runtime")]
pub mod model;
#[cfg(feature = "runtime")]
pub mod preprocess;
#[cfg(feature = "runtime")]
pub mod reader;
#[cfg(feature = "runtime")]
pub mod split;
#[cfg(feature = "runtime")]
pub mod stored_weights;
pub mod verify;

#[cfg(feature = "runtime")]
pub use early_exit::{EarlyExitModel, Features, Stage1, Stage2};
#[cfg(feature = "onnx")]
pub use model::{onnx_to_nnef, onnx_to_nnef_stored};
#[cfg(feature = "runtime")]
pub use model::{Model, ModelFormat, OpTime, Prediction};
#[cfg(feature = "runtime")]
pub use preprocess::Preprocessor;
pub use verify::{join_parts, sha256_hex, verify, PartsJoiner};
