//! Offloaded samples as the client sends them: a model-input sample encoded by an
//! [`OffloadCodec`] and decoded back by the Worker's decoder (`hiedge_core::runtime::decode`), so
//! `hiedge eval --offload-codec jpeg:85` measures what the large model keeps when it sees
//! compressed samples, and how many bytes they take.
//!
//! Encoders: PNG and JPEG by the `image` crate, WebP by libwebp (the encoder Chromium uses), at the
//! codec's quality. Browsers' JPEG encoders (libjpeg-turbo in Chromium) are not this one, so
//! byte counts and pixel errors of `jpeg:Q` are close to, not equal to, a browser's; the
//! browser's own bytes are in each result's `bytesSent`.
//!
//! ```
//! use hiedge_core::Manifest;
//! use hiedge_eval::codec::round_trip;
//! # let manifest = Manifest::from_json(r#"{"schema_version":2,"name":"d",
//! #   "input":{"shape":[1,1,32,32],"layout":"NCHW","dtype":"u8","normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5}},
//! #   "classes":["a","b"],"models":{"t":{"file":"t.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
//! #   "input_name":"x","output":"logits","test_accuracy":0.5}}}"#).unwrap();
//! let sample = vec![200u8; 32 * 32];
//! let (bytes, back) = round_trip(&sample, &manifest.input, "png".parse().unwrap()).unwrap();
//! assert_eq!(back, sample); // lossless
//! assert!(bytes < 32 * 32);
//! ```

use hiedge_core::manifest::{Color, InputSpec, OffloadCodec};
use hiedge_core::protocol::SampleEncoding;
use hiedge_core::runtime::decode::decode_to_model_pixels;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::error::{Error, Result};

/// `sample` (the model's input bytes: height x width x colour, interleaved) encoded by `codec`;
/// raw is the sample itself.
pub fn encode_sample(sample: &[u8], input: &InputSpec, codec: OffloadCodec) -> Result<Vec<u8>> {
    let (h, w) = input.height_width();
    let color = input
        .color()
        .ok_or_else(|| Error::InvalidData(format!("a {}-channel input is not an image", input.channels())))?;
    if sample.len() != h * w * color.channels() {
        return Err(Error::InvalidData(format!("a sample of {} bytes for a {w}x{h} {color:?} input", sample.len())));
    }
    let (w32, h32) = (w as u32, h as u32);
    let colour = match color {
        Color::Gray => ExtendedColorType::L8,
        Color::Rgb => ExtendedColorType::Rgb8,
    };
    let encode_error =
        |what: &str, e: &dyn std::fmt::Display| Error::InvalidData(format!("{what} encoding failed: {e}"));
    let mut out = Vec::new();
    match codec.encoding {
        SampleEncoding::Raw => out.extend_from_slice(sample),
        SampleEncoding::Png => {
            PngEncoder::new(&mut out).write_image(sample, w32, h32, colour).map_err(|e| encode_error("PNG", &e))?
        }
        SampleEncoding::Jpeg => JpegEncoder::new_with_quality(&mut out, codec.quality.unwrap_or(85))
            .encode(sample, w32, h32, colour)
            .map_err(|e| encode_error("JPEG", &e))?,
        SampleEncoding::Webp => {
            // libwebp takes RGB: a gray sample is replicated, as a canvas holds it.
            let rgb: Vec<u8> = match color {
                Color::Gray => sample.iter().flat_map(|&v| [v, v, v]).collect(),
                Color::Rgb => sample.to_vec(),
            };
            let encoded = webp::Encoder::from_rgb(&rgb, w32, h32).encode(codec.quality.unwrap_or(80) as f32);
            out.extend_from_slice(&encoded);
        }
    }
    Ok(out)
}

/// The sample encoded by `codec` and decoded back as the Worker does: the bytes sent and the
/// model input the large model sees.
pub fn round_trip(sample: &[u8], input: &InputSpec, codec: OffloadCodec) -> Result<(usize, Vec<u8>)> {
    let encoded = encode_sample(sample, input, codec)?;
    if codec.encoding == SampleEncoding::Raw {
        return Ok((encoded.len(), encoded));
    }
    Ok((encoded.len(), decode_to_model_pixels(&encoded, codec.encoding, input)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hiedge_core::Manifest;

    fn input(h: usize, w: usize, channels: usize) -> InputSpec {
        let json = format!(
            r#"{{"schema_version":2,"name":"d","input":{{"shape":[1,{channels},{h},{w}],"layout":"NCHW","dtype":"u8",
            "normalize":{{"scale":0.00392156862745098,"mean":0.5,"std":0.5}}}},"classes":["a","b"],
            "models":{{"t":{{"file":"t.onnx","sha256":"{}","input_name":"x","output":"logits","test_accuracy":0.5}}}}}}"#,
            "0".repeat(64)
        );
        Manifest::from_json(&json).unwrap().input
    }

    #[test]
    fn every_codec_round_trips_within_its_loss() {
        for (channels, h, w) in [(1, 28, 28), (3, 32, 48)] {
            let spec = input(h, w, channels);
            let sample: Vec<u8> = (0..h * w * channels).map(|i| ((i / channels) % w * 255 / w) as u8).collect();
            for (codec, worst_allowed) in [("raw", 0), ("png", 0), ("jpeg:95", 16), ("jpeg:50", 48), ("webp:90", 24)] {
                let (bytes, back) = round_trip(&sample, &spec, codec.parse().unwrap()).unwrap();
                assert_eq!(back.len(), sample.len(), "{codec}");
                let worst = back.iter().zip(&sample).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                assert!(worst <= worst_allowed, "{codec} {channels}x{h}x{w}: off by {worst}");
                if codec != "raw" {
                    assert!(bytes < sample.len(), "{codec}: {bytes} bytes for a {}-byte smooth sample", sample.len());
                }
            }
        }
        assert!(encode_sample(&[0; 5], &input(2, 2, 1), OffloadCodec::RAW).is_err());
    }
}
