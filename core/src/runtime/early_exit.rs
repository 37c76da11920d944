//! An early-exit local model (for EE-HI): stage 1 maps the image to the exit head's logits and the
//! intermediate features; stage 2 maps the features to the final logits. Both stages are parsed and
//! optimised once, like [`Model`](crate::Model). Which stage runs is the policy's call
//! ([`EeHiPolicy`](crate::policy::EeHiPolicy)); this module only runs them.
//!
//! ```no_run
//! use hiedge_core::{runtime::EarlyExitModel, Manifest};
//! # fn main() -> Result<(), hiedge_core::Error> {
//! let dir = std::path::Path::new("models/fashion-mnist");
//! let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
//! let ee = EarlyExitModel::load(&manifest, &std::fs::read(dir.join("ee_stage1.nnef.tar"))?,
//!                               &std::fs::read(dir.join("ee_stage2.nnef.tar"))?)?;
//! let (exit_logits, features) = ee.stage1(&[0u8; 784])?;
//! let final_logits = ee.stage2(&features)?; // only when the exit head is not sure enough
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::runtime::kernels::RunState;
use crate::runtime::model::{optimised_plan, Plan};
use crate::runtime::preprocess::Preprocessor;
use crate::runtime::verify::verify;

/// The intermediate features stage 1 hands to stage 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Features(Vec<f32>);

impl Features {
    /// Features from their values (in the manifest's `feature_shape`, row-major).
    pub fn new(values: Vec<f32>) -> Self {
        Features(values)
    }

    /// The values, in the manifest's `feature_shape`.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Stage 1 of a two-stage model (an early-exit model's first stage, a split model's trunk): raw
/// pixels to the exit head's logits and the features for stage 2.
#[derive(Debug, Clone)]
pub struct Stage1 {
    plan: Plan,
    state: RunState,
    pre: Preprocessor,
    input_shape: Vec<usize>,
    feature_shape: Vec<usize>,
}

impl Stage1 {
    /// Parses and optimises stage 1 of `manifest`'s two-stage model `name` (for errors), after
    /// checking the bytes against `sha256`; checks that it outputs `classes` logits and features of
    /// `feature_shape`.
    pub fn load(manifest: &Manifest, name: &str, bytes: &[u8], sha256: &str, feature_shape: &[usize]) -> Result<Self> {
        verify(name, bytes, sha256)?;
        let stage = Stage1 {
            plan: optimised_plan(bytes, &manifest.input.shape)?,
            state: RunState::default(),
            pre: Preprocessor::new(manifest),
            input_shape: manifest.input.shape.clone(),
            feature_shape: feature_shape.to_vec(),
        };
        let probe = stage.run(&vec![0; stage.pre.input_len()])?;
        if probe.0.len() != manifest.classes.len() {
            return Err(Error::Model(format!(
                "{name}: the exit head outputs {} values, the manifest has {} classes",
                probe.0.len(),
                manifest.classes.len()
            )));
        }
        Ok(stage)
    }

    /// Raw pixels -> (exit-head logits, features for stage 2).
    pub fn run(&self, pixels: &[u8]) -> Result<(Vec<f32>, Features)> {
        self.run_values(&self.pre.run(pixels)?)
    }

    /// Already-normalised input values -> (exit-head logits, features for stage 2).
    pub fn run_values(&self, input: &[f32]) -> Result<(Vec<f32>, Features)> {
        let mut out = self.state.outputs(&self.plan, &self.input_shape, input)?;
        if out.len() != 2 {
            return Err(Error::Model(format!(
                "stage 1 must have 2 outputs (exit logits, features), has {}",
                out.len()
            )));
        }
        let features = Features(out.swap_remove(1));
        let expected: usize = self.feature_shape.iter().product();
        if features.0.len() != expected {
            return Err(Error::Model(format!(
                "stage 1 features have {} values, expected {expected}",
                features.0.len()
            )));
        }
        Ok((out.swap_remove(0), features))
    }

