//! Loading the model set and the Fashion-MNIST split from disk.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hiedge_core::dataset::{IdxArray, CALIBRATION_LEN, CALIBRATION_START};
use hiedge_core::{Manifest, Model};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Paths;

/// The manifest and both models, parsed and optimised once.
pub struct ModelSet {
    pub manifest: Manifest,
    pub tiny: Model,
    pub large: Model,
}

impl ModelSet {
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join("manifest.json");
        let json =
            std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
        let manifest = Manifest::from_json(&json).with_context(|| format!("in {}", manifest_path.display()))?;
        let load = |name: &str| -> Result<Model> {
            let file = dir.join(&manifest.model(name)?.file);
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            Model::load(&manifest, name, &bytes).with_context(|| format!("loading {}", file.display()))
        };
        let (tiny, large) = (load("tiny")?, load("large")?);
        Ok(ModelSet { manifest, tiny, large })
    }
}

/// Images and labels of one split.
pub struct Split {
    pub images: IdxArray,
    pub labels: Vec<usize>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening {} (install Debian's dataset-fashion-mnist: `make data`)", path.display()))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(IdxArray::parse(&bytes).with_context(|| format!("parsing {}", path.display()))?)
}

fn load_split(data: &Path, prefix: &str, range: Option<(usize, usize)>) -> Result<Split> {
    let mut images = read_idx(&data.join(format!("{prefix}-images-idx3-ubyte.gz")))?;
    let labels = read_idx(&data.join(format!("{prefix}-labels-idx1-ubyte.gz")))?;
    if images.len() != labels.len() {
        bail!("{prefix}: {} images but {} labels", images.len(), labels.len());
    }
    let (start, len) = range.unwrap_or((0, images.len()));
    if start + len > images.len() {
        bail!("{prefix}: asked for images {start}..{} of {}", start + len, images.len());
    }
    let item = images.item_len();
    images.data = images.data[start * item..(start + len) * item].to_vec();
    images.dims[0] = len;
    let labels = labels.data[start..start + len].iter().map(|&l| l as usize).collect();
    Ok(Split { images, labels })
}

/// The 10,000 test images (reporting only), optionally the first `limit`.
pub fn test_split(paths: &Paths, limit: Option<usize>) -> Result<Split> {
    let n = limit.unwrap_or(10_000).min(10_000);
    load_split(&paths.data, "t10k", Some((0, n)))
}

/// The calibration set: the last 5,000 training images.
pub fn calibration_split(paths: &Paths) -> Result<Split> {
    load_split(&paths.data, "train", Some((CALIBRATION_START, CALIBRATION_LEN)))
}

/// Raw logits of `model` for every image of `split`, with a progress bar.
pub fn logits(model: &Model, split: &Split, what: &str) -> Result<Vec<Vec<f32>>> {
    let bar = ProgressBar::new(split.len() as u64).with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let out = (0..split.len())
        .map(|i| {
            bar.inc(1);
            model.logits(split.images.item(i)).map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    out
}
