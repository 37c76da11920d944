//! The checks of a request body before any model sees it: a classify body's headers and length,
//! and a split request's quantised features.

use serde::{Deserialize, Serialize};

use super::{ApiError, ErrorCode, OCTET_STREAM};

/// Bytes before the values in a features body: `offset` and `scale`, little-endian f32.
pub const FEATURES_HEADER_LEN: usize = 8;

/// Checks a features body (`POST /v1/models/<set>/split/<trunk>`) of `feature_len` values: not
/// empty, not over `max_body`, exactly `FEATURES_HEADER_LEN + feature_len` bytes, and a header of a
/// finite offset and a finite positive scale. Returns `(offset, scale)`.
pub fn check_features_body(body: &[u8], feature_len: usize, max_body: usize) -> Result<(f32, f32), ApiError> {
    let expected = FEATURES_HEADER_LEN + feature_len;
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            format!("the body is empty; send the {expected} bytes of quantised features"),
        ));
    }
    if body.len() > max_body {
        return Err(too_large(body.len(), max_body));
    }
    if body.len() != expected {
        return Err(ApiError::new(
            ErrorCode::WrongInputLength,
            format!(
                "the body has {} bytes but {feature_len} quantised features take {expected} \
                 ({FEATURES_HEADER_LEN} header bytes: offset and scale as little-endian f32)",
                body.len()
            ),
        ));
    }
    let f32_at = |i: usize| f32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let (offset, scale) = (f32_at(0), f32_at(4));
    // Every value the body can stand for (offset + q * scale, q <= 255) must be finite too.
    if !offset.is_finite() || !scale.is_finite() || scale <= 0.0 || !(offset + 255.0 * scale).is_finite() {
        return Err(ApiError::new(
            ErrorCode::InvalidFeatures,
            format!("the features header must be a finite offset and a finite positive scale, is {offset} and {scale}"),
        ));
    }
    Ok((offset, scale))
}

/// How a classify body carries its sample: the model's raw input bytes, or an encoded image that
/// the Worker decodes and converts by the manifest's rule (`runtime::image::to_model_pixels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleEncoding {
    /// `application/octet-stream`: exactly the manifest's input bytes.
    Raw,
    /// `image/png` (lossless).
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `image/webp` (lossy or lossless).
    Webp,
}

impl SampleEncoding {
    /// Every encoding, raw first.
    pub const ALL: [SampleEncoding; 4] =
        [SampleEncoding::Raw, SampleEncoding::Png, SampleEncoding::Jpeg, SampleEncoding::Webp];

    /// The `Content-Type` of a body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            SampleEncoding::Raw => OCTET_STREAM,
            SampleEncoding::Png => "image/png",
            SampleEncoding::Jpeg => "image/jpeg",
            SampleEncoding::Webp => "image/webp",
        }
    }

    /// The encoding of a `Content-Type` value (its parameters and case ignored), if it is one.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|e| e.content_type() == essence)
    }

    /// The name used in manifests and options (`raw`, `png`, `jpeg`, `webp`).
    pub fn name(self) -> &'static str {
        match self {
            SampleEncoding::Raw => "raw",
            SampleEncoding::Png => "png",
            SampleEncoding::Jpeg => "jpeg",
            SampleEncoding::Webp => "webp",
        }
    }
}

/// Checks a classify request's headers before its body is read: a content type of one of the
/// [`SampleEncoding`]s (ignoring parameters and case) and, when given, the declared length against
/// `max_body`. Returns the body's encoding.
pub fn check_classify_headers(
    content_type: Option<&str>,
    content_length: Option<&str>,
    max_body: usize,
) -> Result<SampleEncoding, ApiError> {
    let Some(encoding) = content_type.and_then(SampleEncoding::from_content_type) else {
        let accepted: Vec<String> = SampleEncoding::ALL.iter().map(|e| format!("`{}`", e.content_type())).collect();
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "classify takes the raw pixels as `Content-Type: {OCTET_STREAM}` or an encoded image ({}), got {}",
                accepted[1..].join(", "),
                content_type
                    .map_or("no content type".into(), |c| format!("`{}`", c.chars().take(80).collect::<String>()))
            ),
        ));
    };
    if let Some(len) = content_length {
        match len.trim().parse::<u64>() {
            Ok(n) if n > max_body as u64 => return Err(too_large(n as usize, max_body)),
            Ok(_) => {}
            Err(_) => return Err(ApiError::new(ErrorCode::WrongInputLength, "Content-Length is not a number")),
        }
    }
    Ok(encoding)
}

fn too_large(n: usize, max_body: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("body of {n} bytes exceeds the limit of {max_body} bytes"))
}

