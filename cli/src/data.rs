//! Loading the model set and the Fashion-MNIST split from disk.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hiedge_core::prob::{argmax, softmax};
use hiedge_core::runtime::EarlyExitModel;
use hiedge_core::{Manifest, Model};
use hiedge_eval::dataset::{IdxArray, CALIBRATION_LEN, CALIBRATION_START};
use hiedge_eval::early_exit::EeSamples;
use hiedge_eval::metrics::quantile;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Paths;

/// The manifest and both models, parsed and optimised once.
pub struct ModelSet {
    pub manifest: Manifest,
    pub tiny: Model,
    pub large: Model,
    /// The early-exit model, when the manifest has one.
    pub ee: Option<EarlyExitModel>,
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
        let ee = match &manifest.early_exit {
            None => None,
            Some(e) => {
                let read =
                    |f: &str| std::fs::read(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()));
                let (s1, s2) = (read(&e.stage1.file)?, read(&e.stage2.file)?);
                Some(EarlyExitModel::load(&manifest, &s1, &s2).context("loading the early-exit model")?)
            }
        };
        Ok(ModelSet { manifest, tiny, large, ee })
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
    IdxArray::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
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

fn progress(split: &Split, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(split.len() as u64).with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Raw logits of `model` for every image of `split`, with a progress bar.
pub fn logits(model: &Model, split: &Split, what: &str) -> Result<Vec<Vec<f32>>> {
    let bar = progress(split, what);
    let out = (0..split.len())
        .map(|i| {
            bar.inc(1);
            model.logits(split.images.item(i)).map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    out
}

/// EE-HI's per-sample facts for `split`: both early-exit heads run on every image (softmax at
/// temperature 1, with a progress bar), next to the large model's `large_logits` and the labels.
pub fn ee_samples(ee: &EarlyExitModel, split: &Split, large_logits: &[Vec<f32>]) -> Result<EeSamples> {
    let bar = progress(split, "early exit");
    let (mut exit, mut fin) = (Vec::with_capacity(split.len()), Vec::with_capacity(split.len()));
    for i in 0..split.len() {
        bar.inc(1);
        let (e, features) = ee.stage1(split.images.item(i))?;
        exit.push(softmax(&e, 1.0));
        fin.push(softmax(&ee.stage2(&features)?, 1.0));
    }
    bar.finish_and_clear();
    let large_labels: Vec<usize> = large_logits.iter().map(|l| argmax(l)).collect();
    Ok(EeSamples::new(&exit, &fin, &large_labels, &split.labels)?)
}

/// Median native milliseconds of (tiny model, early-exit stage 1, stage 2) over the first `n`
/// images, interleaved, one thread.
pub fn device_ms(tiny: &Model, ee: &EarlyExitModel, split: &Split, n: usize) -> Result<(f64, f64, f64)> {
    let (mut t, mut s1, mut s2) = (Vec::new(), Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t0 = std::time::Instant::now();
        f()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    for i in 0..n.min(split.len()) {
        let img = split.images.item(i);
        t.push(time(&mut || tiny.logits(img).map(drop).map_err(Into::into))?);
        let mut features = None;
        s1.push(time(&mut || {
            features = Some(ee.stage1(img)?.1);
            Ok(())
        })?);
        let f = features.context("stage 1 gave no features")?;
        s2.push(time(&mut || ee.stage2(&f).map(drop).map_err(Into::into))?);
    }
    let median = |v: Vec<f64>| quantile(&v, 0.5);
    Ok((median(t), median(s1), median(s2)))
}
