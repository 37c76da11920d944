//! `hiedge compile`: every ONNX file a manifest names becomes the NNEF archive the runtime loads
//! (tract's own format, read without the ONNX parser, which keeps the browser client and the
//! Worker small). Each entry's `file` then names the archive and its `source` the ONNX file, so
//! compiling again (a new tract, say) starts from the ONNX file the user handed over.

use std::collections::BTreeMap;
use std::path::Path;

use hiedge_core::manifest::{Manifest, SourceFile, StageEntry, WeightStorage};
use hiedge_core::runtime::{onnx_to_nnef_stored, sha256_hex, verify, ModelFormat, PartsJoiner};

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
    /// How the archive stores the weights (`models.<name>.weights`; f32 for the stages).
    storage: WeightStorage,
}

fn stage<'a>(field: &str, st: &'a mut StageEntry, shape: Vec<usize>) -> Entry<'a> {
    Entry {
        field: field.into(),
        file: &mut st.file,
        sha256: &mut st.sha256,
        source: &mut st.source,
        shape,
        storage: WeightStorage::F32,
    }
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
            storage: e.weights.as_ref().map_or(WeightStorage::F32, |w| w.storage),
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
/// from its `file` when that is ONNX) and points the entries at the archives, storing a model's
/// weights as its `weights` entry says. Every source file is checked against its sha256 first, and
/// every archive against its source's outputs ([`onnx_to_nnef_stored`]). The caller writes the
/// manifest.
pub fn compile_set(dir: &Path, manifest: &mut Manifest) -> Result<Vec<Compiled>> {
    let mut done: BTreeMap<(String, Vec<usize>, WeightStorage), (String, String)> = BTreeMap::new();
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
        let key = (source.sha256.clone(), e.shape.clone(), e.storage);
        if let Some((file, sha)) = done.get(&key) {
            (*e.file, *e.sha256, *e.source) = (file.clone(), sha.clone(), Some(source));
            continue;
        }
        let (onnx_len, nnef) = compile_source(dir, &e.field, &source, &e.shape, e.storage)?;
        let file = nnef_name(&source.file);
        write_file(dir, &e.field, &file, &nnef)?;
        let sha = sha256_hex(&nnef);
        report.push(Compiled {
            field: e.field.clone(),
            source: source.file.clone(),
            file: file.clone(),
            bytes: (onnx_len, nnef.len()),
        });
        done.insert(key, (file.clone(), sha.clone()));
        (*e.file, *e.sha256, *e.source) = (file, sha, Some(source));
    }
    manifest.validate()?;
    Ok(report)
}

/// The ONNX file `source` of manifest entry `field`, checked against its sha256 and compiled for an
/// input of `shape` with the weights stored as `storage`: the ONNX file's length and the archive.
fn compile_source(
    dir: &Path,
    field: &str,
    source: &SourceFile,
    shape: &[usize],
    storage: WeightStorage,
) -> Result<(usize, Vec<u8>)> {
    let onnx = read(dir, &source.file, &format!("{field}.source"))?;
    verify(&format!("{field}.source"), &onnx, &source.sha256)?;
    let nnef = onnx_to_nnef_stored(&onnx, shape, storage)
        .map_err(|err| Error::Import(format!("{field}: cannot compile {}: {err}", source.file)))?;
    Ok((onnx.len(), nnef))
}

/// Writes `bytes` to `dir/file` for manifest entry `field`, never through a symbolic link.
fn write_file(dir: &Path, field: &str, file: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(file);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Import(format!("{field}: {file} is a symbolic link: hiedge never writes through one")));
    }
    Ok(std::fs::write(path, bytes)?)
}

/// Model `name` of the set compiled from its ONNX source with its weights stored as `storage`: the
/// archive's bytes, not written (`hiedge quantize` measures them before the set changes).
pub fn compile_model(dir: &Path, manifest: &Manifest, name: &str, storage: WeightStorage) -> Result<Vec<u8>> {
    let field = format!("models.{name}");
    let source = manifest.model(name)?.source.as_ref().ok_or_else(|| {
        Error::Import(format!(
            "{field} has no ONNX source to compile from (`source`): import the model with `hiedge import`"
        ))
    })?;
    Ok(compile_source(dir, &field, source, &manifest.input.shape, storage)?.1)
}

