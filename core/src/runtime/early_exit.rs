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
//! let ee = EarlyExitModel::load(&manifest, &std::fs::read(dir.join("ee_stage1.onnx"))?,
//!                               &std::fs::read(dir.join("ee_stage2.onnx"))?)?;
//! let (exit_logits, features) = ee.stage1(&[0u8; 784])?;
//! let final_logits = ee.stage2(&features)?; // only when the exit head is not sure enough
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::runtime::model::{optimised_plan, run_plan, Plan};
use crate::runtime::preprocess::Preprocessor;
use crate::runtime::verify::verify;

/// The intermediate features stage 1 hands to stage 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Features(Vec<f32>);

impl Features {
    /// The values, in the manifest's `feature_shape`.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// Both stages of the manifest's early-exit model, ready to run.
#[derive(Debug, Clone)]
pub struct EarlyExitModel {
    stage1: Plan,
    stage2: Plan,
    pre: Preprocessor,
    input_shape: Vec<usize>,
    feature_shape: Vec<usize>,
}

impl EarlyExitModel {
    /// Loads the manifest's `early_exit` stages from their ONNX bytes (checking both sha256s).
    pub fn load(manifest: &Manifest, stage1: &[u8], stage2: &[u8]) -> Result<Self> {
        let entry = manifest.early_exit.as_ref().ok_or_else(|| Error::UnknownModel {
            name: "early_exit".into(),
            available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        verify("early_exit.stage1", stage1, &entry.stage1.sha256)?;
        verify("early_exit.stage2", stage2, &entry.stage2.sha256)?;
        let model = EarlyExitModel {
            stage1: optimised_plan(stage1, &manifest.input.shape)?,
            stage2: optimised_plan(stage2, &entry.feature_shape)?,
            pre: Preprocessor::new(manifest),
            input_shape: manifest.input.shape.clone(),
            feature_shape: entry.feature_shape.clone(),
        };
        let probe = model.stage1(&vec![0; model.pre.input_len()])?;
        let classes = manifest.classes.len();
        if probe.0.len() != classes || model.stage2(&probe.1)?.len() != classes {
            return Err(Error::Model(format!("the early-exit stages do not both output {classes} class logits")));
        }
        Ok(model)
    }

    /// Raw pixels -> (exit-head logits, features for stage 2).
    pub fn stage1(&self, pixels: &[u8]) -> Result<(Vec<f32>, Features)> {
        self.stage1_values(&self.pre.run(pixels)?)
    }

    /// The preprocessing stage 1 expects.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// Already-normalised input values -> (exit-head logits, features for stage 2).
    pub fn stage1_values(&self, input: &[f32]) -> Result<(Vec<f32>, Features)> {
        let mut out = run_plan(&self.stage1, &self.input_shape, input)?;
        if out.len() != 2 {
            return Err(Error::Model(format!("early-exit stage 1 must have 2 outputs, has {}", out.len())));
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

    /// Features -> final logits.
    pub fn stage2(&self, features: &Features) -> Result<Vec<f32>> {
        let mut out = run_plan(&self.stage2, &self.feature_shape, &features.0)?;
        if out.is_empty() {
            return Err(Error::Model("early-exit stage 2 produced no output".into()));
        }
        Ok(out.swap_remove(0))
    }

    /// Number of raw pixels one sample must have.
    pub fn input_len(&self) -> usize {
        self.pre.input_len()
    }
}
