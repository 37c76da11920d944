//! # hiedge-core
//!
//! Everything hiedge does at run time for Hierarchical Inference (HI), in pure Rust that builds
//! both natively and for `wasm32-unknown-unknown`, without I/O (clocks are passed in).
//!
//! The crate is in one-way layers; a module imports only modules listed before it (checked by
//! `tests/layers.rs`):
//!
//! 1. [`error`]: the [`Error`] enum.
//! 2. [`prob`]: probability maths (softmax, argmax, top-2, validation).
//! 3. [`manifest`] and [`protocol`]: the plain data of a model set and of the wire protocol.
//! 4. [`policy`]: the decision modules ([`DecisionPolicy`], configured by [`PolicyConfig`]) and the
//!    split-inference planner ([`policy::planner`]).
//! 5. [`runtime`]: model files (NNEF; ONNX with the `onnx` feature) as tract plans ([`Model`], [`runtime::EarlyExitModel`], the split
//!    model's halves and feature quantisation in [`runtime::split`]), [`Preprocessor`], and the one
//!    sha256 check ([`runtime::verify`]).
//! 6. [`session`] (one client's HI loop), [`stream`] (split inference on a stream) and [`server`]
//!    (the Worker's access rules, model sets and models).
//!
//! Offline work (sweeps, calibration, metrics, datasets, fixtures) is in the `hiedge-eval` crate,
//! which the browser and Worker builds never link.
//!
//! ```no_run
//! use hiedge_core::prelude::*;
//!
//! # fn main() -> hiedge_core::Result<()> {
//! let manifest = Manifest::from_json(&std::fs::read_to_string("models/fashion-mnist/manifest.json")?)?;
//! let tiny = Model::load(&manifest, "tiny", &std::fs::read("models/fashion-mnist/tiny.nnef.tar")?)?;
//! let mut policy = PolicyConfig::calibrated(&manifest)?.build()?;
//!
//! let pixels = vec![0u8; manifest.input_len()];
//! let prediction = tiny.predict(&pixels, manifest.temperature())?;
//! let decision = policy.decide(&prediction.probs)?;
//! println!("label {} offload {}", prediction.label, decision.is_offload());
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod manifest;
pub mod monitor;
pub mod policy;
pub mod prob;
pub mod protocol;
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod server;
pub mod session;
#[cfg(feature = "runtime")]
pub mod stream;

pub use error::{Error, Result};
pub use manifest::Manifest;
pub use policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig};
#[cfg(feature = "runtime")]
pub use runtime::{Model, Prediction, Preprocessor};

/// The types most callers need, for `use hiedge_core::prelude::*`.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::manifest::Manifest;
    pub use crate::policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig};
    #[cfg(feature = "runtime")]
    pub use crate::runtime::{EarlyExitModel, Model, Prediction, Preprocessor};
    #[cfg(feature = "runtime")]
    pub use crate::session::HiSession;
    pub use crate::session::{HiResult, RemoteOutcome};
}