/// Stores model `name`'s file in parts of at most `max_part` bytes when it is larger (Cloudflare
/// serves no static asset over 25 MiB): writes `<file>.part-0`, `<file>.part-1`, ..., removes the
/// whole file and lists the parts in the manifest entry (the Worker joins and checks them,
/// [`join_parts`](hiedge_core::runtime::join_parts)). A file within the limit is left whole. Returns
/// the part files written.
pub fn store_in_parts(dir: &Path, manifest: &mut Manifest, name: &str, max_part: u64) -> Result<Vec<String>> {
    let entry = manifest.models.get_mut(name).ok_or_else(|| Error::Import(format!("the set has no `{name}` model")))?;
    let path = dir.join(&entry.file);
    let Ok(meta) = std::fs::metadata(&path) else { return Ok(Vec::new()) };
    if meta.len() <= max_part {
        entry.parts = None;
        remove_stale_parts(dir, &entry.file, 0)?;
        return Ok(Vec::new());
    }
    // Another entry naming the same archive (the same ONNX file given as the device model too)
    // would lose its file: browsers load device files whole.
    let file = entry.file.clone();
    let field = format!("models.{name}");
    let sharing: Vec<String> =
        entries(manifest).into_iter().filter(|e| e.field != field && *e.file == file).map(|e| e.field).collect();
    if !sharing.is_empty() {
        return Err(Error::Import(format!(
            "models.{name}'s archive {file} ({} MiB) must be stored in parts, but {} loads the same file, and a file \
             browsers load must fit whole in {} MiB: use a smaller model there",
            meta.len() / (1024 * 1024),
            sharing.join(", "),
            max_part / (1024 * 1024)
        )));
    }
    let entry = manifest.models.get_mut(name).ok_or_else(|| Error::Import(format!("the set has no `{name}` model")))?;
    let bytes = std::fs::read(&path)?;
    verify(&format!("models.{name}"), &bytes, &entry.sha256)?;
    let mut parts = Vec::new();
    for (i, chunk) in bytes.chunks(max_part as usize).enumerate() {
        let file = format!("{}.part-{i}", entry.file);
        write_file(dir, &format!("models.{name}"), &file, chunk)?;
        parts.push(SourceFile { file, sha256: sha256_hex(chunk) });
    }
    std::fs::remove_file(&path)?;
    remove_stale_parts(dir, &entry.file, parts.len())?;
    let written = parts.iter().map(|p| p.file.clone()).collect();
    entry.parts = Some(parts);
    manifest.validate()?;
    Ok(written)
}

/// Removes `<file>.part-N` for every N >= `keep` (parts an earlier, larger archive left): they
/// would be uploaded as assets for nothing.
fn remove_stale_parts(dir: &Path, file: &str, keep: usize) -> Result<()> {
    let prefix = format!("{file}.part-");
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.strip_prefix(&prefix).and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n >= keep) {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    Ok(())
}

/// Writes `bytes` as model `name`'s whole file (its parts, if it had any, removed) and points the
/// entry at it; the caller stores it in parts again where it must ([`store_in_parts`]).
pub fn write_model(dir: &Path, manifest: &mut Manifest, name: &str, bytes: &[u8]) -> Result<()> {
    let entry = manifest.models.get_mut(name).ok_or_else(|| Error::Import(format!("the set has no `{name}` model")))?;
    write_file(dir, &format!("models.{name}"), &entry.file, bytes)?;
    remove_stale_parts(dir, &entry.file, 0)?;
    entry.sha256 = sha256_hex(bytes);
    entry.parts = None;
    Ok(())
}

/// Model `name`'s bytes from the set in `dir`: its file, or its parts joined and checked.
pub fn read_model(dir: &Path, manifest: &Manifest, name: &str) -> Result<Vec<u8>> {
    let entry = manifest.model(name)?;
    match &entry.parts {
        None => read(dir, &entry.file, &format!("models.{name}")),
        Some(parts) => {
            // One part at a time, as the Worker joins them (its memory is what import measures).
            let mut joiner = PartsJoiner::new(name, entry);
            for (i, p) in parts.iter().enumerate() {
                joiner.push(&read(dir, &p.file, &format!("models.{name}.parts[{i}]"))?)?;
            }
            Ok(joiner.finish()?)
        }
    }
}

