//! `hiedge import`: writes `<out>/manifest.json`, `<out>/tiny.onnx` and `<out>/large.onnx` from a
//! pair of ONNX files, and optionally a split model (`split_trunk.onnx`, `split_tail.onnx`), then
//! compiles them to the NNEF archives the runtime loads (`hiedge_eval::compile`); see
//! `hiedge_eval::import` for what is read from the graphs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hiedge_core::manifest::{Color, Layout, Resize};
use hiedge_eval::compile::compile_set;
use hiedge_eval::import::{add_split, manifest_for, ImportOptions};

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
    let split = match (&args.split_trunk, &args.split_tail) {
        (Some(trunk), Some(tail)) => {
            let (trunk, tail) = (read(trunk)?, read(tail)?);
            add_split(&mut manifest, &trunk, &tail)?;
            Some((trunk, tail))
        }
        _ => None,
    };
    let manifest_path = args.out.join("manifest.json");
    if manifest_path.exists() {
        bail!("{} exists: import into a new directory", manifest_path.display());
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("tiny.onnx"), &tiny)?;
    std::fs::write(args.out.join("large.onnx"), &large)?;
    if let Some((trunk, tail)) = &split {
        std::fs::write(args.out.join("split_trunk.onnx"), trunk)?;
        std::fs::write(args.out.join("split_tail.onnx"), tail)?;
    }
    let compiled = compile_set(&args.out, &mut manifest)?;
    std::fs::write(&manifest_path, manifest.to_json_pretty()?)?;
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
