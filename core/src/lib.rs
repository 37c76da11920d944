//! # hiedge-core
//!
//! Everything hiedge knows about Hierarchical Inference (HI), in pure Rust that builds both natively
//! and for `wasm32-unknown-unknown`:
//!
//! * [`Manifest`]: the description of a model set (input shape, normalisation, classes, model files
//!   with their sha256, measured accuracy, calibrated decision-module parameters), parsed and validated.
//! * [`Model`]: an ONNX model turned into an optimised tract plan once, then run many times.
//! * [`Preprocessor`]: raw `u8` pixels to the model's `f32` input, as the manifest says.
//! * [`policy`]: the decision module that keeps the local answer or offloads the sample
//!   ([`DecisionPolicy`], configured by [`PolicyConfig`]).
//! * [`session`]: one client's HI loop (local step, offload outcome, result, running stats) and
//!   [`server`]: the Worker's access rules and lazily-loaded model, both around [`protocol`].
//! * [`early_exit`]: a two-stage early-exit local model (exit head after the first block), for EE-HI.
//! * [`Metrics`], [`sweep`] and [`calibrate`]: HI accuracy, offload fraction and cost, trade-off
//!   sweeps, and fitting the decision module on the calibration set.
//!
//! ```no_run
//! use hiedge_core::{Manifest, Model, PolicyConfig};
//!
//! # fn main() -> Result<(), hiedge_core::Error> {
//! let manifest = Manifest::from_json(&std::fs::read_to_string("models/fashion-mnist/manifest.json")?)?;
//! let tiny = Model::load(&manifest, "tiny", &std::fs::read("models/fashion-mnist/tiny.onnx")?)?;
//! let mut policy = PolicyConfig::calibrated(&manifest)?.build()?;
//!
//! let pixels = [0u8; 784];
//! let prediction = tiny.predict(&pixels, manifest.temperature())?;
//! let decision = policy.decide(&prediction.probs)?;
//! println!("label {} offload {}", prediction.label, decision.is_offload());
//! # Ok(())
//! # }
//! ```

pub mod calibrate;
pub mod dataset;
pub mod early_exit;
mod error;
pub mod fixture;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod preprocess;
pub mod protocol;
pub mod server;
pub mod session;
pub mod sweep;

pub use error::{Error, Result};
pub use manifest::Manifest;
pub use metrics::Metrics;
pub use model::{Model, Prediction};
pub use policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig};
pub use preprocess::Preprocessor;
