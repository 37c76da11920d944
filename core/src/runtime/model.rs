//! A model file as an optimised tract plan: parsed and optimised once, then run many times.
//!
//! Model files are NNEF (tract's own format: a tar of `graph.nnef` and the weights), which
//! `hiedge compile` writes from the ONNX files users hand over ([`onnx_to_nnef`]). Reading NNEF
//! needs only tract's core, which keeps the browser client and the Worker small; builds with the
//! `onnx` feature (the native tools) also read ONNX files directly.

use tract_nnef::prelude::*;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, OutputKind};
use crate::prob::{argmax, softmax};
use crate::runtime::kernels::{optimise, RunState};
use crate::runtime::preprocess::Preprocessor;
use crate::runtime::reader::read;
use crate::runtime::verify::verify;

pub(crate) type Plan = hiedge_kernels::Plan;

/// A classifier ready to run: the optimised plan plus the manifest's preprocessing.
#[derive(Debug, Clone)]
pub struct Model {
    plan: Plan,
    pre: Preprocessor,
    shape: Vec<usize>,
    output: OutputKind,
    num_classes: usize,
    id: String,
    state: RunState,
}

/// One classification by one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index of the most probable class (first one on ties).
    pub label: usize,
    /// Softmax probabilities (after temperature scaling when logits are scaled).
    pub probs: Vec<f32>,
    /// Raw model outputs.
    pub logits: Vec<f32>,
}

impl Prediction {
    /// The prediction for a logit vector: softmax at `temperature`, then its argmax.
    pub fn from_logits(logits: Vec<f32>, temperature: f32) -> Self {
        let probs = softmax(&logits, temperature);
        Prediction { label: argmax(&probs), probs, logits }
    }
}

impl Model {
    /// Loads model `name` of the manifest from its file's bytes (NNEF, or ONNX in builds with the
    /// `onnx` feature), checking them against the manifest's sha256, then parses and optimises it
    /// once.
    pub fn load(manifest: &Manifest, name: &str, bytes: &[u8]) -> Result<Self> {
        let entry = manifest.model(name)?;
        verify(name, bytes, &entry.sha256)?;
        let mut model = Self::from_bytes(bytes, &manifest.input.shape, Preprocessor::new(manifest))?;
        if model.num_classes != manifest.classes.len() {
            return Err(Error::Model(format!(
                "model `{name}` has {} outputs but the manifest lists {} classes",
                model.num_classes,
                manifest.classes.len()
            )));
        }
        model.output = entry.output;
        model.id = entry.id(name);
        Ok(model)
    }

    /// Parses a model file with a fixed f32 input shape, optimises, and makes the plan runnable.
    fn from_bytes(bytes: &[u8], shape: &[usize], pre: Preprocessor) -> Result<Self> {
        let plan = optimised_plan(bytes, shape)?;
        let out_fact = plan.model().output_fact(0)?;
        let num_classes = out_fact
            .shape
            .as_concrete()
            .map(|s| s.iter().product::<usize>())
            .ok_or_else(|| Error::Model("model output shape is not concrete".into()))?;
        Ok(Model {
            plan,
            pre,
            shape: shape.to_vec(),
            output: OutputKind::Logits,
            num_classes,
            id: String::new(),
            state: RunState::default(),
        })
    }

    /// `"<name>@<sha256 prefix>"`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the model outputs logits or probabilities (from the manifest).
    pub fn output_kind(&self) -> OutputKind {
        self.output
    }

    /// Number of classes the model outputs.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Number of raw pixels one sample must have.
    pub fn input_len(&self) -> usize {
        self.pre.input_len()
    }

    /// The preprocessing this model uses.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// Runs the plan on already-normalised input values; returns the raw outputs.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let expected: usize = self.shape.iter().product();
        if input.len() != expected {
            return Err(Error::InputLength { expected, actual: input.len() });
        }
        let mut outputs = self.state.outputs(&self.plan, &self.shape, input)?;
        if outputs.is_empty() {
            return Err(Error::Model("model produced no output".into()));
        }
        Ok(outputs.swap_remove(0))
    }

    /// Raw outputs for raw pixels.
    pub fn logits(&self, pixels: &[u8]) -> Result<Vec<f32>> {
        self.run(&self.pre.run(pixels)?)
    }

    /// Classifies raw pixels: label, probabilities (softmax at `temperature` for logit models)
    /// and raw outputs.
    pub fn predict(&self, pixels: &[u8], temperature: f32) -> Result<Prediction> {
        let logits = self.logits(pixels)?;
        Ok(self.prediction_from_outputs(logits, temperature))
    }

    /// Builds a [`Prediction`] from raw outputs of this model.
    pub fn prediction_from_outputs(&self, logits: Vec<f32>, temperature: f32) -> Prediction {
        let probs = self.output.probabilities(&logits, temperature);
        Prediction { label: argmax(&probs), probs, logits }
    }
}

