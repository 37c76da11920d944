//! `hiedge compile`: every ONNX file of a model set becomes the NNEF archive the browser client and
//! the Worker load (see `hiedge_eval::compile`); the manifest is rewritten to name them.

use std::path::Path;

use anyhow::Result;
use hiedge_eval::compile::compile_set;

/// Compiles the set in `dir` and writes its manifest; prints one line per archive written.
pub fn run(dir: &Path) -> Result<()> {
    let mut manifest = crate::data::read_manifest(dir)?;
    let compiled = compile_set(dir, &mut manifest)?;
    for c in &compiled {
        println!(
            "{}: {} ({} bytes) -> {} ({} bytes), outputs checked against the ONNX model",
            c.field, c.source, c.bytes.0, c.file, c.bytes.1
        );
    }
    // Cloudflare's limits: a set that cannot deploy keeps its old manifest.
    let path = crate::limits::store_checked(dir, &mut manifest)?;
    println!("wrote {}: {} archive(s)", path.display(), compiled.len());
    Ok(())
}
