//! The one image conversion: RGBA or gray pixels of any size to the model's input bytes (its
//! height, width and colour, interleaved row-major, as [`Preprocessor`](crate::runtime::Preprocessor)
//! takes them). The browser client, the CLI and the tests all call [`to_model_pixels`], so the same
//! image gives the same input everywhere.
//!
//! The steps, in this order:
//! 1. the source region: the whole image (`stretch`) or the largest centred region with the input's
//!    aspect ratio (`center_crop`);
//! 2. resampling to the input size with a separable triangle (bilinear) filter whose support widens
//!    with the scale factor when shrinking, so downscaling averages instead of aliasing (the
//!    "antialiased bilinear" of Pillow's `resize(BILINEAR)`), computed in f32 over pixel centres;
//! 3. colour: RGB kept, or gray as luma `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601); a gray source
//!    feeding an RGB model is replicated; alpha is ignored;
//! 4. rounding to the nearest byte, once, at the end.
//!
//! ```
//! use hiedge_core::manifest::Manifest;
//! use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};
//! # let manifest = Manifest::from_json(r#"{"schema_version":1,"name":"d",
//! #   "input":{"shape":[1,1,2,2],"layout":"NCHW","dtype":"u8","normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5}},
//! #   "classes":["a","b"],"models":{"t":{"file":"t.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
//! #   "input_name":"x","output":"logits","test_accuracy":0.5}}}"#).unwrap();
//! // A 4x4 white RGBA image for a 2x2 gray model.
//! let rgba = [255u8; 4 * 4 * 4];
//! let image = Image::new(&rgba, 4, 4, PixelFormat::Rgba).unwrap();
//! assert_eq!(to_model_pixels(&image, &manifest.input).unwrap(), vec![255; 4]);
//! ```

use crate::error::{Error, Result};
use crate::manifest::{Color, InputSpec, Resize};

/// Most pixels a source image may have (64 Mi: a 8192 x 8192 frame).
pub const MAX_IMAGE_PIXELS: usize = 64 * 1024 * 1024;

/// Checks an image's size before any of its pixels are read or copied: not empty, at most
/// [`MAX_IMAGE_PIXELS`]. Returns the pixel count.
pub fn check_image_size(width: usize, height: usize) -> Result<usize> {
    width.checked_mul(height).filter(|&n| n > 0 && n <= MAX_IMAGE_PIXELS).ok_or_else(|| {
        Error::InvalidImage(format!("a {width}x{height} image is empty or larger than {MAX_IMAGE_PIXELS} pixels"))
    })
}

/// How a source image's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Four bytes per pixel, R G B A (a canvas `ImageData`).
    Rgba,
    /// Three bytes per pixel, R G B (a decoded JPEG).
    Rgb,
    /// One byte per pixel.
    Gray,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgba => 4,
            PixelFormat::Rgb => 3,
            PixelFormat::Gray => 1,
        }
    }
}

/// A source image: row-major pixels of `width x height` in `format`.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    format: PixelFormat,
}

impl<'a> Image<'a> {
    /// Checks the size: a non-empty image of at most [`MAX_IMAGE_PIXELS`] whose byte count matches.
    pub fn new(pixels: &'a [u8], width: usize, height: usize, format: PixelFormat) -> Result<Self> {
        let count = check_image_size(width, height)?;
        let expected = count * format.bytes_per_pixel();
        if pixels.len() != expected {
            return Err(Error::InvalidImage(format!(
                "a {width}x{height} {format:?} image has {expected} bytes, got {}",
                pixels.len()
            )));
        }
        Ok(Image { pixels, width, height, format })
    }

    /// Channel `ch` (0 = R, 1 = G, 2 = B) of pixel (`x`, `y`) as f32; a gray image has one value.
    fn value(&self, x: usize, y: usize, ch: usize) -> f32 {
        let i = y * self.width + x;
        match self.format {
            PixelFormat::Rgba => self.pixels[4 * i + ch] as f32,
            PixelFormat::Rgb => self.pixels[3 * i + ch] as f32,
            PixelFormat::Gray => self.pixels[i] as f32,
        }
    }
}

