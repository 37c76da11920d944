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
/// A pixel is a `u8`, so each channel has 256 possible inputs: the preprocessor works out
/// [`Normalize::apply`] for all of them once, and a sample is then a table lookup per value
/// ([`hiedge_kernels::lookup_pixels`]): the same bits as the formula, a fraction of its time (one
/// division per value, and a channel's mean and std looked up per value, were 15% of a 224x224
/// RGB model's time in the browser, bench/zoo.md).
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
    layout: Layout,
    chw: (usize, usize, usize),
    /// `Normalize::apply(p, channel)` at `[channel][p]`, for every channel and pixel value.
    table: Vec<[f32; 256]>,
}

impl Preprocessor {
    /// A preprocessor for the manifest's input contract.
    pub fn new(manifest: &Manifest) -> Self {
        Self::from_spec(&manifest.input)
    }

    fn from_spec(spec: &InputSpec) -> Self {
        let chw = spec.chw();
        Preprocessor { layout: spec.layout, chw, table: normalisation_table(&spec.normalize, chw.0) }
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
        self.check_len(pixels.len())?;
        Ok(hiedge_kernels::lookup_pixels(pixels, &self.table, self.layout == Layout::Nchw))
    }

    /// The pixels themselves in the model's layout (planes for `NCHW`), for a model that takes
    /// `u8` input as it is (an Open Inference Protocol server's `UINT8` tensor).
    pub fn pixels_in_layout(&self, pixels: &[u8]) -> Result<Vec<u8>> {
        self.check_len(pixels.len())?;
        let c = self.chw.0;
        if self.layout == Layout::Nhwc || c <= 1 {
            return Ok(pixels.to_vec());
        }
        // One plane per channel: channel `ch` is every c-th value from offset `ch`.
        Ok((0..c).flat_map(|ch| pixels.iter().skip(ch).step_by(c).copied()).collect())
    }
}

/// [`Normalize::apply`] for every `u8` value of each of `channels` channels.
fn normalisation_table(norm: &Normalize, channels: usize) -> Vec<[f32; 256]> {
    (0..channels).map(|ch| std::array::from_fn(|p| norm.apply(p as f32, ch))).collect()
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
    fn the_table_gives_the_formulas_bits_for_every_pixel_value_and_channel() {
        // Means and stds whose quotients round (ImageNet's), so a table built or indexed any
        // other way (another channel's row, the value before scaling) gives other bits.
        let normalize = Normalize {
            scale: 1.0 / 255.0,
            mean: PerChannel::Each(vec![0.485, 0.456, 0.406]),
            std: PerChannel::Each(vec![0.229, 0.224, 0.225]),
        };
        let (h, w) = (16, 16);
        // Every value in every channel: pixel k of channel ch is (k + 85 * ch) % 256.
        let pixels: Vec<u8> = (0..h * w).flat_map(|k| (0..3).map(move |ch| ((k + 85 * ch) % 256) as u8)).collect();
        for layout in [Layout::Nchw, Layout::Nhwc] {
            let shape = if layout == Layout::Nchw { [1, 3, h, w] } else { [1, h, w, 3] };
            let spec = InputSpec {
                shape: shape.to_vec(),
                layout,
                dtype: Dtype::U8,
                normalize: normalize.clone(),
                color: None,
                resize: None,
            };
            let out = Preprocessor::from_spec(&spec).run(&pixels).unwrap();
            for (i, &p) in pixels.iter().enumerate() {
                let (pix, ch) = (i / 3, i % 3);
                let at = if layout == Layout::Nchw { ch * h * w + pix } else { i };
                let want = normalize.apply(f32::from(p), ch);
                assert_eq!(out[at].to_bits(), want.to_bits(), "{layout:?} value {p} of channel {ch}");
            }
        }
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