    /// The preprocessing stage 1 expects.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// Number of raw pixels one sample must have.
    pub fn input_len(&self) -> usize {
        self.pre.input_len()
    }

    /// Number of feature values it hands on.
    pub fn feature_len(&self) -> usize {
        self.feature_shape.iter().product()
    }
}

/// Stage 2 of a two-stage model (an early-exit model's second stage, a split model's tail):
/// features to the final logits.
#[derive(Debug, Clone)]
pub struct Stage2 {
    plan: Plan,
    state: RunState,
    feature_shape: Vec<usize>,
}

impl Stage2 {
    /// Parses and optimises stage 2 `name` (for errors) for features of `feature_shape`, after
    /// checking the bytes against `sha256`; checks that it outputs `classes` logits.
    pub fn load(name: &str, bytes: &[u8], sha256: &str, feature_shape: &[usize], classes: usize) -> Result<Self> {
        verify(name, bytes, sha256)?;
        let stage = Stage2 {
            plan: optimised_plan(bytes, feature_shape)?,
            state: RunState::default(),
            feature_shape: feature_shape.to_vec(),
        };
        let probe = stage.run(&Features(vec![0.0; stage.feature_len()]))?;
        if probe.len() != classes {
            return Err(Error::Model(format!(
                "{name} outputs {} values, the manifest has {classes} classes",
                probe.len()
            )));
        }
        Ok(stage)
    }

    /// Features -> final logits.
    pub fn run(&self, features: &Features) -> Result<Vec<f32>> {
        if features.0.len() != self.feature_len() {
            return Err(Error::InputLength { expected: self.feature_len(), actual: features.0.len() });
        }
        let mut out = self.state.outputs(&self.plan, &self.feature_shape, &features.0)?;
        if out.is_empty() {
            return Err(Error::Model("stage 2 produced no output".into()));
        }
        Ok(out.swap_remove(0))
    }

    /// Number of feature values it takes.
    pub fn feature_len(&self) -> usize {
        self.feature_shape.iter().product()
    }
}

/// Both stages of the manifest's early-exit model, ready to run.
#[derive(Debug, Clone)]
pub struct EarlyExitModel {
    stage1: Stage1,
    stage2: Stage2,
}

impl EarlyExitModel {
    /// Loads the manifest's `early_exit` stages from their model files' bytes (checking both sha256s).
    pub fn load(manifest: &Manifest, stage1: &[u8], stage2: &[u8]) -> Result<Self> {
        let entry = manifest.early_exit.as_ref().ok_or_else(|| Error::UnknownModel {
            name: "early_exit".into(),
            available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let classes = manifest.classes.len();
        let s1 = Stage1::load(manifest, "early_exit.stage1", stage1, &entry.stage1.sha256, &entry.feature_shape);
        let s2 = Stage2::load("early_exit.stage2", stage2, &entry.stage2.sha256, &entry.feature_shape, classes);
        Ok(EarlyExitModel { stage1: s1?, stage2: s2? })
    }

    /// Raw pixels -> (exit-head logits, features for stage 2).
    pub fn stage1(&self, pixels: &[u8]) -> Result<(Vec<f32>, Features)> {
        self.stage1.run(pixels)
    }

    /// The preprocessing stage 1 expects.
    pub fn preprocessor(&self) -> &Preprocessor {
        self.stage1.preprocessor()
    }

    /// Already-normalised input values -> (exit-head logits, features for stage 2).
    pub fn stage1_values(&self, input: &[f32]) -> Result<(Vec<f32>, Features)> {
        self.stage1.run_values(input)
    }

    /// Features -> final logits.
    pub fn stage2(&self, features: &Features) -> Result<Vec<f32>> {
        self.stage2.run(features)
    }

    /// Number of raw pixels one sample must have.
    pub fn input_len(&self) -> usize {
        self.stage1.input_len()
    }
}
