//! Compressed offloads to model input: a classify body in `image/png`, `image/jpeg` or
//! `image/webp` decoded (pure Rust decoders that build for wasm32: `png`, `zune-jpeg`,
//! `image-webp`) and converted by the one image conversion ([`to_model_pixels`]), so an encoded
//! sample of the model's size and colour gives its pixels back (exactly for PNG) and any other
//! image is fitted by the manifest's rule, as on the device.
//!
//! The image's dimensions are read from its header and checked against
//! [`MAX_DECODED_PIXELS`] before its pixels are allocated. JPEG is decoded without SIMD so that
//! every CPU (and wasm32) gives the same pixels.
//!
//! ```
//! use hiedge_core::protocol::SampleEncoding;
//! use hiedge_core::runtime::decode::decode_image;
//! assert!(decode_image(b"not a png", SampleEncoding::Png).is_err());
//! ```

use std::io::Cursor;

use crate::error::{Error, Result};
use crate::manifest::InputSpec;
use crate::protocol::SampleEncoding;
use crate::runtime::image::{check_image_size, to_model_pixels, Image, PixelFormat};

/// Most pixels an offloaded image may decode to (4 Mi, a 2048 x 2048 frame: 16 MiB as RGBA, well
/// inside a Worker's 128 MB next to its model).
pub const MAX_DECODED_PIXELS: usize = 4 * 1024 * 1024;

/// A decoded image: row-major pixels, gray, RGB or RGBA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// The pixels.
    pub pixels: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Their layout.
    pub format: PixelFormat,
}

impl DecodedImage {
    /// The image, for [`to_model_pixels`].
    pub fn image(&self) -> Result<Image<'_>> {
        Image::new(&self.pixels, self.width, self.height, self.format)
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidImage(format!("the body is not a valid {what} image: {e}"))
}

/// Checks a header's dimensions against [`MAX_DECODED_PIXELS`] before any pixel is allocated.
fn check_dimensions(width: usize, height: usize) -> Result<()> {
    let count = check_image_size(width, height)?;
    if count > MAX_DECODED_PIXELS {
        return Err(Error::InvalidImage(format!(
            "a {width}x{height} image is larger than the {MAX_DECODED_PIXELS} pixels an offloaded image may have"
        )));
    }
    Ok(())
}

/// Decodes an encoded image (`encoding` must not be [`SampleEncoding::Raw`]).
pub fn decode_image(bytes: &[u8], encoding: SampleEncoding) -> Result<DecodedImage> {
    match encoding {
        SampleEncoding::Raw => Err(Error::InvalidImage("raw pixels are not an encoded image".into())),
        SampleEncoding::Png => decode_png(bytes),
        SampleEncoding::Jpeg => decode_jpeg(bytes),
        SampleEncoding::Webp => decode_webp(bytes),
    }
}

/// Decodes an encoded image and converts it to the model's input bytes.
pub fn decode_to_model_pixels(bytes: &[u8], encoding: SampleEncoding, input: &InputSpec) -> Result<Vec<u8>> {
    let decoded = decode_image(bytes, encoding)?;
    to_model_pixels(&decoded.image()?, input)
}

fn decode_png(bytes: &[u8]) -> Result<DecodedImage> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // 8-bit gray, gray+alpha, RGB or RGBA whatever the file's depth, palette or transparency.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    // The decoder's own allocation cap, beside the dimension check below.
    decoder.set_limits(png::Limits { bytes: MAX_DECODED_PIXELS * 4 + (1 << 20) });
    let mut reader = decoder.read_info().map_err(|e| invalid("PNG", e))?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    check_dimensions(width, height)?;
    let size = reader.output_buffer_size().ok_or_else(|| invalid("PNG", "its size overflows"))?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| invalid("PNG", e))?;
    buf.truncate(frame.buffer_size());
    let (pixels, format) = match frame.color_type {
        png::ColorType::Grayscale => (buf, PixelFormat::Gray),
        png::ColorType::GrayscaleAlpha => (buf.chunks_exact(2).map(|p| p[0]).collect(), PixelFormat::Gray),
        png::ColorType::Rgb => (buf, PixelFormat::Rgb),
        png::ColorType::Rgba => (buf, PixelFormat::Rgba),
        png::ColorType::Indexed => return Err(invalid("PNG", "its palette was not expanded")),
    };
    Ok(DecodedImage { pixels, width, height, format })
}