/// Checks a classify body in `encoding`: not empty, not over `max_body`, and a raw body exactly
/// `expected` bytes (an encoded image's size is checked when it is decoded).
pub fn check_classify_body(
    body: &[u8],
    encoding: SampleEncoding,
    expected: usize,
    max_body: usize,
) -> Result<(), ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            format!("the body is empty; send the {expected} pixel bytes or an encoded image"),
        ));
    }
    if body.len() > max_body {
        return Err(too_large(body.len(), max_body));
    }
    if encoding == SampleEncoding::Raw && body.len() != expected {
        return Err(ApiError::new(
            ErrorCode::WrongInputLength,
            format!("the body has {} bytes but the model expects {expected}", body.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_headers() {
        let ok = |ct: &str| check_classify_headers(Some(ct), Some("784"), 4096);
        assert_eq!(ok("application/octet-stream").unwrap(), SampleEncoding::Raw);
        assert_eq!(ok("Application/Octet-Stream; charset=binary").unwrap(), SampleEncoding::Raw);
        assert_eq!(ok("image/png").unwrap(), SampleEncoding::Png);
        assert_eq!(ok("IMAGE/JPEG; q=1").unwrap(), SampleEncoding::Jpeg);
        assert_eq!(ok("image/webp").unwrap(), SampleEncoding::Webp);
        for ct in ["application/json", "text/plain", "multipart/form-data", "", "image/gif", "image/svg+xml"] {
            assert_eq!(ok(ct).unwrap_err().status(), 415, "{ct}");
        }
        assert_eq!(check_classify_headers(None, None, 10).unwrap_err().status(), 415);
        let e = check_classify_headers(Some(OCTET_STREAM), Some("10485760"), 4096).unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::PayloadTooLarge, 413));
        assert!(check_classify_headers(Some(OCTET_STREAM), Some("abc"), 4096).is_err());
        assert!(check_classify_headers(Some(OCTET_STREAM), None, 4096).is_ok());
    }

    #[test]
    fn classify_body() {
        let raw = SampleEncoding::Raw;
        assert_eq!(check_classify_body(&[], raw, 784, 4096).unwrap_err().code, ErrorCode::EmptyBody);
        for n in [783, 785, 1] {
            let e = check_classify_body(&vec![0; n], raw, 784, 4096).unwrap_err();
            assert_eq!(e.code, ErrorCode::WrongInputLength);
            assert!(e.message.contains(&n.to_string()) && e.message.contains("784"), "{}", e.message);
        }
        assert_eq!(check_classify_body(&vec![0; 5000], raw, 784, 4096).unwrap_err().status(), 413);
        assert!(check_classify_body(&[0; 784], raw, 784, 4096).is_ok());
        // An image's length is its own: only emptiness and the cap are checked here.
        assert!(check_classify_body(&[0; 100], SampleEncoding::Jpeg, 784, 4096).is_ok());
        assert_eq!(check_classify_body(&[], SampleEncoding::Png, 784, 4096).unwrap_err().code, ErrorCode::EmptyBody);
        assert_eq!(check_classify_body(&[0; 4097], SampleEncoding::Webp, 784, 4096).unwrap_err().status(), 413);
        for e in SampleEncoding::ALL {
            assert_eq!(SampleEncoding::from_content_type(e.content_type()), Some(e));
        }
    }

    #[test]
    fn features_body() {
        let body = |offset: f32, scale: f32, n: usize| {
            let mut b = offset.to_le_bytes().to_vec();
            b.extend_from_slice(&scale.to_le_bytes());
            b.extend(std::iter::repeat_n(7u8, n));
            b
        };
        assert_eq!(check_features_body(&body(0.0, 0.5, 784), 784, 4096).unwrap(), (0.0, 0.5));
        assert_eq!(check_features_body(&[], 784, 4096).unwrap_err().code, ErrorCode::EmptyBody);
        for n in [0, 783, 785, 4000] {
            let e = check_features_body(&body(0.0, 0.5, n), 784, 4096).unwrap_err();
            assert_eq!(
                e.code,
                if n + 8 > 4096 { ErrorCode::PayloadTooLarge } else { ErrorCode::WrongInputLength },
                "{n}"
            );
        }
        for (o, s) in
            [(f32::NAN, 1.0), (0.0, f32::INFINITY), (0.0, 0.0), (0.0, -1.0), (f32::NEG_INFINITY, 1.0), (0.0, 3e38)]
        {
            let e = check_features_body(&body(o, s, 784), 784, 4096).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::InvalidFeatures, 400), "{o} {s}");
        }
        assert_eq!(ErrorCode::SplitMismatch.status(), 409);
    }
}
