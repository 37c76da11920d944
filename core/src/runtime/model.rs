//! An ONNX model as an optimised tract plan: parsed and optimised once, then run many times.

use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, OutputKind};
use crate::prob::{argmax, softmax};
use crate::runtime::preprocess::Preprocessor;
use crate::runtime::verify::verify;

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

impl Prediction {
    /// The prediction for a logit vector: softmax at `temperature`, then its argmax.
    pub fn from_logits(logits: Vec<f32>, temperature: f32) -> Self {
        let probs = softmax(&logits, temperature);
        Prediction { label: argmax(&probs), probs, logits }
    }
}

impl Model {
    /// Loads model `name` of the manifest from its ONNX bytes, checking them against the manifest's
    /// sha256, then parses and optimises it once.
    pub fn load(manifest: &Manifest, name: &str, onnx: &[u8]) -> Result<Self> {
        let entry = manifest.model(name)?;
        verify(name, onnx, &entry.sha256)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_onnx_give_a_tract_error_with_its_source() {
        let err = optimised_plan(b"not an onnx model", &[1, 1, 2, 2]).unwrap_err();
        assert!(matches!(err, Error::Tract(_)), "{err:?}");
        assert!(std::error::Error::source(&err).is_some(), "the tract error is kept as the source");
    }

    #[test]
    fn prediction_from_logits_is_softmax_at_the_temperature() {
        let p = Prediction::from_logits(vec![0.0, 2.0], 2.0);
        assert_eq!(p.label, 1);
        let e = (1.0f32).exp();
        assert!((p.probs[1] - e / (1.0 + e)).abs() < 1e-6, "{:?}", p.probs);
    }
}
