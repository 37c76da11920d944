//! # hiedge-wasm: the `hiedge` npm package
//!
//! A thin wasm-bindgen facade over [`hiedge_core::session::HiSession`]: it converts JavaScript values,
//! fetches models, and makes the offload request with `fetch`; every HI decision, timing and
//! statistic is hiedge-core's.
//!
//! The crate builds two wasm modules from one source, so the client's network code exists once:
//! - the **device** build (default feature `device`, `hiedge_bg.wasm`): [`HiClient`] and
//!   [`HiStream`], with tract and the device model;
//! - the **loader** build (`--no-default-features`, `hiedge_loader_bg.wasm`, 0.18 MB gzip): the
//!   network layer alone (`loader.rs`): it downloads and caches the device build with progress,
//!   answers samples through the Worker while that loads (checked as every answer is), and reads or
//!   clears the cache. The package's JS entry only moves messages between the two and the page.
//!
//! ```js
//! import init, { HiClient } from "hiedge";
//! await init();
//! const client = await HiClient.create({
//!   model: "/models/tiny.nnef.tar", manifest: "/models/manifest.json",
//!   endpoint: "http://127.0.0.1:8787", timeoutMs: 2000,
//! });
//! const result = await client.classify(pixels); // Uint8Array(784)
//! console.log(result.label, result.decision, result.timings.totalMs);
//!
//! // Or everything from one Worker deployment: manifest, tiny model and early-exit stages are
//! // fetched from it by sha256, offloads go to that set's large model.
//! const mnist = await HiClient.create({ endpoint: "http://127.0.0.1:8787", modelSet: "mnist", earlyExit: true });
//! ```

mod cache;
mod js;
mod load;
mod offload;
mod options;

#[cfg(feature = "device")]
mod client;
#[cfg(feature = "device")]
mod image;
#[cfg(not(feature = "device"))]
mod loader;
#[cfg(feature = "device")]
mod stream;

use wasm_bindgen::prelude::*;

#[cfg(feature = "device")]
pub use crate::client::{threshold_sweep, HiClient};
pub use crate::options::{
    CalibrateOptions, Calibration, EarlyExitSources, HiClientOptions, ImageShape, LoadProgress, LoadStage,
    OffloadRequest, PolicyChoice,
};
#[cfg(feature = "device")]
pub use crate::stream::{HiStream, HiStreamOptions};

/// Runs when the module is instantiated: a Rust panic is printed to the console with its message
/// and location (then surfaces as a JS `RuntimeError`), instead of only "unreachable".
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}
