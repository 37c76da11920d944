//! Raw `u8` pixels to the model's normalised `f32` input.

use crate::error::{Error, Result};
#[cfg(test)]
use crate::manifest::PerChannel;
use crate::manifest::{InputSpec, Layout, Manifest, Normalize};

/// Turns one sample of raw pixels into the model's input values, as the manifest describes.
///
/// Pixels always arrive interleaved, row-major, channel last (`H x W x C`, the order of image
/// data); for an `NCHW` model they are reordered to planes.
///
/// ```
/// # let manifest = hiedge_core::Manifest::from_json(r#"{"schema_version":1,"name":"d",
/// #   "input":{"shape":[1,1,1,2],"layout":"NCHW","dtype":"u8","normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5}},
/// #   "classes":["a","b"],"models":{"t":{"file":"t.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
/// #   "input_name":"x","output":"logits","test_accuracy":0.5}}}"#).unwrap();
/// let pre = hiedge_core::Preprocessor::new(&manifest);
/// assert_eq!(pre.run(&[0, 255]).unwrap(), vec![-1.0, 1.0]);
/// assert!(pre.run(&[0]).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Preprocessor {
    norm: Normalize,
    layout: Layout,
    chw: (usize, usize, usize),
}

impl Preprocessor {
    /// A preprocessor for the manifest's input contract.
    pub fn new(manifest: &Manifest) -> Self {
        Self::from_spec(&manifest.input)
    }

    fn from_spec(spec: &InputSpec) -> Self {
        Preprocessor { norm: spec.normalize.clone(), layout: spec.layout, chw: spec.chw() }
    }

    /// Number of pixels (bytes) one sample must have.
    pub fn input_len(&self) -> usize {
        self.chw.0 * self.chw.1 * self.chw.2
    }

    /// Checks the length only: `Err(InputLength)` naming expected and actual lengths.
    pub fn check_len(&self, len: usize) -> Result<()> {
        if len == self.input_len() {
            Ok(())
        } else {
            Err(Error::InputLength { expected: self.input_len(), actual: len })
        }
    }

    /// Normalised input values in the model's layout.
    pub fn run(&self, pixels: &[u8]) -> Result<Vec<f32>> {
        let c = self.chw.0;
        // Pixels are interleaved: value i belongs to channel i % c.
        self.in_layout(pixels, |i, p| self.norm.apply(p as f32, i % c))
    }

    /// The pixels themselves in the model's layout (planes for `NCHW`), for a model that takes
    /// `u8` input as it is (an Open Inference Protocol server's `UINT8` tensor).
    pub fn pixels_in_layout(&self, pixels: &[u8]) -> Result<Vec<u8>> {
        self.in_layout(pixels, |_, p| p)
    }

    /// `f(i, pixel)` for every interleaved pixel `i`, placed where the model's layout puts it.
    fn in_layout<T: Copy + Default>(&self, pixels: &[u8], f: impl Fn(usize, u8) -> T) -> Result<Vec<T>> {
        self.check_len(pixels.len())?;
        let (c, h, w) = self.chw;
        Ok(match self.layout {
            Layout::Nhwc => pixels.iter().enumerate().map(|(i, &p)| f(i, p)).collect(),
            Layout::Nchw if c == 1 => pixels.iter().enumerate().map(|(i, &p)| f(i, p)).collect(),
            Layout::Nchw => {
                let mut out = vec![T::default(); pixels.len()];
                for (i, &p) in pixels.iter().enumerate() {
                    let (pix, ch) = (i / c, i % c);
                    out[ch * h * w + pix] = f(i, p);
                }
                out
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Dtype;

    fn pre(shape: [usize; 4], layout: Layout) -> Preprocessor {
        pre_with(shape, layout, PerChannel::All(0.0), PerChannel::All(1.0))
    }

    fn pre_with(shape: [usize; 4], layout: Layout, mean: PerChannel, std: PerChannel) -> Preprocessor {
        let spec = InputSpec {
            shape: shape.to_vec(),
            layout,
            dtype: Dtype::U8,
            normalize: Normalize { scale: 1.0, mean, std },
            color: None,
            resize: None,
        };
        Preprocessor::from_spec(&spec)
    }

    #[test]
    fn nchw_multichannel_is_planar() {
        // 1x2 image, 3 channels, interleaved RGBRGB -> RR GG BB
        let out = pre([1, 3, 1, 2], Layout::Nchw).run(&[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(out, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // The pixels themselves, in the same places.
        let raw = pre([1, 3, 1, 2], Layout::Nchw).pixels_in_layout(&[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(raw, vec![1, 4, 2, 5, 3, 6]);
        let raw = pre([1, 1, 2, 3], Layout::Nhwc).pixels_in_layout(&[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(raw, vec![1, 2, 3, 4, 5, 6]);
        assert!(pre([1, 3, 1, 2], Layout::Nchw).pixels_in_layout(&[1, 2, 3]).is_err());
        let out = pre([1, 1, 2, 3], Layout::Nhwc).run(&[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn per_channel_normalisation_follows_the_interleaved_channel() {
        let (mean, std) = (PerChannel::Each(vec![1.0, 2.0, 3.0]), PerChannel::Each(vec![1.0, 2.0, 4.0]));
        // One RGB pixel 10, 20, 30: (10-1)/1, (20-2)/2, (30-3)/4, in planes for NCHW.
        let out = pre_with([1, 3, 1, 1], Layout::Nchw, mean.clone(), std.clone()).run(&[10, 20, 30]).unwrap();
        assert_eq!(out, vec![9.0, 9.0, 6.75]);
        let out = pre_with([1, 1, 2, 3], Layout::Nhwc, mean, std).run(&[10, 20, 30, 1, 2, 3]).unwrap();
        assert_eq!(out, vec![9.0, 9.0, 6.75, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn wrong_length_names_both_lengths() {
        let p = pre([1, 1, 28, 28], Layout::Nchw);
        for n in [0, 783, 785] {
            let err = p.run(&vec![0; n]).unwrap_err();
            assert!(matches!(err, Error::InputLength { expected: 784, actual } if actual == n));
            assert_eq!(err.to_string(), format!("input has {n} values but the model expects 784"));
        }
    }
}
