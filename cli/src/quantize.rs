//! `hiedge quantize`: stores one model's weights as f16 or int8 (`hiedge_core::runtime::stored_weights`)
//! once an accuracy gate on the user's labelled data says what it costs. The f32 archive and the
//! stored one are compiled from the same ONNX source and run on the same samples; past the gate the
//! set is left as it was, with the numbers. Passed, the manifest names the storage with the gate's
//! measurement (`models.<name>.weights`), the limits are checked again (parts, the Worker's memory),
//! and `hiedge compile` keeps storing the weights that way.

use anyhow::{bail, Context, Result};
use hiedge_core::manifest::{StoredWeights, WeightGate, WeightStorage};
use hiedge_core::prob::argmax;
use hiedge_core::runtime::sha256_hex;
use hiedge_core::{Manifest, Model};
use hiedge_eval::compile::{compile_model, write_model};
use hiedge_eval::dataset::Split;

use crate::Paths;

/// The command's arguments.
#[derive(clap::Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub paths: Paths,
    /// The model whose weights to store (the Worker's: `large`).
    #[arg(long, default_value = "large")]
    pub model: String,
    /// How to store them: `f16` (half the bytes), `int8` (a quarter), or `f32` (back to as exported).
    #[arg(long)]
    pub weights: WeightStorage,
    /// Largest top-1 accuracy drop against the f32 weights, in percentage points, on `--data`.
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
    pub max_drop: f64,
    /// Use only the first N samples of `--data`.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// What the gate measured: both archives on every sample.
fn measure(
    manifest: &Manifest,
    name: &str,
    f32_bytes: &[u8],
    stored: &[u8],
    split: &Split,
) -> Result<(f64, f64, f64, f64)> {
    // Each archive loaded as the manifest would name it (Model::load checks the file's sha256).
    let load = |bytes: &[u8], what: &str| -> Result<Model> {
        let mut m = manifest.clone();
        if let Some(entry) = m.models.get_mut(name) {
            entry.sha256 = sha256_hex(bytes);
        }
        Model::load(&m, name, bytes).with_context(|| format!("loading the {what} archive"))
    };
    let (reference, candidate) = (load(f32_bytes, "f32")?, load(stored, "stored")?);
    let (mut right_f32, mut right, mut same, mut max_diff) = (0usize, 0usize, 0usize, 0f64);
    for i in 0..split.len() {
        let (a, b) = (reference.predict(split.image(i), 1.0)?, candidate.predict(split.image(i), 1.0)?);
        let (la, lb) = (argmax(&a.probs), argmax(&b.probs));
        right_f32 += usize::from(la == split.labels[i]);
        right += usize::from(lb == split.labels[i]);
        same += usize::from(la == lb);
        for (x, y) in a.probs.iter().zip(&b.probs) {
            max_diff = max_diff.max(f64::from((x - y).abs()));
        }
    }
    let n = split.len() as f64;
    Ok((right_f32 as f64 / n, right as f64 / n, same as f64 / n, max_diff))
}

/// Measures, gates and (when it passes) stores; prints what it measured.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    let dir = &args.paths.models;
    let mut manifest = crate::data::read_manifest(dir)?;
    let name = args.model.as_str();
    manifest.model(name)?;
    let f32_bytes = compile_model(dir, &manifest, name, WeightStorage::F32)?;
    if args.weights == WeightStorage::F32 {
        write_model(dir, &mut manifest, name, &f32_bytes)?;
        if let Some(entry) = manifest.models.get_mut(name) {
            entry.weights = None;
        }
        println!("models.{name}: f32 weights, {} bytes", f32_bytes.len());
        return finish(dir, &mut manifest);
    }
    let stored = compile_model(dir, &manifest, name, args.weights)?;
    let split = crate::data::test_split(&args.paths, &manifest, args.limit)?;
    if split.is_empty() {
        bail!("{} holds no samples: the gate needs labelled data", args.paths.data.display());
    }
    let (accuracy_f32, accuracy, agreement, max_prob_diff) = measure(&manifest, name, &f32_bytes, &stored, &split)?;
    let gate = WeightGate {
        data: args.paths.data.display().to_string(),
        samples: split.len() as u64,
        accuracy_f32,
        accuracy,
        agreement,
        max_prob_diff,
        max_drop: args.max_drop,
    };
    println!(
        "models.{name}: {} weights: {} bytes against f32's {} ({:.1}%); on {} samples of {}: top-1 accuracy \
         {:.2}% against f32's {:.2}% (drop {:.2} points, gate {} points), same class {:.2}%, largest probability \
         difference {:.2e}",
        args.weights,
        stored.len(),
        f32_bytes.len(),
        100.0 * stored.len() as f64 / f32_bytes.len() as f64,
        gate.samples,
        gate.data,
        100.0 * accuracy,
        100.0 * accuracy_f32,
        gate.drop_points(),
        args.max_drop,
        100.0 * agreement,
        max_prob_diff
    );
    if !gate.passed() {
        bail!(
            "{} weights drop models.{name}'s accuracy by {:.2} points on {} samples, past --max-drop {}: the set \
             is unchanged (keep f32, try f16, or allow a larger drop)",
            args.weights,
            gate.drop_points(),
            gate.samples,
            args.max_drop
        );
    }
    let original = manifest.clone();
    let previous = hiedge_eval::compile::read_model(dir, &original, name)?;
    write_model(dir, &mut manifest, name, &stored)?;
    if let Some(entry) = manifest.models.get_mut(name) {
        entry.weights = Some(StoredWeights { storage: args.weights, gate });
    }
    finish(dir, &mut manifest).or_else(|e| {
        // Refused by the limits: the files the manifest on disk names are put back.
        let mut back = original;
        write_model(dir, &mut back, name, &previous)?;
        crate::limits::store_large_in_parts(dir, &mut back)?;
        Err(e.context("the set is unchanged"))
    })
}

/// Parts, the limits and the manifest, as `hiedge compile` ends.
fn finish(dir: &std::path::Path, manifest: &mut Manifest) -> Result<()> {
    let path = crate::limits::store_checked(dir, manifest)?;
    println!("wrote {}", path.display());
    Ok(())
}
