//! `hiedge import`: writes `<out>/manifest.json`, `<out>/tiny.onnx` and `<out>/large.onnx` from a
//! pair of ONNX files, and optionally a split model (`split_trunk.onnx`, `split_tail.onnx`), then
//! compiles them to the NNEF archives the runtime loads (`hiedge_eval::compile`); see
//! `hiedge_eval::import` for what is read from the graphs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hiedge_core::manifest::{Color, Layout, Manifest, OffloadCodec, Resize};
use hiedge_eval::compile::{compile_set, Compiled};
use hiedge_eval::import::{add_split, manifest_for, ImportOptions};

use crate::limits;

/// The command's arguments.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// Name of the model set.
    #[arg(long)]
    pub name: String,
    /// The tiny (device) ONNX model.
    #[arg(long)]
    pub tiny: PathBuf,
    /// The large (Worker) ONNX model.
    #[arg(long)]
    pub large: PathBuf,
    /// A split model's device half (input -> exit-head logits, features), for split inference.
    #[arg(long, requires = "split_tail")]
    pub split_trunk: Option<PathBuf>,
    /// A split model's edge half (features -> logits).
    #[arg(long, requires = "split_trunk")]
    pub split_tail: Option<PathBuf>,
    /// Class names in label order, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "classes_file")]
    pub classes: Vec<String>,
    /// A file with one class name per line, in label order.
    #[arg(long)]
    pub classes_file: Option<PathBuf>,
    /// Mean, after scaling pixels to 0..1: one value or one per channel (comma-separated).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub mean: Option<Vec<f32>>,
    /// Standard deviation, after scaling pixels to 0..1: one value or one per channel.
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// NCHW or NHWC, when the input shape does not settle it.
    #[arg(long, value_parser = parse_layout)]
    pub layout: Option<Layout>,
    /// gray or rgb (must agree with the input's channels).
    #[arg(long, value_parser = parse_color)]
    pub color: Option<Color>,
    /// How images of another size are fitted: stretch (default) or center-crop.
    #[arg(long, value_parser = parse_resize)]
    pub resize: Option<Resize>,
    /// Directory to write the set into (created; an existing manifest there is not overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// How clients offload this set's samples unless told otherwise: `raw`, `png`, `jpeg:85`,
    /// `webp:80` (the manifest's `offload_codec`; measure with `hiedge eval --offload-codec`).
    #[arg(long, value_parser = parse_codec)]
    pub offload_codec: Option<OffloadCodec>,
}

/// `--offload-codec`'s values (import and eval).
pub fn parse_codec(s: &str) -> std::result::Result<OffloadCodec, String> {
    s.parse()
}

fn parse_layout(s: &str) -> std::result::Result<Layout, String> {
    match s.to_ascii_uppercase().as_str() {
        "NCHW" => Ok(Layout::Nchw),
        "NHWC" => Ok(Layout::Nhwc),
        _ => Err(format!("`{s}` is not NCHW or NHWC")),
    }
}

fn parse_color(s: &str) -> std::result::Result<Color, String> {
    match s {
        "gray" | "grey" => Ok(Color::Gray),
        "rgb" => Ok(Color::Rgb),
        _ => Err(format!("`{s}` is not gray or rgb")),
    }
}

fn parse_resize(s: &str) -> std::result::Result<Resize, String> {
    match s {
        "stretch" => Ok(Resize::Stretch),
        "center-crop" | "center_crop" => Ok(Resize::CenterCrop),
        _ => Err(format!("`{s}` is not stretch or center-crop")),
    }
}

/// Writes the ONNX files, compiles them to NNEF and writes the manifest, recording in `written`
/// each file as it is created so that a failure can take them back.
fn write_and_compile(
    out: &Path,
    tiny: &[u8],
    large: &[u8],
    split: Option<&(Vec<u8>, Vec<u8>)>,
    manifest: &mut Manifest,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<Compiled>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files: Vec<(&str, &[u8])> = vec![("tiny.onnx", tiny), ("large.onnx", large)];
    if let Some((trunk, tail)) = split {
        files.extend([("split_trunk.onnx", trunk.as_slice()), ("split_tail.onnx", tail.as_slice())]);
    }
    for (name, bytes) in files {
        let path = out.join(name);
        write_new(&path, bytes)?;
        written.push(path);
    }
    let before: BTreeSet<_> = list(out);
    let compiled = compile_set(out, manifest);
    written.extend(list(out).difference(&before).cloned());
    let compiled = compiled?;
    // Cloudflare's limits, before the manifest makes it a set: a refusal takes the files back.
    let parts = limits::store_large_in_parts(out, manifest)?;
    written.extend(parts.iter().map(|p| out.join(p)));
    let needs = limits::check_set(out, manifest)?;
    println!("{}", needs.summary());
    let manifest_path = out.join("manifest.json");
    write_new(&manifest_path, manifest.to_json_pretty()?.as_bytes())?;
    written.push(manifest_path);
    Ok(compiled)
}

