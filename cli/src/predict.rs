//! `hiedge predict`: one model of a set, run natively on image files, as JSON. What the Worker or
//! the browser would answer for a photo (the same conversion, the same archive), for checking a set
//! against the framework it was exported from.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hiedge_eval::dataset::image_file_pixels;

/// One image's answer.
#[derive(serde::Serialize)]
struct Answer {
    file: String,
    label: usize,
    class: String,
    probs: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<f32>>,
}

/// Runs model `name` of the set in `dir` on `files` and prints `{"set", "model", "results": [...]}`.
pub fn run(dir: &Path, name: &str, logits: bool, files: &[PathBuf]) -> Result<()> {
    let manifest = crate::data::read_manifest(dir)?;
    let model = crate::data::load_model(dir, &manifest, name)?;
    let mut results = Vec::with_capacity(files.len());
    for file in files {
        let pixels = image_file_pixels(file, &manifest)?;
        let p = model.predict(&pixels, 1.0).with_context(|| format!("running models.{name} on {}", file.display()))?;
        results.push(Answer {
            file: file.display().to_string(),
            label: p.label,
            class: manifest.classes.get(p.label).cloned().unwrap_or_default(),
            probs: p.probs,
            logits: logits.then_some(p.logits),
        });
    }
    let out = serde_json::json!({ "set": manifest.name, "model": name, "results": results });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
