//! # hiedge-eval
//!
//! Everything hiedge does offline, for the `hiedge` CLI and the tests: never linked into the
//! browser client or the Worker (`cargo tree -p hiedge-wasm` does not list it).
//!
//! * [`Metrics`]: HI accuracy, offload fraction and cost over a labelled set.
//! * [`sweep`]: trade-off sweeps and operating points over thresholds ([`sweep::Samples`]).
//! * [`calibrate`]: temperature scaling and the logistic decision module.
//! * [`early_exit`]: EE-HI simulation and threshold fitting ([`early_exit::EeSamples`]).
//! * [`split`]: the split model (MDI-Exit): exit share, accuracy and bytes sent at an exit threshold.
//! * [`three_tier`]: device -> Worker -> server, a threshold at each hop ([`three_tier::ThreeTier`]).
//! * [`dataset`] (IDX files) and [`fixture`] (the committed parity fixture).
//! * [`import`]: a manifest written from a tiny and a large ONNX file (`hiedge import`).
//!
//! ```no_run
//! use hiedge_core::{Manifest, Model, PolicyConfig};
//! use hiedge_eval::{fixture::Fixture, sweep::Samples};
//!
//! # fn main() -> Result<(), hiedge_eval::Error> {
//! let dir = std::path::Path::new("models/fashion-mnist");
//! let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
//! let tiny = Model::load(&manifest, "tiny", &std::fs::read(dir.join("tiny.nnef.tar"))?)?;
//! let large = Model::load(&manifest, "large", &std::fs::read(dir.join("large.nnef.tar"))?)?;
//! let fixture = Fixture::load(&dir.join("fixture"), &[], manifest.input_len(), manifest.classes.len())?;
//! let (mut tiny_logits, mut large_logits) = (Vec::new(), Vec::new());
//! for i in 0..fixture.len() {
//!     tiny_logits.push(tiny.logits(fixture.image(i))?);
//!     large_logits.push(large.logits(fixture.image(i))?);
//! }
//! let labels = fixture.labels.iter().map(|&l| l as usize).collect();
//! let samples = Samples::from_outputs(labels, &tiny_logits, tiny.output_kind(), &large_logits, manifest.temperature())?;
//! let metrics = samples.run_policy(PolicyConfig::calibrated(&manifest)?.build()?.as_mut())?;
//! println!("HI accuracy {:.4}, offloaded {:.4}", metrics.hi_accuracy(), metrics.offload_fraction());
//! # Ok(())
//! # }
//! ```

pub mod calibrate;
pub mod codec;
pub mod compile;
pub mod dataset;
pub mod early_exit;
mod error;
pub mod fixture;
pub mod import;
pub mod metrics;
pub mod split;
pub mod sweep;
pub mod three_tier;

pub use error::{Error, Result};
pub use metrics::Metrics;
