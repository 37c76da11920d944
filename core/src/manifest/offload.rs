//! How the client encodes a sample it offloads (`offload_codec` in the manifest, `offloadCodec` in
//! the client's options, `--offload-codec` in the CLI): raw input bytes, or an image in one of the
//! protocol's [`SampleEncoding`]s at a quality.

use serde::{Deserialize, Serialize};

use crate::protocol::SampleEncoding;

/// JPEG quality when none is named.
pub const DEFAULT_JPEG_QUALITY: u8 = 85;
/// WebP quality when none is named.
pub const DEFAULT_WEBP_QUALITY: u8 = 80;

/// An offload encoding and its quality, written `raw`, `png`, `jpeg:85` or `webp:80` (quality
/// 1-100, for the lossy ones only; `jpeg` alone is `jpeg:85`, `webp` alone `webp:80`).
///
/// ```
/// use hiedge_core::manifest::OffloadCodec;
/// use hiedge_core::protocol::SampleEncoding;
/// let codec: OffloadCodec = "jpeg:90".parse().unwrap();
/// assert_eq!((codec.encoding, codec.quality), (SampleEncoding::Jpeg, Some(90)));
/// assert_eq!(codec.to_string(), "jpeg:90");
/// assert!("png:50".parse::<OffloadCodec>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OffloadCodec {
    /// The body's encoding.
    pub encoding: SampleEncoding,
    /// 1-100 for `jpeg` and `webp`; `None` for `raw` and `png`.
    pub quality: Option<u8>,
}

impl OffloadCodec {
    /// Raw input bytes.
    pub const RAW: OffloadCodec = OffloadCodec { encoding: SampleEncoding::Raw, quality: None };

    /// The quality as the browser's `convertToBlob` takes it (0-1), for the lossy encodings.
    pub fn quality_fraction(&self) -> Option<f64> {
        self.quality.map(|q| q as f64 / 100.0)
    }
}

impl std::str::FromStr for OffloadCodec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, quality) = match s.split_once(':') {
            Some((name, q)) => (name, Some(q)),
            None => (s, None),
        };
        let encoding = SampleEncoding::ALL
            .into_iter()
            .find(|e| e.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("`{s}` is not an offload codec: use raw, png, jpeg[:1-100] or webp[:1-100]"))?;
        let default = match encoding {
            SampleEncoding::Jpeg => Some(DEFAULT_JPEG_QUALITY),
            SampleEncoding::Webp => Some(DEFAULT_WEBP_QUALITY),
            SampleEncoding::Raw | SampleEncoding::Png => None,
        };
        let quality = match (quality, default) {
            (None, d) => d,
            (Some(q), Some(_)) => match q.trim().parse::<u8>() {
                Ok(q) if (1..=100).contains(&q) => Some(q),
                _ => return Err(format!("the quality in `{s}` must be a whole number from 1 to 100")),
            },
            (Some(_), None) => return Err(format!("`{s}`: {} is lossless and takes no quality", encoding.name())),
        };
        Ok(OffloadCodec { encoding, quality })
    }
}

impl std::fmt::Display for OffloadCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.quality {
            Some(q) => write!(f, "{}:{q}", self.encoding.name()),
            None => f.write_str(self.encoding.name()),
        }
    }
}

impl TryFrom<String> for OffloadCodec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<OffloadCodec> for String {
    fn from(c: OffloadCodec) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, encoding, quality, printed) in [
            ("raw", SampleEncoding::Raw, None, "raw"),
            ("png", SampleEncoding::Png, None, "png"),
            ("jpeg", SampleEncoding::Jpeg, Some(85), "jpeg:85"),
            ("JPEG:1", SampleEncoding::Jpeg, Some(1), "jpeg:1"),
            ("webp", SampleEncoding::Webp, Some(80), "webp:80"),
            ("webp:100", SampleEncoding::Webp, Some(100), "webp:100"),
        ] {
            let c: OffloadCodec = text.parse().unwrap();
            assert_eq!((c.encoding, c.quality, c.to_string().as_str()), (encoding, quality, printed), "{text}");
        }
        for bad in ["", "gif", "jpeg:0", "jpeg:101", "jpeg:x", "raw:5", "png:9", "webp:-1"] {
            assert!(bad.parse::<OffloadCodec>().is_err(), "{bad}");
        }
        let c: OffloadCodec = serde_json::from_str("\"jpeg:70\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"jpeg:70\"");
        assert_eq!(c.quality_fraction(), Some(0.7));
    }
}
