//! Cloudflare Workers' limits a model set must meet, checked where a set is written (`hiedge
//! import`, `hiedge compile`) so that a set that cannot deploy is refused there, naming the limit
//! and the fix, and is never discovered at deploy. The limits are those of
//! <https://developers.cloudflare.com/workers/platform/limits/>: "Individual Static Asset file
//! size: 25 MiB" (each model file is one asset) and "Memory: 128 MB" per isolate (the Worker holds
//! the large model, and the split tail when the set has one).
//!
//! Memory is measured, not guessed: the `hiedge` binary counts its heap ([`PeakAlloc`], its global
//! allocator), and the check loads the models the Worker loads, from their files, and runs each
//! once, the way the Worker does on its first request; the peak is what that took. Native tract
//! packs weights as the wasm build does, within the kernel differences of the two targets; the
//! Worker's own code and state come on top, so a set is refused above the limit and warned about
//! above three quarters of it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};
use hiedge_core::runtime::{split, Features};
use hiedge_core::{Manifest, Model};

pub use hiedge_core::protocol::MAX_STATIC_ASSET_BYTES;
/// Cloudflare's memory per isolate: 128 MB (read as 128,000,000 bytes, the smaller reading).
pub const ISOLATE_MEMORY_BYTES: u64 = 128_000_000;
/// Above this share of [`ISOLATE_MEMORY_BYTES`] the check warns.
const WARN_SHARE: f64 = 0.75;
const LIMITS_PAGE: &str = "https://developers.cloudflare.com/workers/platform/limits/";

/// The system allocator, counting the bytes live now and the most live since [`PeakAlloc::reset`].
pub struct PeakAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe the sizes.
unsafe impl std::alloc::GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

impl PeakAlloc {
    /// The peak heap above the live heap at the start of `work`, or `None` when this allocator is
    /// not the program's (nothing was counted).
    fn measure<T>(work: impl FnOnce() -> T) -> (T, Option<u64>) {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let probe = std::hint::black_box(vec![0u8; 64]);
        let counting = PEAK.load(Ordering::Relaxed) >= base + 64;
        drop(probe);
        let out = work();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base) as u64;
        (out, counting.then_some(peak))
    }
}

/// What a set needs of the Worker's limits.
#[derive(Debug)]
pub struct SetNeeds {
    /// Each file the Worker's assets would hold (everything but ONNX sources), and its size.
    pub files: Vec<(String, u64)>,
    /// The heap it took natively to load and run once what the Worker loads (`None`: not counted).
    pub worker_heap: Option<u64>,
}

impl SetNeeds {
    /// One line for the command's output.
    pub fn summary(&self) -> String {
        let largest = self.files.iter().max_by_key(|(_, b)| *b);
        let files = match largest {
            Some((name, bytes)) => {
                format!("largest asset {name} {} of {} MiB", mib(*bytes), mib(MAX_STATIC_ASSET_BYTES))
            }
            None => "no assets".into(),
        };
        let memory = match self.worker_heap {
            Some(heap) => format!(
                "the Worker's models took {} MB to load and run once, natively, of the {} MB isolate limit",
                mb(heap),
                mb(ISOLATE_MEMORY_BYTES)
            ),
            None => "memory not measured".into(),
        };
        format!("Cloudflare limits ({LIMITS_PAGE}): {files}; {memory}")
    }
}