fn decode_jpeg(bytes: &[u8]) -> Result<DecodedImage> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    // Scalar code on every CPU (no SIMD): the same pixels natively and in wasm32.
    let options = DecoderOptions::default()
        .set_use_unsafe(false)
        .set_max_width(1 << 14)
        .set_max_height(1 << 14)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| invalid("JPEG", e))?;
    let info = decoder.info().ok_or_else(|| invalid("JPEG", "it has no frame header"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    check_dimensions(width, height)?;
    let size = decoder.output_buffer_size().ok_or_else(|| invalid("JPEG", "its size overflows"))?;
    if size != width * height * 3 {
        return Err(invalid("JPEG", format!("it decodes to {size} bytes, not RGB")));
    }
    let mut pixels = vec![0; size];
    decoder.decode_into(&mut pixels).map_err(|e| invalid("JPEG", e))?;
    Ok(DecodedImage { pixels, width, height, format: PixelFormat::Rgb })
}

fn decode_webp(bytes: &[u8]) -> Result<DecodedImage> {
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(|e| invalid("WebP", e))?;
    let (w, h) = decoder.dimensions();
    let (width, height) = (w as usize, h as usize);
    check_dimensions(width, height)?;
    decoder.set_memory_limit(MAX_DECODED_PIXELS * 4 + (1 << 20));
    let format = if decoder.has_alpha() { PixelFormat::Rgba } else { PixelFormat::Rgb };
    let size = decoder.output_buffer_size().ok_or_else(|| invalid("WebP", "its size overflows"))?;
    if size != width * height * format.bytes_per_pixel() {
        return Err(invalid("WebP", format!("it decodes to {size} bytes, not {format:?}")));
    }
    let mut pixels = vec![0; size];
    decoder.read_image(&mut pixels).map_err(|e| invalid("WebP", e))?;
    Ok(DecodedImage { pixels, width, height, format })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Color, Resize};

    /// The image conversion's test input, stretched.
    fn input(h: usize, w: usize, color: Color) -> InputSpec {
        crate::runtime::image::tests::input(h, w, color, Resize::Stretch)
    }

    /// A smooth RGB picture (JPEG keeps those close).
    fn picture(w: usize, h: usize) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 128])).collect()
    }

    fn png(pixels: &[u8], w: u32, h: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(pixels).unwrap();
        writer.finish().unwrap();
        out
    }

    fn jpeg(pixels: &[u8], w: u32, h: u32, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode(pixels, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn webp_lossless(pixels: &[u8], w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image_webp::WebPEncoder::new(&mut out).encode(pixels, w, h, image_webp::ColorType::Rgb8).unwrap();
        out
    }

    #[test]
    fn lossless_images_of_the_model_size_give_their_pixels_back() {
        let (w, h) = (9, 7);
        let rgb = picture(w, h);
        let spec = input(h, w, Color::Rgb);
        let png8 = png(&rgb, w as u32, h as u32, png::ColorType::Rgb, png::BitDepth::Eight);
        assert_eq!(decode_to_model_pixels(&png8, SampleEncoding::Png, &spec).unwrap(), rgb);
        let webp = webp_lossless(&rgb, w as u32, h as u32);
        assert_eq!(decode_to_model_pixels(&webp, SampleEncoding::Webp, &spec).unwrap(), rgb);
        // RGBA (a canvas's PNG) and gray + alpha lose only their alpha.
        let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let png_rgba = png(&rgba, w as u32, h as u32, png::ColorType::Rgba, png::BitDepth::Eight);
        assert_eq!(decode_to_model_pixels(&png_rgba, SampleEncoding::Png, &spec).unwrap(), rgb);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 3) as u8).collect();
        let gray_alpha: Vec<u8> = gray.iter().flat_map(|&g| [g, 7]).collect();
        let png_ga = png(&gray_alpha, w as u32, h as u32, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight);
        assert_eq!(decode_to_model_pixels(&png_ga, SampleEncoding::Png, &input(h, w, Color::Gray)).unwrap(), gray);
        // 16-bit samples are cut to their high byte.
        let gray16: Vec<u8> = gray.iter().flat_map(|&g| [g, 0xff]).collect();
        let png16 = png(&gray16, w as u32, h as u32, png::ColorType::Grayscale, png::BitDepth::Sixteen);
        assert_eq!(decode_image(&png16, SampleEncoding::Png).unwrap().pixels, gray);
    }

    #[test]
    fn jpeg_is_close_and_other_sizes_are_converted_by_the_manifest_rule() {
        let (w, h) = (32, 24);
        let rgb = picture(w, h);
        let decoded = decode_image(&jpeg(&rgb, w as u32, h as u32, 90), SampleEncoding::Jpeg).unwrap();
        assert_eq!((decoded.width, decoded.height, decoded.format), (w, h, PixelFormat::Rgb));
        let worst = decoded.pixels.iter().zip(&rgb).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 12, "JPEG q90 of a smooth picture is off by up to {worst}");
        // A larger image goes through the same conversion as on the device.
        let big = png(&picture(64, 48), 64, 48, png::ColorType::Rgb, png::BitDepth::Eight);
        let spec = input(h, w, Color::Rgb);
        let direct = to_model_pixels(&Image::new(&picture(64, 48), 64, 48, PixelFormat::Rgb).unwrap(), &spec).unwrap();
        assert_eq!(decode_to_model_pixels(&big, SampleEncoding::Png, &spec).unwrap(), direct);
    }

    /// PNG's chunk CRC (IEEE 802.3, reflected).
    fn crc32(bytes: &[u8]) -> u32 {
        !bytes.iter().fold(!0u32, |crc, &b| {
            (0..8).fold(crc ^ b as u32, |c, _| if c & 1 == 1 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 })
        })
    }

    #[test]
    fn oversized_images_are_refused_from_their_header() {
        // A 1 x 1 PNG whose header is patched to say 3000 x 3000 (9 M pixels), its CRC fixed.
        let mut header = png(&[1, 2, 3], 1, 1, png::ColorType::Rgb, png::BitDepth::Eight);
        header[16..24].copy_from_slice(&[0, 0, 0x0b, 0xb8, 0, 0, 0x0b, 0xb8]);
        let crc = crc32(&header[12..29]);
        header[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_image(&header, SampleEncoding::Png).unwrap_err().to_string();
        assert!(e.contains("3000x3000") && e.contains(&MAX_DECODED_PIXELS.to_string()), "{e}");
        // A JPEG whose frame header says 3000 x 3000 (its SOF0 patched).
        let mut big = jpeg(&picture(16, 16), 16, 16, 80);
        let sof = big.windows(2).position(|m| m == [0xff, 0xc0]).unwrap();
        big[sof + 5..sof + 9].copy_from_slice(&[0x0b, 0xb8, 0x0b, 0xb8]);
        let e = decode_image(&big, SampleEncoding::Jpeg).unwrap_err().to_string();
        assert!(e.contains("3000x3000"), "{e}");
    }

    #[test]
    fn broken_images_are_errors_not_panics() {
        let rgb = picture(12, 10);
        for (encoding, good) in [
            (SampleEncoding::Png, png(&rgb, 12, 10, png::ColorType::Rgb, png::BitDepth::Eight)),
            (SampleEncoding::Jpeg, jpeg(&rgb, 12, 10, 75)),
            (SampleEncoding::Webp, webp_lossless(&rgb, 12, 10)),
        ] {
            assert!(decode_image(&good, encoding).is_ok());
            for cut in [0, 1, 8, good.len() / 3] {
                assert!(decode_image(&good[..cut], encoding).is_err(), "{encoding:?} cut at {cut}");
            }
            for cut in good.len() / 3..good.len() {
                let _ = decode_image(&good[..cut], encoding);
            }
            for i in (0..good.len()).step_by(7) {
                let mut bad = good.clone();
                bad[i] ^= 0x5a;
                let _ = decode_image(&bad, encoding);
            }
            // Another format's bytes under this content type.
            assert!(decode_image(b"GIF89a\x01\x00\x01\x00", encoding).is_err());
        }
        assert!(decode_image(&rgb, SampleEncoding::Raw).is_err());
    }
}
