//! Loading the model set and the labelled data (IDX files or image folders) from disk.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hiedge_core::manifest::OutputKind;
use hiedge_core::policy::ScoreRule;
use hiedge_core::prob::{argmax, softmax};
use hiedge_core::runtime::{split, EarlyExitModel, Stage1, Stage2};
use hiedge_core::{Manifest, Model};
use hiedge_eval::dataset::{read_capped, IdxArray, Split, CALIBRATION_LEN, CALIBRATION_START};
use hiedge_eval::early_exit::EeSamples;
use hiedge_eval::metrics::quantile;
use hiedge_eval::three_tier::ThreeTier;
use indicatif::{ProgressBar, ProgressStyle};

use crate::Paths;

/// The manifest and both models, parsed and optimised once.
pub struct ModelSet {
    pub manifest: Manifest,
    pub tiny: Model,
    pub large: Model,
    /// The early-exit model, when the manifest has one.
    pub ee: Option<EarlyExitModel>,
    /// The split model (trunk, tail), when the manifest has one.
    pub split: Option<(Stage1, Stage2)>,
}

impl ModelSet {
    pub fn load(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        let (tiny, large) = (load_model(dir, &manifest, "tiny")?, load_model(dir, &manifest, "large")?);
        let ee = match &manifest.early_exit {
            None => None,
            Some(e) => {
                let read =
                    |f: &str| std::fs::read(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()));
                let (s1, s2) = (read(&e.stage1.file)?, read(&e.stage2.file)?);
                Some(EarlyExitModel::load(&manifest, &s1, &s2).context("loading the early-exit model")?)
            }
        };
        let split = match &manifest.split {
            None => None,
            Some(e) => {
                let read =
                    |f: &str| std::fs::read(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()));
                let trunk = split::load_trunk(&manifest, &read(&e.trunk.file)?).context("loading the split trunk")?;
                let tail = split::load_tail(&manifest, &read(&e.tail.file)?).context("loading the split tail")?;
                Some((trunk, tail))
            }
        };
        Ok(ModelSet { manifest, tiny, large, ee, split })
    }
}

/// The manifest of the set in `dir` (`dir/manifest.json`), parsed and checked, its server tier
/// (`oip`) included.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let json = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::from_json(&json).with_context(|| format!("in {}", path.display()))?;
    manifest.oip_tier().with_context(|| format!("in {}", path.display()))?;
    Ok(manifest)
}

/// Model `name` of the set in `dir`: its file (or parts), checked, parsed and optimised.
pub fn load_model(dir: &Path, manifest: &Manifest, name: &str) -> Result<Model> {
    let file = dir.join(&manifest.model(name)?.file);
    let bytes =
        hiedge_eval::compile::read_model(dir, manifest, name).with_context(|| format!("reading {}", file.display()))?;
    Model::load(manifest, name, &bytes).with_context(|| format!("loading {}", file.display()))
}

/// Largest IDX file read, decompressed: 1 GiB (Fashion-MNIST's training images are 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 30;

/// IDX file `<dir>/<prefix>-<kind>-idx<n>-ubyte`, gzipped (`.gz`, decompressed with a cap) or not.
fn read_idx(dir: &Path, prefix: &str, kind: &str) -> Result<IdxArray> {
    let rank = if kind == "images" { 3 } else { 1 };
    let raw = dir.join(format!("{prefix}-{kind}-idx{rank}-ubyte"));
    let gz = dir.join(format!("{prefix}-{kind}-idx{rank}-ubyte.gz"));
    let bytes = if gz.exists() {
        let file = std::fs::File::open(&gz).with_context(|| format!("opening {}", gz.display()))?;
        read_capped(flate2::read::GzDecoder::new(file), MAX_IDX_BYTES, &gz.display().to_string())
            .with_context(|| format!("decompressing {}", gz.display()))?
    } else {
        std::fs::read(&raw).with_context(|| {
            format!("reading {} (for Fashion-MNIST install Debian's dataset-fashion-mnist: `make data`)", raw.display())
        })?
    };
    IdxArray::parse(&bytes).with_context(|| format!("parsing {prefix}-{kind} in {}", dir.display()))
}

/// Whether `dir` holds IDX files with this prefix (`t10k` test, `train` training).
fn has_idx(dir: &Path, prefix: &str) -> bool {
    let base = format!("{prefix}-images-idx3-ubyte");
    dir.join(&base).exists() || dir.join(format!("{base}.gz")).exists()
}

fn load_idx(dir: &Path, prefix: &str, manifest: &Manifest) -> Result<Split> {
    let images = read_idx(dir, prefix, "images")?;
    let labels = read_idx(dir, prefix, "labels")?;
    Split::from_idx(images, &labels, manifest.input_len()).with_context(|| format!("{prefix} in {}", dir.display()))
}

/// The test data: `--data` as IDX (its `t10k` files) or an image folder (all of it); optionally
/// the first `limit` samples.
pub fn test_split(paths: &Paths, manifest: &Manifest, limit: Option<usize>) -> Result<Split> {
    let split = if has_idx(&paths.data, "t10k") {
        load_idx(&paths.data, "t10k", manifest)?
    } else if paths.data.is_dir() {
        Split::from_image_folder(&paths.data, manifest)?
    } else {
        bail!(
            "{} is neither a directory of IDX files (t10k-images-idx3-ubyte[.gz]) nor of class folders \
             (for Fashion-MNIST install Debian's dataset-fashion-mnist: `make data`)",
            paths.data.display()
        )
    };
    Ok(match limit {
        Some(n) => split.slice(0..n),
        None => split,
    })
}

