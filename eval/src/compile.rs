//! `hiedge compile`: every ONNX file a manifest names becomes the NNEF archive the runtime loads
//! (tract's own format, read without the ONNX parser, which keeps the browser client and the
//! Worker small). Each entry's `file` then names the archive and its `source` the ONNX file, so
//! compiling again (a new tract, say) starts from the ONNX file the user handed over.

use std::collections::BTreeMap;
use std::path::Path;

use hiedge_core::manifest::{Manifest, SourceFile, StageEntry};
use hiedge_core::runtime::{onnx_to_nnef, sha256_hex, verify, ModelFormat};

use crate::error::{Error, Result};

/// One file `compile` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// Manifest field of the entry (`models.tiny`, `split.tail`, ...).
    pub field: String,
    /// The ONNX file it was compiled from.
    pub source: String,
    /// The NNEF archive written next to the manifest.
    pub file: String,
    /// Sizes in bytes: ONNX, NNEF.
    pub bytes: (usize, usize),
}

/// A file entry of the manifest: its field, its file and sha256, its ONNX source, the input shape.
struct Entry<'a> {
    field: String,
    file: &'a mut String,
    sha256: &'a mut String,
    source: &'a mut Option<SourceFile>,
    shape: Vec<usize>,
}

fn stage<'a>(field: &str, st: &'a mut StageEntry, shape: Vec<usize>) -> Entry<'a> {
    Entry { field: field.into(), file: &mut st.file, sha256: &mut st.sha256, source: &mut st.source, shape }
}

fn entries(m: &mut Manifest) -> Vec<Entry<'_>> {
    let input = m.input.shape.clone();
    let mut out = Vec::new();
    for (name, e) in m.models.iter_mut() {
        out.push(Entry {
            field: format!("models.{name}"),
            file: &mut e.file,
            sha256: &mut e.sha256,
            source: &mut e.source,
            shape: input.clone(),
        });
    }
    if let Some(ee) = m.early_exit.as_mut() {
        let features = ee.feature_shape.clone();
        out.push(stage("early_exit.stage1", &mut ee.stage1, input.clone()));
        out.push(stage("early_exit.stage2", &mut ee.stage2, features));
    }
    if let Some(sp) = m.split.as_mut() {
        let features = sp.feature_shape.clone();
        out.push(stage("split.trunk", &mut sp.trunk, input));
        out.push(stage("split.tail", &mut sp.tail, features));
    }
    out
}

/// `tiny.onnx` -> `tiny.nnef.tar`.
fn nnef_name(onnx: &str) -> String {
    format!("{}.nnef.tar", onnx.strip_suffix(".onnx").unwrap_or(onnx))
}

/// Compiles every ONNX file of the set in `dir` (from each entry's `source` when it has one, else
/// from its `file` when that is ONNX) and points the entries at the archives. Every source file is
/// checked against its sha256 first, and every archive against its source's outputs
/// ([`onnx_to_nnef`]). The caller writes the manifest.
pub fn compile_set(dir: &Path, manifest: &mut Manifest) -> Result<Vec<Compiled>> {
    let mut done: BTreeMap<(String, Vec<usize>), (String, String)> = BTreeMap::new();
    let mut report = Vec::new();
    for e in entries(manifest) {
        let source = match e.source.clone() {
            Some(s) => s,
            None => {
                let bytes = read(dir, e.file, &e.field)?;
                if ModelFormat::of(&bytes) == ModelFormat::Nnef {
                    continue; // an archive with no ONNX source: nothing to compile from
                }
                SourceFile { file: e.file.clone(), sha256: e.sha256.clone() }
            }
        };
        let key = (source.sha256.clone(), e.shape.clone());
        if let Some((file, sha)) = done.get(&key) {
            (*e.file, *e.sha256, *e.source) = (file.clone(), sha.clone(), Some(source));
            continue;
        }
        let onnx = read(dir, &source.file, &format!("{}.source", e.field))?;
        verify(&format!("{}.source", e.field), &onnx, &source.sha256)?;
        let nnef = onnx_to_nnef(&onnx, &e.shape)
            .map_err(|err| Error::Import(format!("{}: cannot compile {}: {err}", e.field, source.file)))?;
        let file = nnef_name(&source.file);
        let path = dir.join(&file);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Import(format!(
                "{}: {file} is a symbolic link: hiedge never writes through one",
                e.field
            )));
        }
        std::fs::write(path, &nnef)?;
        let sha = sha256_hex(&nnef);
        report.push(Compiled {
            field: e.field.clone(),
            source: source.file.clone(),
            file: file.clone(),
            bytes: (onnx.len(), nnef.len()),
        });
        done.insert(key, (file.clone(), sha.clone()));
        (*e.file, *e.sha256, *e.source) = (file, sha, Some(source));
    }
    manifest.validate()?;
    Ok(report)
}

fn read(dir: &Path, file: &str, field: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(file)).map_err(|e| Error::Import(format!("{field}: cannot read {file}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_follow_the_onnx_names() {
        assert_eq!(nnef_name("tiny.onnx"), "tiny.nnef.tar");
        assert_eq!(nnef_name("model"), "model.nnef.tar");
    }
}
