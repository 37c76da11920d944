//! IDX files (the MNIST / Fashion-MNIST format) and hiedge's fixed data split.

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