/// Time spent in one operation of a plan, averaged over profiled runs.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpTime {
    /// Node name in the optimised graph.
    pub node: String,
    /// Operation, as tract names it after optimisation.
    pub op: String,
    /// Mean milliseconds per run.
    pub ms: f64,
}

impl Model {
    /// Runs the model `runs` times on `pixels`, timing every operation of the optimised plan with
    /// `clock` (milliseconds); the slowest first. Preprocessing is not included.
    pub fn profile(&self, pixels: &[u8], runs: usize, clock: &dyn Fn() -> f64) -> Result<Vec<OpTime>> {
        use tract_nnef::tract_core::plan::{eval, SimpleState};
        let input = self.pre.run(pixels)?;
        let runs = runs.max(1);
        let mut totals: Vec<f64> = vec![0.0; self.plan.model().nodes().len()];
        let mut state = SimpleState::new(&self.plan)?;
        for _ in 0..runs {
            let tensor = Tensor::from_shape(&self.shape, &input)?;
            state.run_plan_with_eval(tvec!(tensor.into_tvalue()), |ctx, op_state, node, inputs| {
                let t0 = clock();
                let out = eval(ctx, op_state, node, inputs);
                if let Some(t) = totals.get_mut(node.id) {
                    *t += clock() - t0;
                }
                out
            })?;
        }
        let nodes = self.plan.model().nodes();
        let mut ops: Vec<OpTime> = nodes
            .iter()
            .zip(&totals)
            .map(|(n, t)| OpTime { node: n.name.clone(), op: n.op().name().to_string(), ms: t / runs as f64 })
            .collect();
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(ops)
    }
}

/// The format of a model file, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// An NNEF archive as tract writes it: a tar (`ustar` at byte 257).
    Nnef,
    /// Anything else is taken for an ONNX protobuf (which has no magic number).
    Onnx,
}

impl ModelFormat {
    /// The format of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.get(257..262) == Some(b"ustar".as_slice()) {
            ModelFormat::Nnef
        } else {
            ModelFormat::Onnx
        }
    }
}

/// Parses a model file (see [`ModelFormat`]) with input 0 an f32 tensor of `shape`, optimises it
/// with hiedge's kernels (`hiedge_kernels::optimise`) and makes it runnable.
pub(crate) fn optimised_plan(bytes: &[u8], shape: &[usize]) -> Result<Plan> {
    let model = match ModelFormat::of(bytes) {
        ModelFormat::Nnef => read_nnef(bytes, shape)?,
        ModelFormat::Onnx => read_onnx(bytes, shape)?,
    };
    Ok(optimise(model)?.into_runnable()?)
}

/// An NNEF archive, read by hiedge's reader ([`read`]), as a typed model whose single input is an f32
/// tensor of `shape`.
fn read_nnef(bytes: &[u8], shape: &[usize]) -> Result<TypedModel> {
    let model = read(bytes)?;
    let inputs = model.input_outlets()?;
    if inputs.len() != 1 {
        return Err(Error::Model(format!("the model has {} inputs; hiedge models have one", inputs.len())));
    }
    let fact = model.outlet_fact(inputs[0])?;
    let concrete = fact.shape.as_concrete();
    if fact.datum_type != f32::datum_type() || concrete != Some(shape) {
        return Err(Error::Model(format!(
            "the model's input is {fact:?}, but the manifest gives f32 {shape:?}: compile it again with `hiedge compile`"
        )));
    }
    Ok(model)
}

/// An ONNX file as a typed model whose input 0 is an f32 tensor of `shape`.
#[cfg(feature = "onnx")]
fn read_onnx(bytes: &[u8], shape: &[usize]) -> Result<TypedModel> {
    use tract_onnx::prelude::{Framework as _, InferenceModelExt as _};
    Ok(tract_onnx::onnx().model_for_read(&mut &bytes[..])?.with_input_fact(0, f32::fact(shape).into())?.into_typed()?)
}

/// Without the `onnx` feature (the browser client, the Worker) an ONNX file is refused with the
/// command that compiles it.
#[cfg(not(feature = "onnx"))]
fn read_onnx(_bytes: &[u8], _shape: &[usize]) -> Result<TypedModel> {
    Err(Error::UnsupportedModelFormat(
        "this is not an NNEF archive (an ONNX file?): this build of hiedge reads model files as NNEF; \
         `hiedge compile --models <set dir>` writes them from the ONNX files and updates the manifest"
            .into(),
    ))
}

/// Relative tolerance within which a compiled NNEF model must reproduce its ONNX source's outputs
/// (`|a - b| <= TOL * max(1, |a|)`): both run the same tract operators, so only the order of float
/// operations may differ.
#[cfg(feature = "onnx")]
pub const COMPILE_TOLERANCE: f32 = 1e-4;

