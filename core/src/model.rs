//! An ONNX model as an optimised tract plan: parsed and optimised once, then run many times.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::manifest::OutputKind;
use crate::{Error, Manifest, Preprocessor, Result};

pub(crate) type Plan = Arc<TypedRunnableModel>;

/// A classifier ready to run: the optimised plan plus the manifest's preprocessing.
#[derive(Debug, Clone)]
pub struct Model {
    plan: Plan,
    pre: Preprocessor,
    shape: Vec<usize>,
    output: OutputKind,
    num_classes: usize,
    id: String,
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

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// Loads model `name` of the manifest from its ONNX bytes, checking them against the manifest's
    /// sha256, then parses and optimises it once.
    pub fn load(manifest: &Manifest, name: &str, onnx: &[u8]) -> Result<Self> {
        let entry = manifest.model(name)?;
        let actual = sha256_hex(onnx);
        if actual != entry.sha256 {
            return Err(Error::ModelHashMismatch { name: name.into(), expected: entry.sha256.clone(), actual });
        }
        let mut model = Self::from_onnx(onnx, &manifest.input.shape, Preprocessor::new(manifest))?;
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

    /// Parses ONNX bytes with a fixed f32 input shape, optimises, and makes the plan runnable.
    fn from_onnx(onnx: &[u8], shape: &[usize], pre: Preprocessor) -> Result<Self> {
        let plan = optimised_plan(onnx, shape)?;
        let out_fact = plan.model().output_fact(0)?;
        let num_classes = out_fact
            .shape
            .as_concrete()
            .map(|s| s.iter().product::<usize>())
            .ok_or_else(|| Error::Model("model output shape is not concrete".into()))?;
        Ok(Model { plan, pre, shape: shape.to_vec(), output: OutputKind::Logits, num_classes, id: String::new() })
    }

    /// `"<name>@<sha256 prefix>"`.
    pub fn id(&self) -> &str {
        &self.id
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
        let mut outputs = run_plan(&self.plan, &self.shape, input)?;
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
        let probs = match self.output {
            OutputKind::Logits => softmax(&logits, temperature),
            OutputKind::Probabilities => logits.clone(),
        };
        Prediction { label: argmax(&probs), probs, logits }
    }
}

/// Time spent in one operation of a plan, averaged over profiled runs.
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
        use tract_onnx::tract_core::plan::{eval, SimpleState};
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

/// Parses ONNX bytes with input 0 fixed to an f32 tensor of `shape`, optimises, makes it runnable.
pub(crate) fn optimised_plan(onnx: &[u8], shape: &[usize]) -> Result<Plan> {
    Ok(tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?)
}

/// Runs a plan on one f32 input of `shape`; every output as a flat `Vec<f32>`.
pub(crate) fn run_plan(plan: &Plan, shape: &[usize], input: &[f32]) -> Result<Vec<Vec<f32>>> {
    let tensor = Tensor::from_shape(shape, input)?;
    let outputs = plan.run(tvec!(tensor.into_tvalue()))?;
    outputs.iter().map(|o| Ok(o.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())).collect()
}

/// Numerically stable softmax of `logits / temperature`.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = if temperature.is_finite() && temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Index of the largest value; the first one on ties; 0 for an empty slice.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_temperature_flattens() {
        let p = softmax(&[1.0, 2.0, 3.0], 1.0);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let hot = softmax(&[1.0, 2.0, 3.0], 4.0);
        assert!(hot[2] < p[2]);
        let big = softmax(&[1000.0, 0.0], 1.0);
        assert_eq!(big, vec![1.0, 0.0]);
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