/// Every file `hiedge import` writes into `out`, for the checks before it writes any.
fn planned_files(split: bool) -> Vec<&'static str> {
    let mut files = vec!["manifest.json", "tiny.onnx", "large.onnx", "tiny.nnef.tar", "large.nnef.tar"];
    if split {
        files.extend(["split_trunk.onnx", "split_tail.onnx", "split_trunk.nnef.tar", "split_tail.nnef.tar"]);
    }
    files
}

/// Refuses an `--out` that is a symbolic link, or that already holds (as a file or a link) any
/// file the import would write: an import never writes through a link nor overwrites a file it did
/// not create.
fn check_out(out: &Path, split: bool) -> Result<()> {
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("--out {} is a symbolic link: import into a real, new directory", out.display());
    }
    for name in planned_files(split) {
        let path = out.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            bail!("{} exists: import into a new directory (hiedge import never overwrites a file)", path.display());
        }
    }
    Ok(())
}

/// Creates `path` and writes `bytes`; fails if anything, a symbolic link included, is already there.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (hiedge import never overwrites a file)", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The files in `dir` (empty if it cannot be read).
fn list(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn run(args: &ImportArgs) -> Result<()> {
    let classes: Vec<String> = match &args.classes_file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => args.classes.iter().map(|c| c.trim().to_string()).collect(),
    };
    if classes.is_empty() {
        bail!("give the class names: --classes a,b,c or --classes-file FILE");
    }
    if !hiedge_core::protocol::is_set_name(&args.name) {
        bail!(
            "--name `{}` is not a model-set name: use 1-64 of a-z, 0-9, - and _ (it names the set's \
             directory and its Worker routes, /v1/models/<name>)",
            args.name.escape_debug()
        );
    }
    let (tiny, large) = (read(&args.tiny)?, read(&args.large)?);
    let options = ImportOptions {
        name: args.name.clone(),
        classes,
        mean: args.mean.clone(),
        std: args.std.clone(),
        layout: args.layout,
        color: args.color,
        resize: args.resize,
    };
    let mut manifest = manifest_for(&tiny, &large, &options)?;
    manifest.offload_codec = args.offload_codec;
    let split = match (&args.split_trunk, &args.split_tail) {
        (Some(trunk), Some(tail)) => {
            let (trunk, tail) = (read(trunk)?, read(tail)?);
            add_split(&mut manifest, &trunk, &tail)?;
            Some((trunk, tail))
        }
        _ => None,
    };
    check_out(&args.out, split.is_some())?;
    // A refused import leaves nothing behind: the directory if this run created it, else the files
    // it wrote (compiling is the last check, and it reads the ONNX files from the directory).
    let created_dir = !args.out.exists();
    let mut written = Vec::new();
    let compiled = write_and_compile(&args.out, &tiny, &large, split.as_ref(), &mut manifest, &mut written);
    let compiled = match compiled {
        Ok(c) => c,
        Err(e) => {
            if created_dir {
                std::fs::remove_dir_all(&args.out).ok();
            } else {
                written.iter().for_each(|f| drop(std::fs::remove_file(f)));
            }
            return Err(e);
        }
    };
    // Each value as the manifest spells it (`NHWC`, `gray`, `center_crop`, `probabilities`).
    let spelled = |v: serde_json::Result<serde_json::Value>| v.ok().and_then(|v| v.as_str().map(String::from));
    let entry = |n: &str| manifest.models.get(n).and_then(|m| spelled(serde_json::to_value(m.output)));
    println!(
        "wrote {}: {} classes, input {:?} {} {}, resize {}, tiny outputs {}, large outputs {}, {} ONNX files compiled to NNEF; next: hiedge eval --models {0} and hiedge calibrate --models {0}",
        args.out.display(),
        manifest.classes.len(),
        manifest.input.shape,
        spelled(serde_json::to_value(manifest.input.layout)).unwrap_or_default(),
        spelled(serde_json::to_value(manifest.input.color())).unwrap_or_default(),
        spelled(serde_json::to_value(manifest.input.resize())).unwrap_or_default(),
        entry("tiny").unwrap_or_default(),
        entry("large").unwrap_or_default(),
        compiled.len(),
    );
    if let Some(sp) = &manifest.split {
        println!("split model: trunk -> features {:?} -> tail", sp.feature_shape);
    }
    Ok(())
}