/// Per output position: the first source index and the normalised weights from there.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Triangle-filter taps mapping source span `[from, from + len)` of a `size`-pixel axis onto `out`
/// output pixels: output pixel `o`'s centre is `from + (o + 0.5) * len / out`, and source pixel `i`
/// (centre `i + 0.5`) weighs `max(0, 1 - |i + 0.5 - centre| / support)`, `support = max(1, len / out)`.
fn taps(size: usize, from: f64, len: f64, out: usize) -> Vec<Taps> {
    let scale = len / out as f64;
    let support = scale.max(1.0);
    (0..out)
        .map(|o| {
            let centre = from + (o as f64 + 0.5) * scale;
            // Taps may reach past a crop box into the rest of the image (as Pillow's `box` does),
            // never past the image.
            let lo = (centre - support).floor().max(0.0) as usize;
            let hi = ((centre + support).ceil().min(size as f64)) as usize;
            let mut weights: Vec<f32> = (lo..hi.max(lo + 1))
                .map(|i| (1.0 - ((i as f64 + 0.5 - centre).abs() / support)).max(0.0) as f32)
                .collect();
            let sum: f32 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
            } else {
                // The centre lies exactly between taps of zero weight: take the nearest pixel.
                weights.iter_mut().enumerate().for_each(|(k, w)| *w = (k == 0) as u8 as f32);
            }
            Taps { start: lo.min(size - 1), weights }
        })
        .collect()
}

