//! Labelled data: IDX files (the MNIST / Fashion-MNIST format), folders of images in class
//! sub-folders, and the [`Split`] both become (samples already in the model's input bytes).

use hiedge_core::manifest::Manifest;
use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};

use crate::error::{Error, Result};

/// Training images used to fit the networks: `0..CALIBRATION_START`.
pub const CALIBRATION_START: usize = 55_000;
/// The calibration set: the last 5,000 training images, used to fit the decision module only.
pub const CALIBRATION_LEN: usize = 5_000;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (images: `[n, rows, cols]`, labels: `[n]`).
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Parses an (already decompressed) IDX file whose element type is `u8` (type code 0x08).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::InvalidData(format!("IDX: {m}"));
        if bytes.len() < 4 {
            return Err(bad(format!("{} bytes is too short for a header", bytes.len())));
        }
        if bytes[0] != 0 || bytes[1] != 0 {
            return Err(bad("magic number must start with two zero bytes".into()));
        }
        if bytes[2] != 0x08 {
            return Err(bad(format!("element type 0x{:02x} is not u8 (0x08)", bytes[2])));
        }
        let ndim = bytes[3] as usize;
        let header = 4 + 4 * ndim;
        if ndim == 0 || bytes.len() < header {
            return Err(bad(format!("header for {ndim} dimensions does not fit in {} bytes", bytes.len())));
        }
        let dims: Vec<usize> =
            bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
        let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("size overflows".into()))?;
        if bytes.len() - header != len {
            return Err(bad(format!("dims {dims:?} need {len} data bytes, file has {}", bytes.len() - header)));
        }
        Ok(IdxArray { dims, data: bytes[header..].to_vec() })
    }

    /// Number of items (the first dimension).
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per item.
    pub fn item_len(&self) -> usize {
        self.dims[1..].iter().product()
    }

    /// Item `i` (an image's pixels or a label byte).
    pub fn item(&self, i: usize) -> &[u8] {
        let n = self.item_len();
        &self.data[i * n..(i + 1) * n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut f = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        f.extend(1..=6u8);
        let a = IdxArray::parse(&f).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.item(1), &[4, 5, 6]);
        assert!(IdxArray::parse(&f[..f.len() - 1]).is_err());
        assert!(IdxArray::parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).is_err());
        assert!(IdxArray::parse(&[1, 2]).is_err());
    }
}

/// A labelled set of samples, each already the model's input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pixels: Vec<u8>,
    item_len: usize,
    /// True labels, by sample.
    pub labels: Vec<usize>,
}

impl Split {
    /// Samples of `item_len` bytes each, concatenated, with their labels.
    pub fn new(pixels: Vec<u8>, item_len: usize, labels: Vec<usize>) -> Result<Self> {
        if item_len == 0 || pixels.len() != item_len * labels.len() {
            return Err(Error::InvalidData(format!(
                "{} bytes are not {} samples of {item_len} bytes",
                pixels.len(),
                labels.len()
            )));
        }
        Ok(Split { pixels, item_len, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sample `i`'s bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.item_len..(i + 1) * self.item_len]
    }

    /// Samples `range` of this split (clamped to its length).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Split {
        let (start, end) = (range.start.min(self.len()), range.end.min(self.len()));
        Split {
            pixels: self.pixels[start * self.item_len..end * self.item_len].to_vec(),
            item_len: self.item_len,
            labels: self.labels[start..end.max(start)].to_vec(),
        }
    }

    /// Images and labels from two IDX arrays, each image `input_len` bytes (the model's input).
    pub fn from_idx(images: IdxArray, labels: &IdxArray, input_len: usize) -> Result<Self> {
        if images.len() != labels.len() {
            return Err(Error::InvalidData(format!("{} images but {} labels", images.len(), labels.len())));
        }
        if images.item_len() != input_len {
            return Err(Error::InvalidData(format!(
                "the images have {} values each ({:?}) but the model takes {input_len}",
                images.item_len(),
                &images.dims[1..]
            )));
        }
        Split::new(images.data, input_len, labels.data.iter().map(|&l| l as usize).collect())
    }

    /// A folder of images in one sub-folder per class (`<dir>/<class name>/*.png|jpg|jpeg`), each
    /// converted to the model's input by hiedge-core's one conversion. Sub-folders must be class
    /// names of the manifest; files are taken in name order, classes in label order.
    pub fn from_image_folder(dir: &std::path::Path, manifest: &Manifest) -> Result<Self> {
        let read_dir = |d: &std::path::Path| {
            std::fs::read_dir(d)
                .map_err(|e| Error::InvalidData(format!("cannot read {}: {e}", d.display())))?
                .map(|e| e.map(|e| e.path()).map_err(|e| Error::InvalidData(format!("{}: {e}", d.display()))))
                .collect::<Result<Vec<_>>>()
        };
        let mut folders: Vec<(usize, std::path::PathBuf)> = Vec::new();
        for path in read_dir(dir)?.into_iter().filter(|p| p.is_dir()) {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let label = manifest.classes.iter().position(|c| *c == name).ok_or_else(|| {
                Error::InvalidData(format!(
                    "{}: the folder `{name}` is not a class of `{}` ({})",
                    dir.display(),
                    manifest.name,
                    manifest.classes.join(", ")
                ))
            })?;
            folders.push((label, path));
        }
        if folders.is_empty() {
            return Err(Error::InvalidData(format!(
                "{} has no class sub-folders (expected <dir>/<class>/*.png, or IDX files)",
                dir.display()
            )));
        }
        folders.sort();
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for (label, folder) in folders {
            let mut files: Vec<_> = read_dir(&folder)?
                .into_iter()
                .filter(|p| {
                    p.extension()
                        .map(|e| e.to_string_lossy().to_ascii_lowercase())
                        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.as_str()))
                })
                .collect();
            files.sort();
            for file in files {
                pixels.extend(image_file_pixels(&file, manifest)?);
                labels.push(label);
            }
        }
        if labels.is_empty() {
            return Err(Error::InvalidData(format!("{} has class folders but no .png/.jpg images", dir.display())));
        }
        Split::new(pixels, manifest.input_len(), labels)
    }
}