/// Compiles an ONNX file to the NNEF archive the runtime loads: input 0 fixed to an f32 tensor of
/// `shape`, the graph decluttered to tract's core operators, written as an uncompressed tar with
/// fixed timestamps. Refused when the graph needs an operator that only the ONNX parser carries
/// (the browser and Worker builds could not load it). The archive is checked before it is
/// returned: loaded the way the browser loads it, it must give the ONNX model's outputs within
/// [`COMPILE_TOLERANCE`] on seeded pseudo-random inputs.
#[cfg(feature = "onnx")]
pub fn onnx_to_nnef(onnx: &[u8], shape: &[usize]) -> Result<Vec<u8>> {
    onnx_to_nnef_stored(onnx, shape, crate::manifest::WeightStorage::F32)
}

/// [`onnx_to_nnef`] with the weights stored as `storage` says
/// ([`store_weights`](crate::runtime::stored_weights::store_weights)). Stored as f16 or int8, the
/// archive no longer reproduces the ONNX outputs within [`COMPILE_TOLERANCE`] (that is the point):
/// it is checked to load as the browser loads it and to give finite outputs of the same sizes;
/// what it keeps of the model's accuracy is `hiedge quantize`'s gate to measure.
#[cfg(feature = "onnx")]
pub fn onnx_to_nnef_stored(onnx: &[u8], shape: &[usize], storage: crate::manifest::WeightStorage) -> Result<Vec<u8>> {
    let model = read_onnx(onnx, shape)?.into_decluttered()?;
    let mut stored = model.clone();
    crate::runtime::stored_weights::store_weights(&mut stored, storage)?;
    let bytes = crate::runtime::stored_weights::writer()
        .write_to_tar_with_config(&stored, Vec::new(), false, true)
        .map_err(|e| {
            Error::UnsupportedModelFormat(format!(
                "the ONNX graph cannot be written as NNEF with tract's core operators: {e:#}"
            ))
        })?;
    drop(stored);
    // The ONNX model as a native tool runs it, from the graph parsed above, against the archive
    // as the browser loads it.
    let (from_onnx, from_nnef): (Plan, Plan) =
        (model.into_optimized()?.into_runnable()?, optimised_plan(&bytes, shape)?);
    let exact = storage == crate::manifest::WeightStorage::F32;
    let len: usize = shape.iter().product();
    let mut seed = 0x9e37_79b9_u32;
    for _ in 0..3 {
        let input = seeded_values(len, &mut seed);
        let (want, got) = (run_plan(&from_onnx, shape, &input)?, run_plan(&from_nnef, shape, &input)?);
        if want.len() != got.len() {
            return Err(Error::Model(format!("compiled: {} outputs, the ONNX model has {}", got.len(), want.len())));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w.len() != g.len() {
                return Err(Error::Model(format!(
                    "compiled model's output {i} has {} values, the ONNX model's {}",
                    g.len(),
                    w.len()
                )));
            }
            if let Some(bad) = g.iter().find(|v| !v.is_finite()) {
                return Err(Error::Model(format!(
                    "compiled model's output {i} holds {bad} (weights stored as {storage})"
                )));
            }
            let off = w.iter().zip(g).find(|(a, b)| (*a - *b).abs() > COMPILE_TOLERANCE * a.abs().max(1.0));
            if exact && off.is_some() {
                return Err(Error::Model(format!(
                    "compiled model's output {i} differs from the ONNX model's beyond {COMPILE_TOLERANCE} (relative): {off:?}"
                )));
            }
        }
    }
    Ok(bytes)
}

