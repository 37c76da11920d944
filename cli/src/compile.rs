//! `hiedge compile`: every ONNX file of a model set becomes the NNEF archive the browser client and
//! the Worker load (see `hiedge_eval::compile`); the manifest is rewritten to name them.

use std::path::Path;

use anyhow::{Context, Result};
use hiedge_core::Manifest;
use hiedge_eval::compile::compile_set;

/// Compiles the set in `dir` and writes its manifest; prints one line per archive written.
pub fn run(dir: &Path) -> Result<()> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut manifest = Manifest::from_json(&text)?;
    let compiled = compile_set(dir, &mut manifest)?;
    for c in &compiled {
        println!(
            "{}: {} ({} bytes) -> {} ({} bytes), outputs checked against the ONNX model",
            c.field, c.source, c.bytes.0, c.file, c.bytes.1
        );
    }
    // Cloudflare's limits: a set that cannot deploy keeps its old manifest.
    crate::limits::store_large_in_parts(dir, &mut manifest)?;
    let needs = crate::limits::check_set(dir, &manifest)?;
    println!("{}", needs.summary());
    std::fs::write(&path, manifest.to_json_pretty()?)?;
    println!("wrote {}: {} archive(s)", path.display(), compiled.len());
    Ok(())
}