fn read(dir: &Path, file: &str, field: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(file)).map_err(|e| Error::Import(format!("{field}: cannot read {file}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_stored_in_parts_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let json = format!(
            r#"{{"schema_version":2,"name":"p","input":{{"shape":[1,1,2,2],"layout":"NCHW","dtype":"u8",
            "normalize":{{"scale":1.0,"mean":0.0,"std":1.0}}}},"classes":["a","b"],
            "models":{{"large":{{"file":"large.nnef.tar","sha256":"{}","input_name":"x","output":"logits"}}}}}}"#,
            sha256_hex(&[7u8; 2500])
        );
        let mut manifest = Manifest::from_json(&json).unwrap();
        std::fs::write(dir.path().join("large.nnef.tar"), [7u8; 2500]).unwrap();
        let written = store_in_parts(dir.path(), &mut manifest, "large", 1000).unwrap();
        assert_eq!(written, ["large.nnef.tar.part-0", "large.nnef.tar.part-1", "large.nnef.tar.part-2"]);
        assert!(!dir.path().join("large.nnef.tar").exists(), "the whole file is not left to upload");
        let sizes: Vec<u64> = written.iter().map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(read_model(dir.path(), &manifest, "large").unwrap(), vec![7u8; 2500]);
        // The manifest survives its own round trip with the parts.
        let back = Manifest::from_json(&manifest.to_json_pretty().unwrap()).unwrap();
        assert_eq!(back.model("large").unwrap().stored_files(), written);
        // Stored again smaller, the parts an earlier archive left are removed.
        let mut again = manifest.clone();
        write_model(dir.path(), &mut again, "large", &[9u8; 1500]).unwrap();
        assert!(!dir.path().join("large.nnef.tar.part-0").exists(), "write_model removes the old parts");
        assert_eq!(store_in_parts(dir.path(), &mut again, "large", 1000).unwrap().len(), 2);
        assert!(!dir.path().join("large.nnef.tar.part-2").exists(), "no stale third part is left to upload");
        assert_eq!(read_model(dir.path(), &again, "large").unwrap(), vec![9u8; 1500]);
        // An altered part is named (the first archive's parts, written again).
        std::fs::write(dir.path().join("large.nnef.tar"), [7u8; 2500]).unwrap();
        store_in_parts(dir.path(), &mut manifest, "large", 1000).unwrap();
        std::fs::write(dir.path().join("large.nnef.tar.part-1"), [8u8; 1000]).unwrap();
        let e = read_model(dir.path(), &manifest, "large").unwrap_err().to_string();
        assert!(e.contains("part 1"), "{e}");
    }

    #[test]
    fn an_archive_a_device_model_shares_is_never_split() {
        let dir = tempfile::tempdir().unwrap();
        let sha = sha256_hex(&[7u8; 2500]);
        let entry = |kind: &str| {
            format!(r#""{kind}":{{"file":"m.nnef.tar","sha256":"{sha}","input_name":"x","output":"logits"}}"#)
        };
        let json = format!(
            r#"{{"schema_version":2,"name":"p","input":{{"shape":[1,1,2,2],"layout":"NCHW","dtype":"u8",
            "normalize":{{"scale":1.0,"mean":0.0,"std":1.0}}}},"classes":["a","b"],"models":{{{},{}}}}}"#,
            entry("large"),
            entry("tiny")
        );
        let mut manifest = Manifest::from_json(&json).unwrap();
        std::fs::write(dir.path().join("m.nnef.tar"), [7u8; 2500]).unwrap();
        let e = store_in_parts(dir.path(), &mut manifest, "large", 1000).unwrap_err().to_string();
        assert!(e.contains("models.tiny loads the same file"), "{e}");
        assert!(dir.path().join("m.nnef.tar").exists(), "nothing split");
    }

    #[test]
    fn archive_names_follow_the_onnx_names() {
        assert_eq!(nnef_name("tiny.onnx"), "tiny.nnef.tar");
        assert_eq!(nnef_name("model"), "model.nnef.tar");
    }
}
