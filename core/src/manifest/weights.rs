//! How a model file stores its weights (`hiedge quantize`), and the accuracy gate the stored
//! weights passed on the user's data before the manifest named them.

use serde::{Deserialize, Serialize};

/// How the large weight tensors of a model file are stored. The runtime computes in f32 either
/// way: the stored tensors are turned back into f32 once, when the model is loaded (tract folds the
/// cast, and int8's per-row scale, into the constant). What changes is the file's size, hence the
/// download, the number of 25 MiB parts, and the memory the loaded file takes before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightStorage {
    /// 32-bit floats, as exported (the default).
    F32,
    /// IEEE half precision: half the bytes; each weight rounded to 11 significant bits.
    F16,
    /// Symmetric 8-bit integers with one f32 scale per row (the weight tensor's first axis:
    /// output channels of a convolution): a quarter of the bytes.
    Int8,
}

impl WeightStorage {
    /// The name used on the command line and in the manifest (`f32`, `f16`, `int8`).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightStorage::F32 => "f32",
            WeightStorage::F16 => "f16",
            WeightStorage::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for WeightStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WeightStorage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(WeightStorage::F32),
            "f16" => Ok(WeightStorage::F16),
            "int8" => Ok(WeightStorage::Int8),
            _ => Err(format!("`{s}` is not a weight storage: f32, f16 or int8")),
        }
    }
}

/// A model entry's stored weights and the gate they passed (`models.<name>.weights`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredWeights {
    /// How the file stores its weights.
    pub storage: WeightStorage,
    /// What the stored weights were measured to keep, against the f32 file, on the user's data.
    pub gate: WeightGate,
}

/// The accuracy gate of stored weights: both files run on the same labelled samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightGate {
    /// The data the gate ran on, as given (a directory of IDX files or class folders).
    pub data: String,
    /// Samples run.
    pub samples: u64,
    /// Top-1 accuracy of the f32 file (0..=1).
    pub accuracy_f32: f64,
    /// Top-1 accuracy of the stored weights (0..=1).
    pub accuracy: f64,
    /// Share of samples on which both give the same top-1 class (0..=1).
    pub agreement: f64,
    /// Largest difference between the two files' probabilities over every sample and class.
    pub max_prob_diff: f64,
    /// The largest accuracy drop, in percentage points, the gate allowed.
    pub max_drop: f64,
}

impl WeightGate {
    /// The accuracy drop, in percentage points (negative when the stored weights did better).
    pub fn drop_points(&self) -> f64 {
        100.0 * (self.accuracy_f32 - self.accuracy)
    }

    /// Whether the drop is within `max_drop` (a drop equal to it passes: accuracies are counts over
    /// samples, so the two can meet exactly, and the subtraction's rounding must not decide).
    pub fn passed(&self) -> bool {
        self.drop_points() <= self.max_drop + 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(accuracy_f32: f64, accuracy: f64, max_drop: f64) -> WeightGate {
        WeightGate {
            data: "d".into(),
            samples: 100,
            accuracy_f32,
            accuracy,
            agreement: 0.99,
            max_prob_diff: 0.01,
            max_drop,
        }
    }

    #[test]
    fn the_gate_passes_a_drop_within_the_limit_and_refuses_one_past_it() {
        assert!(gate(0.90, 0.895, 0.5).passed());
        assert!(gate(0.90, 0.91, 0.0).passed(), "doing better passes any gate");
        assert!(!gate(0.90, 0.894, 0.5).passed());
        assert!((gate(0.90, 0.894, 0.5).drop_points() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn storages_read_and_write_their_names() {
        for s in [WeightStorage::F32, WeightStorage::F16, WeightStorage::Int8] {
            assert_eq!(s.as_str().parse::<WeightStorage>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("q4".parse::<WeightStorage>().unwrap_err().contains("f16"));
    }
}