/// The image as the model's input bytes (see the module docs for the steps). Fails when the
/// manifest's input has no image colour (a channel count other than 1 or 3 without `color`).
pub fn to_model_pixels(image: &Image<'_>, input: &InputSpec) -> Result<Vec<u8>> {
    let color = input.color().ok_or_else(|| {
        Error::InvalidImage(format!("the model takes {} channels, which is not an image colour", input.channels()))
    })?;
    let (out_h, out_w) = input.height_width();
    let (w, h) = (image.width as f64, image.height as f64);
    let (x0, y0, cw, ch) = match input.resize() {
        Resize::Stretch => (0.0, 0.0, w, h),
        Resize::CenterCrop => {
            let target = out_w as f64 / out_h as f64;
            if w / h > target {
                let cw = h * target;
                ((w - cw) / 2.0, 0.0, cw, h)
            } else {
                let ch = w / target;
                (0.0, (h - ch) / 2.0, w, ch)
            }
        }
    };
    let xs = taps(image.width, x0, cw, out_w);
    let ys = taps(image.height, y0, ch, out_h);
    let src_channels = if image.format == PixelFormat::Gray { 1 } else { 3 };
    // Horizontal pass over the rows the vertical taps use: rows x out_w x channels.
    let mut horizontal = vec![0f32; image.height * out_w * src_channels];
    let rows_used = {
        let mut used = vec![false; image.height];
        for t in &ys {
            for k in 0..t.weights.len() {
                if let Some(u) = used.get_mut(t.start + k) {
                    *u = true;
                }
            }
        }
        used
    };
    for (y, _) in rows_used.iter().enumerate().filter(|(_, u)| **u) {
        for (ox, t) in xs.iter().enumerate() {
            for c in 0..src_channels {
                let v: f32 = t
                    .weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| wt * image.value((t.start + k).min(image.width - 1), y, c))
                    .sum();
                horizontal[(y * out_w + ox) * src_channels + c] = v;
            }
        }
    }
    let mut out = Vec::with_capacity(out_h * out_w * color.channels());
    let byte = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    for t in &ys {
        for ox in 0..out_w {
            let mut rgb = [0f32; 3];
            for (c, value) in rgb.iter_mut().enumerate().take(src_channels) {
                *value = t
                    .weights
                    .iter()
                    .enumerate()
                    .map(|(k, wt)| {
                        wt * horizontal[((t.start + k).min(image.height - 1) * out_w + ox) * src_channels + c]
                    })
                    .sum();
            }
            if src_channels == 1 {
                rgb = [rgb[0]; 3];
            }
            match color {
                Color::Gray => out.push(byte(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])),
                Color::Rgb => out.extend(rgb.map(byte)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::manifest::{Dtype, Layout, Normalize, PerChannel};

    /// An NHWC input of `h x w` in `color`, identity normalisation (also for `decode.rs`'s tests).
    pub(in crate::runtime) fn input(h: usize, w: usize, color: Color, resize: Resize) -> InputSpec {
        InputSpec {
            shape: vec![1, h, w, color.channels()],
            layout: Layout::Nhwc,
            dtype: Dtype::U8,
            normalize: Normalize { scale: 1.0, mean: PerChannel::All(0.0), std: PerChannel::All(1.0) },
            color: Some(color),
            resize: Some(resize),
        }
    }

    fn rgba(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 4]) -> Vec<u8> {
        let mut out = Vec::with_capacity(w * h * 4);
        for y in 0..h {
            for x in 0..w {
                out.extend(f(x, y));
            }
        }
        out
    }

    #[test]
    fn same_size_is_the_identity_and_gray_is_luma() {
        let px = rgba(3, 2, |x, y| [(10 * x + 50 * y) as u8, 7, 200, 255]);
        let img = Image::new(&px, 3, 2, PixelFormat::Rgba).unwrap();
        let rgb = to_model_pixels(&img, &input(2, 3, Color::Rgb, Resize::Stretch)).unwrap();
        let expected: Vec<u8> = px.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        assert_eq!(rgb, expected);
        let gray = to_model_pixels(&img, &input(2, 3, Color::Gray, Resize::Stretch)).unwrap();
        let luma = |p: &[u8]| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8;
        assert_eq!(gray, px.chunks(4).map(luma).collect::<Vec<_>>());
        // A gray source for an RGB model is replicated.
        let g = Image::new(&[9, 99], 2, 1, PixelFormat::Gray).unwrap();
        assert_eq!(to_model_pixels(&g, &input(1, 2, Color::Rgb, Resize::Stretch)).unwrap(), vec![9, 9, 9, 99, 99, 99]);
    }

    #[test]
    fn shrinking_averages_and_odd_sizes_keep_a_flat_colour() {
        // A 1-pixel checkerboard halved: every output pixel averages two black and two white.
        let px = rgba(8, 8, |x, y| if (x + y) % 2 == 0 { [255, 255, 255, 255] } else { [0, 0, 0, 255] });
        let img = Image::new(&px, 8, 8, PixelFormat::Rgba).unwrap();
        let out = to_model_pixels(&img, &input(4, 4, Color::Gray, Resize::Stretch)).unwrap();
        // Inside, the filter is symmetric: exactly the mean. At the border its clipped taps are
        // renormalised (as Pillow does), a few levels off; plain decimation would give 0 or 255.
        for (i, &v) in out.iter().enumerate() {
            let (x, y) = (i % 4, i / 4);
            let inner = (1..3).contains(&x) && (1..3).contains(&y);
            assert!(if inner { (127..=128).contains(&v) } else { (120..=136).contains(&v) }, "{out:?}");
        }
        // A flat colour stays exactly that colour at any odd size, up or down.
        for (w, h) in [(7, 5), (31, 17), (3, 300)] {
            let flat = rgba(w, h, |_, _| [12, 34, 56, 255]);
            let img = Image::new(&flat, w, h, PixelFormat::Rgba).unwrap();
            for resize in [Resize::Stretch, Resize::CenterCrop] {
                let out = to_model_pixels(&img, &input(28, 28, Color::Rgb, resize)).unwrap();
                assert!(out.chunks(3).all(|p| p == [12, 34, 56]), "{w}x{h} {resize:?}");
            }
        }
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        // 4x2: black outer columns, white middle. A 2x2 crop keeps the white middle; stretch mixes.
        let px = rgba(4, 2, |x, _| if x == 0 || x == 3 { [0, 0, 0, 255] } else { [255, 255, 255, 255] });
        let img = Image::new(&px, 4, 2, PixelFormat::Rgba).unwrap();
        assert_eq!(to_model_pixels(&img, &input(2, 2, Color::Gray, Resize::CenterCrop)).unwrap(), vec![255; 4]);
        let stretched = to_model_pixels(&img, &input(2, 2, Color::Gray, Resize::Stretch)).unwrap();
        assert!(stretched.iter().all(|&v| v < 255 && v > 0), "{stretched:?}");
    }

    #[test]
    fn bad_images_are_refused_with_the_sizes() {
        let err = Image::new(&[0; 10], 2, 2, PixelFormat::Rgba).unwrap_err().to_string();
        assert!(err.contains("16 bytes, got 10"), "{err}");
        assert!(Image::new(&[], 0, 0, PixelFormat::Gray).is_err());
        assert!(Image::new(&[0; 4], usize::MAX, 2, PixelFormat::Gray).is_err());
    }
}