/// Checks the set in `dir` against the limits: refuses it when a file is over the static-asset limit
/// or the models the Worker loads take more than the isolate's memory; warns (on stderr) above
/// three quarters of it. Returns what it measured.
pub fn check_set(dir: &Path, manifest: &Manifest) -> Result<SetNeeds> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // models/.assetsignore keeps ONNX sources out of the upload; everything else is an asset.
        if entry.file_type()?.is_file() && !name.ends_with(".onnx") {
            files.push((name, entry.metadata()?.len()));
        }
    }
    files.sort();
    for (name, bytes) in &files {
        if *bytes > MAX_STATIC_ASSET_BYTES {
            bail!(
                "{name} is {} MiB: Cloudflare serves static assets of at most {} MiB each ({LIMITS_PAGE}), so this \
                 set cannot deploy. Only the large model is stored in parts: the files browsers download (the \
                 device model, early-exit stages, split trunk) and the split tail must each fit. Use a smaller \
                 model (fewer or narrower layers)",
                mib(*bytes),
                mib(MAX_STATIC_ASSET_BYTES)
            );
        }
    }
    let role = manifest.worker_model()?;
    let (loaded, worker_heap) = PeakAlloc::measure(|| worker_models(dir, manifest, &role));
    loaded?;
    if let Some(heap) = worker_heap {
        if heap > ISOLATE_MEMORY_BYTES {
            bail!(
                "the models the Worker loads (its `{}` model{}) took {} MB to load and run once, natively: more \
                 than the {} MB a Worker isolate may use ({LIMITS_PAGE}). Use a smaller model there, or run the large model on an inference server (the \
                 manifest's `oip`: three tiers, edge-worker/README.md)",
                role,
                if manifest.split.is_some() { " and the split tail" } else { "" },
                mb(heap),
                mb(ISOLATE_MEMORY_BYTES)
            );
        }
        if heap as f64 > WARN_SHARE * ISOLATE_MEMORY_BYTES as f64 {
            eprintln!(
                "warning: the Worker's models took {} MB natively, over {:.0}% of the {} MB isolate limit; the \
                 Worker's own code and requests come on top",
                mb(heap),
                100.0 * WARN_SHARE,
                mb(ISOLATE_MEMORY_BYTES)
            );
        }
    }
    Ok(SetNeeds { files, worker_heap })
}

/// Where `compile` and `quantize` end, with a set rewritten in place: the large model in parts
/// where it must be, the limits checked (a refusal leaves the manifest on disk as it was), what
/// they measured printed, and `dir/manifest.json` written. Returns its path.
pub fn store_checked(dir: &Path, manifest: &mut Manifest) -> Result<std::path::PathBuf> {
    store_large_in_parts(dir, manifest)?;
    let needs = check_set(dir, manifest)?;
    println!("{}", needs.summary());
    let path = dir.join("manifest.json");
    std::fs::write(&path, manifest.to_json_pretty()?)?;
    Ok(path)
}

/// Stores the Worker's model (`large`, or a three-tier set's `oip.worker_model`) in parts when its
/// archive is over the static-asset limit (the Worker joins and checks them); says so on stdout.
/// Returns the part files written.
pub fn store_large_in_parts(dir: &Path, manifest: &mut Manifest) -> Result<Vec<String>> {
    let role = manifest.worker_model()?;
    let parts = hiedge_eval::compile::store_in_parts(dir, manifest, &role, MAX_STATIC_ASSET_BYTES)?;
    if !parts.is_empty() {
        let entry = manifest.model(&role)?;
        println!(
            "{} is over Cloudflare's {} MiB static-asset limit ({LIMITS_PAGE}): stored as {} parts ({}), \
             which the Worker joins and checks against its sha256",
            entry.file,
            mib(MAX_STATIC_ASSET_BYTES),
            parts.len(),
            parts.join(", ")
        );
    }
    Ok(parts)
}

/// Loads what the Worker loads (its model `role`, `large` or a three-tier set's
/// `oip.worker_model`, and the split tail), from the set's files, and runs each once on a blank
/// sample; both stay alive together, as they may in one isolate.
fn worker_models(dir: &Path, manifest: &Manifest, role: &str) -> Result<()> {
    let read = |file: &str| std::fs::read(dir.join(file)).with_context(|| format!("cannot read {file}"));
    let large = Model::load(manifest, role, &hiedge_eval::compile::read_model(dir, manifest, role)?)?;
    large.logits(&vec![0u8; manifest.input_len()])?;
    let tail = match &manifest.split {
        Some(sp) => {
            let tail = split::load_tail(manifest, &read(&sp.tail.file)?)?;
            let features = Features::new(vec![0f32; tail.feature_len()]);
            tail.run(&features)?;
            Some(tail)
        }
        None => None,
    };
    drop((large, tail));
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}
