//! The committed parity fixture: the first 1,000 Fashion-MNIST test images with their labels and
//! both models' reference logits from onnxruntime (see models/train/train.py).
//!
//! Files in `models/fashion-mnist/fixture/`: `images.u8` (n x 784 raw pixels), `labels.u8` (n bytes),
//! `tiny_logits.f32` and `large_logits.f32` (n x classes little-endian f32).

use crate::error::{Error, Result};

/// Images, labels and reference logits.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Raw pixels, `n * input_len` bytes.
    pub images: Vec<u8>,
    /// True labels.
    pub labels: Vec<u8>,
    /// Reference logits per model name, `n * classes` values each.
    pub logits: Vec<(String, Vec<f32>)>,
    input_len: usize,
    classes: usize,
}

/// Little-endian f32s from bytes.
pub fn f32s_from_le_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::InvalidData(format!("{} bytes is not a whole number of f32s", bytes.len())));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

impl Fixture {
    /// Builds a fixture from file contents, checking that all sizes agree.
    pub fn from_parts(
        images: Vec<u8>,
        labels: Vec<u8>,
        logits: Vec<(String, Vec<u8>)>,
        input_len: usize,
        classes: usize,
    ) -> Result<Self> {
        let n = labels.len();
        if images.len() != n * input_len {
            return Err(Error::InvalidData(format!(
                "fixture has {n} labels but {} image bytes (expected {})",
                images.len(),
                n * input_len
            )));
        }
        let logits = logits
            .into_iter()
            .map(|(name, bytes)| {
                let v = f32s_from_le_bytes(&bytes)?;
                if v.len() != n * classes {
                    return Err(Error::InvalidData(format!(
                        "fixture logits for `{name}` have {} values, expected {}",
                        v.len(),
                        n * classes
                    )));
                }
                Ok((name, v))
            })
            .collect::<Result<_>>()?;
        Ok(Fixture { images, labels, logits, input_len, classes })
    }

    /// Reads `images.u8`, `labels.u8` and `<model>_logits.f32` for each model from `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path, models: &[&str], input_len: usize, classes: usize) -> Result<Self> {
        let logits = models
            .iter()
            .map(|m| Ok((m.to_string(), std::fs::read(dir.join(format!("{m}_logits.f32")))?)))
            .collect::<Result<_>>()?;
        Self::from_parts(
            std::fs::read(dir.join("images.u8"))?,
            std::fs::read(dir.join("labels.u8"))?,
            logits,
            input_len,
            classes,
        )
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the fixture has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of sample `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.input_len..(i + 1) * self.input_len]
    }

    /// Reference logits of `model` for sample `i`.
    pub fn reference_logits(&self, model: &str, i: usize) -> Option<&[f32]> {
        let (_, v) = self.logits.iter().find(|(m, _)| m == model)?;
        v.get(i * self.classes..(i + 1) * self.classes)
    }
}
