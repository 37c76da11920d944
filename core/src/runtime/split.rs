//! A network split across device and edge (MDI-Exit, Colocrese et al. 2024): the device runs the
//! **trunk** (raw pixels to an exit head's logits and intermediate features) and either answers with
//! the exit head or sends the features; the Worker runs the **tail** (features to the final
//! logits). The two halves are [`Stage1`] and [`Stage2`], loaded from the manifest's `split` entry.
//!
//! Features travel as [`QuantizedFeatures`]: u8 with an affine per-tensor scale,
//! `f = offset + q * scale` (8 header bytes + one byte per value; Fashion-MNIST's 16x7x7 features are
//! 792 bytes against 784 for the raw image).
//!
//! ```
//! use hiedge_core::runtime::{split::QuantizedFeatures, Features};
//! let f = Features::new(vec![0.0, 0.5, 1.0, 2.0]);
//! let q = QuantizedFeatures::quantize(&f);
//! let wire = q.to_bytes();
//! assert_eq!(wire.len(), 8 + 4);
//! let back = QuantizedFeatures::from_bytes(&wire, 4).unwrap().dequantize();
//! for (a, b) in f.as_slice().iter().zip(back.as_slice()) {
//!     assert!((a - b).abs() <= 2.0 / 255.0 / 2.0 + 1e-6);
//! }
//! ```

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SplitEntry};
use crate::protocol::{self, ApiError};
use crate::runtime::early_exit::{Features, Stage1, Stage2};

fn entry(manifest: &Manifest) -> Result<&SplitEntry> {
    manifest.split.as_ref().ok_or_else(|| Error::UnknownModel {
        name: "split".into(),
        available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

/// The manifest's split trunk (device side), from its model file's bytes (sha256 checked).
pub fn load_trunk(manifest: &Manifest, bytes: &[u8]) -> Result<Stage1> {
    let e = entry(manifest)?;
    Stage1::load(manifest, "split.trunk", bytes, &e.trunk.sha256, &e.feature_shape)
}

/// The manifest's split tail (edge side), from its model file's bytes (sha256 checked).
pub fn load_tail(manifest: &Manifest, bytes: &[u8]) -> Result<Stage2> {
    let e = entry(manifest)?;
    Stage2::load("split.tail", bytes, &e.tail.sha256, &e.feature_shape, manifest.classes.len())
}

/// Features quantised to u8: `f = offset + q * scale`, per tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedFeatures {
    /// The value `q = 0` stands for (the smallest feature).
    pub offset: f32,
    /// The step between two `q` values (`(max - min) / 255`; 1 when all features are equal).
    pub scale: f32,
    /// One byte per feature.
    pub values: Vec<u8>,
}

impl QuantizedFeatures {
    /// Quantises with the tensor's own range: each value moves by at most `scale / 2`. Non-finite
    /// values (a broken trunk) become the offset.
    pub fn quantize(features: &Features) -> Self {
        let finite = features.as_slice().iter().copied().filter(|v| v.is_finite());
        let (min, max) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (offset, scale) = match (min.is_finite(), max > min) {
            // A range so narrow that its step underflows to 0 (subnormal features) takes a step
            // of 1: every value becomes the offset, off by less than the range.
            (true, true) => (min, Some((max - min) / 255.0).filter(|s| *s > 0.0).unwrap_or(1.0)),
            // All equal: q = 0 stands for that value.
            (true, false) => (min, 1.0),
            // No finite value at all.
            (false, _) => (0.0, 1.0),
        };
        let values = features
            .as_slice()
            .iter()
            .map(|&v| if v.is_finite() { ((v - offset) / scale).round().clamp(0.0, 255.0) as u8 } else { 0 })
            .collect();
        QuantizedFeatures { offset, scale, values }
    }

    /// Back to floats.
    pub fn dequantize(&self) -> Features {
        Features::new(self.values.iter().map(|&q| self.offset + q as f32 * self.scale).collect())
    }

    /// The wire form: `offset` and `scale` as little-endian f32, then the values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(protocol::FEATURES_HEADER_LEN + self.values.len());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.values);
        out
    }

    /// Reads the wire form of `feature_len` features: 400 on a wrong length or a header that is not
    /// two finite numbers with a positive scale.
    pub fn from_bytes(body: &[u8], feature_len: usize) -> std::result::Result<Self, ApiError> {
        let (offset, scale) = protocol::check_features_body(body, feature_len, usize::MAX)?;
        Ok(QuantizedFeatures { offset, scale, values: body[protocol::FEATURES_HEADER_LEN..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_error_is_at_most_half_a_step() {
        let values: Vec<f32> = (0..784).map(|i| ((i * 37) % 101) as f32 * 0.173 - 3.0).collect();
        let f = Features::new(values.clone());
        let q = QuantizedFeatures::quantize(&f);
        let back = q.dequantize();
        for (a, b) in values.iter().zip(back.as_slice()) {
            assert!((a - b).abs() <= q.scale / 2.0 + 1e-5, "{a} vs {b}, scale {}", q.scale);
        }
        assert_eq!(*q.values.iter().max().unwrap(), 255);
        assert_eq!(*q.values.iter().min().unwrap(), 0);
    }

    #[test]
    fn constant_and_broken_features_still_make_a_valid_body() {
        let subnormal = vec![4.5e-44, 0.0, -1e-45];
        for values in
            [vec![0.0; 10], vec![2.5; 10], vec![f32::NAN, 1.0, f32::INFINITY, 3.0], vec![f32::NAN; 3], subnormal]
        {
            let n = values.len();
            let q = QuantizedFeatures::quantize(&Features::new(values.clone()));
            let wire = q.to_bytes();
            let read = QuantizedFeatures::from_bytes(&wire, n).unwrap_or_else(|e| panic!("{values:?}: {e}"));
            assert_eq!(read, q);
            assert!(read.dequantize().as_slice().iter().all(|v| v.is_finite()));
        }
        let q = QuantizedFeatures::quantize(&Features::new(vec![2.5; 4]));
        assert_eq!(q.dequantize().as_slice(), &[2.5; 4]);
    }
}