/// Where the decision module is fitted: `--calibration-data` (default `--data`) as IDX (its `train`
/// files, by default images 55,000..60,000 of 60,000: never the test files) or an image folder (it
/// must be given: a folder has no train/test split), narrowed to `range` when given.
pub fn calibration_split(
    paths: &Paths,
    manifest: &Manifest,
    data: Option<&Path>,
    range: Option<std::ops::Range<usize>>,
) -> Result<(Split, String)> {
    let dir = data.unwrap_or(&paths.data);
    if has_idx(dir, "train") {
        let split = load_idx(dir, "train", manifest)?;
        let range = match range {
            Some(r) => r,
            None if split.len() == CALIBRATION_START + CALIBRATION_LEN => {
                CALIBRATION_START..CALIBRATION_START + CALIBRATION_LEN
            }
            None => bail!(
                "{} has {} training images: give --calibration-range START..END (images held out from training)",
                dir.display(),
                split.len()
            ),
        };
        if range.end > split.len() || range.is_empty() {
            bail!(
                "--calibration-range {}..{} is not within the {} training images",
                range.start,
                range.end,
                split.len()
            );
        }
        let described = format!("train[{}..{}]", range.start, range.end);
        return Ok((split.slice(range), described));
    }
    if data.is_none() {
        bail!(
            "{} is not IDX data with train files, and an image folder has no train/test split: \
             give --calibration-data DIR (images held out from training and testing)",
            dir.display()
        );
    }
    let split = Split::from_image_folder(dir, manifest)?;
    Ok(match range {
        Some(r) => (split.slice(r.clone()), format!("{}[{}..{}]", dir.display(), r.start, r.end)),
        None => (split, dir.display().to_string()),
    })
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
            model.logits(split.image(i)).map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    out
}

/// `--tiers DEVICE,WORKER,SERVER`: three roles of the manifest.
pub fn parse_tiers(tiers: &str) -> Result<[&str; 3]> {
    let roles: Vec<&str> = tiers.split(',').map(str::trim).collect();
    match roles[..] {
        [device, worker, server] => Ok([device, worker, server]),
        _ => bail!("--tiers takes three model roles of the manifest, device,worker,server (e.g. tiny,mid,large)"),
    }
}

/// Three tiers' answers on `split` for the manifest roles `roles` (device, Worker, server): the
/// device's probabilities at `temperature` (judged by `max_prob`), the Worker's plain softmax (as the Worker decides), the
/// server's labels. `computed` holds the tiny and large models' outputs on `split` already; any
/// other role's model is loaded and run.
pub fn three_tier_samples(
    paths: &Paths,
    set: &ModelSet,
    split: &Split,
    computed: [&[Vec<f32>]; 2],
    roles: [&str; 3],
    temperature: f32,
) -> Result<ThreeTier> {
    let outputs = |role: &str| -> Result<(Vec<Vec<f32>>, OutputKind)> {
        match role {
            "tiny" => Ok((computed[0].to_vec(), set.tiny.output_kind())),
            "large" => Ok((computed[1].to_vec(), set.large.output_kind())),
            _ => {
                let model = load_model(&paths.models, &set.manifest, role)?;
                Ok((logits(&model, split, role)?, model.output_kind()))
            }
        }
    };
    let (d, dk) = outputs(roles[0])?;
    let (w, wk) = outputs(roles[1])?;
    let device_probs = d.iter().map(|l| dk.probabilities(l, temperature)).collect();
    let worker_probs = w.iter().map(|l| wk.probabilities(l, 1.0)).collect();
    let server_pred = outputs(roles[2])?.0.iter().map(|l| argmax(l)).collect();
    Ok(ThreeTier::new(split.labels.clone(), device_probs, &ScoreRule::MaxProb, worker_probs, server_pred)?)
}

/// EE-HI's per-sample facts for `split`: both early-exit heads run on every image (softmax at
/// temperature 1, with a progress bar), next to the large model's `large_logits` and the labels.
pub fn ee_samples(ee: &EarlyExitModel, split: &Split, large_logits: &[Vec<f32>]) -> Result<EeSamples> {
    let bar = progress(split, "early exit");
    let (mut exit, mut fin) = (Vec::with_capacity(split.len()), Vec::with_capacity(split.len()));
    for i in 0..split.len() {
        bar.inc(1);
        let (e, features) = ee.stage1(split.image(i))?;
        exit.push(softmax(&e, 1.0));
        fin.push(softmax(&ee.stage2(&features)?, 1.0));
    }
    bar.finish_and_clear();
    let large_labels: Vec<usize> = large_logits.iter().map(|l| argmax(l)).collect();
    Ok(EeSamples::new(&exit, &fin, &large_labels, &split.labels)?)
}

/// Median native milliseconds of (tiny model, early-exit stage 1, stage 2) over the first `n`
/// images, interleaved, one thread.
/// Median native ms of the split trunk and of the tail (one thread) over the first `n` images.
pub fn split_ms(trunk: &Stage1, tail: &Stage2, data: &Split, n: usize) -> Result<(f64, f64)> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n.min(data.len()) {
        let t0 = std::time::Instant::now();
        let (_, features) = trunk.run(data.image(i))?;
        a.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = std::time::Instant::now();
        tail.run(&features)?;
        b.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    Ok((quantile(&a, 0.5), quantile(&b, 0.5)))
}

pub fn device_ms(tiny: &Model, ee: &EarlyExitModel, split: &Split, n: usize) -> Result<(f64, f64, f64)> {
    let (mut t, mut s1, mut s2) = (Vec::new(), Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let t0 = std::time::Instant::now();
        f()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    for i in 0..n.min(split.len()) {
        let img = split.image(i);
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