/// The reference the compile checks and tests run plans against, and their seeded inputs.
#[cfg(any(test, feature = "onnx"))]
pub(crate) use hiedge_kernels::{run_plan, seeded_values};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "onnx")]
    fn bytes_that_are_not_onnx_give_a_tract_error_with_its_source() {
        let err = optimised_plan(b"not an onnx model", &[1, 1, 2, 2]).unwrap_err();
        assert!(matches!(err, Error::Tract(_)), "{err:?}");
        assert!(std::error::Error::source(&err).is_some(), "the tract error is kept as the source");
    }

    #[cfg(feature = "onnx")]
    #[test]
    fn a_compiled_model_loads_as_nnef_and_classifies_real_images_as_its_onnx_source() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist");
        let onnx = std::fs::read(dir.join("tiny.onnx")).unwrap();
        let shape = [1, 1, 28, 28];
        let nnef = onnx_to_nnef(&onnx, &shape).unwrap();
        assert_eq!(ModelFormat::of(&nnef), ModelFormat::Nnef);
        assert_eq!(ModelFormat::of(&onnx), ModelFormat::Onnx);
        let images = std::fs::read(dir.join("fixture/images.u8")).unwrap();
        let (a, b) = (optimised_plan(&onnx, &shape).unwrap(), optimised_plan(&nnef, &shape).unwrap());
        for image in images.chunks(784).take(16) {
            let x: Vec<f32> = image.iter().map(|&p| p as f32 / 255.0).collect();
            let (want, got) = (run_plan(&a, &shape, &x).unwrap(), run_plan(&b, &shape, &x).unwrap());
            for (w, g) in want[0].iter().zip(&got[0]) {
                assert!((w - g).abs() <= COMPILE_TOLERANCE * w.abs().max(1.0), "{want:?} vs {got:?}");
            }
        }
        let err = optimised_plan(&nnef, &[1, 1, 32, 32]).unwrap_err().to_string();
        assert!(err.contains("the manifest gives f32 [1, 1, 32, 32]"), "{err}");
    }

    #[test]
    fn a_kept_run_state_carries_nothing_from_one_run_to_the_next() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist");
        let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        let file = &manifest.model("tiny").unwrap().file;
        let model = Model::load(&manifest, "tiny", &std::fs::read(dir.join(file)).unwrap()).unwrap();
        let images = std::fs::read(dir.join("fixture/images.u8")).unwrap();
        let (a, b) = (&images[..784], &images[784..2 * 784]);
        // A fresh state for each image (tract's own per-call run) is the reference.
        let fresh = |px: &[u8]| run_plan(&model.plan, &model.shape, &model.pre.run(px).unwrap()).unwrap().remove(0);
        let first = model.logits(a).unwrap();
        assert!(model.state.is_kept(), "the classifier's state is kept");
        let (second, third) = (model.logits(b).unwrap(), model.logits(a).unwrap());
        let copy = model.clone();
        assert!(!copy.state.is_kept(), "a clone starts with its own state");
        assert_eq!((first.clone(), second, third), (fresh(a), fresh(b), first));
        assert_eq!(copy.logits(b).unwrap(), fresh(b));
    }

    #[test]
    fn the_tiny_models_pools_and_paddings_run_in_hiedges_kernels() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist");
        let plan = optimised_plan(&std::fs::read(dir.join("tiny.nnef.tar")).unwrap(), &[1, 1, 28, 28]).unwrap();
        let names: Vec<String> = plan.model().nodes().iter().map(|n| n.op().name().to_string()).collect();
        let count = |name: &str| names.iter().filter(|n| *n == name).count();
        assert_eq!((count("HiedgeMaxPool2x2"), count("OptMaxPool")), (2, 0), "{names:?}");
        // Both convolutions pad their input (tract's `Pad` before its lazy im2col).
        assert_eq!((count("HiedgeConstantPad"), count("Pad")), (2, 0), "{names:?}");
        // Its 3x3, stride-2 average pool.
        assert_eq!((count("HiedgeSumPool"), count("OptSumPool")), (1, 0), "{names:?}");
    }

    /// What the browser and the Worker run (`optimise` puts the direct convolution in only in wasm
    /// builds) against tract's plan, on the real-size set: the MobileNetV3-style model's 3 -> 16
    /// channel stem and the ViT-style model's 3 -> 48 channel patch embedding are swapped, and the
    /// outputs stay within rounding of tract's.
    #[test]
    fn the_direct_convolution_takes_the_real_size_stem_and_keeps_the_outputs() {
        use crate::runtime::kernels::optimise_with;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/zoo-rgb");
        let shape = [1, 3, 224, 224];
        let input = seeded_values(shape.iter().product(), &mut 7);
        for (name, swaps) in [("tiny", 1), ("large", 1)] {
            let model = read(&std::fs::read(dir.join(format!("{name}.nnef.tar"))).unwrap()).unwrap();
            let tract: Plan = model.clone().into_optimized().unwrap().into_runnable().unwrap();
            let direct: Plan = optimise_with(model, true).unwrap().into_runnable().unwrap();
            let names: Vec<String> = direct.model().nodes().iter().map(|n| n.op().name().to_string()).collect();
            assert_eq!(names.iter().filter(|n| *n == "HiedgeDirectConv").count(), swaps, "{name}: {names:?}");
            let (want, got) = (run_plan(&tract, &shape, &input).unwrap(), run_plan(&direct, &shape, &input).unwrap());
            for (w, g) in want[0].iter().zip(&got[0]) {
                assert!((w - g).abs() <= 1e-4 * w.abs().max(1.0), "{name}: tract {w}, with the direct convolution {g}");
            }
        }
    }

    #[test]
    fn prediction_from_logits_is_softmax_at_the_temperature() {
        let p = Prediction::from_logits(vec![0.0, 2.0], 2.0);
        assert_eq!(p.label, 1);
        let e = (1.0f32).exp();
        assert!((p.probs[1] - e / (1.0 + e)).abs() < 1e-6, "{:?}", p.probs);
    }
}