/// An image file (PNG, JPEG, ...) of any size as the set's model input: decoded
/// ([`open_image`]), then converted by hiedge-core's one conversion (size, colour, layout).
pub fn image_file_pixels(file: &std::path::Path, manifest: &Manifest) -> Result<Vec<u8>> {
    let rgba = open_image(file)?.to_rgba8();
    let (w, h) = (rgba.width() as usize, rgba.height() as usize);
    let img = Image::new(rgba.as_raw(), w, h, PixelFormat::Rgba)?;
    Ok(to_model_pixels(&img, &manifest.input)?)
}

/// Decodes an image file whose header says it has at most hiedge-core's `MAX_IMAGE_PIXELS`
/// (`runtime::image::check_image_size`, the limit every image path shares): the dimensions
/// are read first (`into_dimensions`), and the decoder runs with `image`'s `Limits` set to them,
/// so a small file that claims a huge image is refused before anything is allocated for it.
pub fn open_image(file: &std::path::Path) -> Result<image::DynamicImage> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidData(format!("cannot decode {}: {e}", file.display()));
    let reader = || image::ImageReader::open(file).map_err(|e| bad(&e))?.with_guessed_format().map_err(|e| bad(&e));
    let (w, h) = reader()?.into_dimensions().map_err(|e| bad(&e))?;
    hiedge_core::runtime::image::check_image_size(w as usize, h as usize)
        .map_err(|e| Error::InvalidData(format!("{}: {e}", file.display())))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(hiedge_core::runtime::image::MAX_IMAGE_PIXELS as u64 * 4 + (1 << 20));
    let mut decoder = reader()?;
    decoder.limits(limits);
    decoder.decode().map_err(|e| bad(&e))
}

/// Reads at most `cap` bytes from `reader` (a decompressor, say): a longer stream is refused once
/// it passes the cap, so a small file that expands to gigabytes is never held whole.
pub fn read_capped(reader: impl std::io::Read, cap: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(Error::InvalidData(format!("{what} expands to more than {cap} bytes, the most hiedge reads")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    /// A PNG of a valid signature and header (CRC included) that claims `w` x `h` pixels and has
    /// no pixel data.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = 0xffff_ffffu32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
                }
            }
            !crc
        }
        let chunk = |png: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            let body = [kind, data].concat();
            png.extend((data.len() as u32).to_be_bytes());
            png.extend(&body);
            png.extend(crc32(&body).to_be_bytes());
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 6, 0, 0, 0]); // 8-bit RGBA
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &[]);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn an_image_claiming_too_many_pixels_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bomb.png");
        std::fs::write(&file, png_header_only(100_000, 100_000)).unwrap();
        let e = open_image(&file).unwrap_err().to_string();
        assert!(e.contains("a 100000x100000 image is empty or larger than"), "{e}");
        // A header within the limit gets as far as decoding (and fails there: no pixel data).
        std::fs::write(&file, png_header_only(4, 4)).unwrap();
        let e = open_image(&file).unwrap_err().to_string();
        assert!(e.contains("cannot decode"), "{e}");
    }

    #[test]
    fn a_stream_longer_than_the_cap_is_refused() {
        let data = vec![7u8; 1000];
        assert_eq!(read_capped(&data[..], 1000, "x").unwrap(), data);
        let e = read_capped(&data[..], 999, "the IDX file").unwrap_err().to_string();
        assert!(e.contains("the IDX file expands to more than 999 bytes"), "{e}");
    }
}
