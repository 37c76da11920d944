//! The Worker's structured request log: one JSON line per inference request (classify, split),
//! written with `console.log`, which Workers Logs (`[observability]` in wrangler.toml) indexes by
//! field. What a team needs to watch a deployment (set, model, encoding, bytes, status, error code,
//! inference time, the answer's label and confidence) and never the sample, a header's value or an
//! error's private detail.

use serde::Serialize;

use crate::protocol::{ApiError, ClassifyResponse, ErrorCode, SampleEncoding};

/// The `event` field of every request line, to filter on.
pub const REQUEST_EVENT: &str = "hiedge.request";

/// One request as a Workers Analytics Engine data point (see [`RequestLog::analytics_point`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsPoint {
    /// The sampling index: the model set.
    pub index: String,
    /// Route, model id, encoding, error code.
    pub blobs: [String; 4],
    /// Status, body bytes, inference ms, label, confidence.
    pub doubles: [f64; 5],
}

/// One inference request, as logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestLog {
    /// Always [`REQUEST_EVENT`].
    pub event: &'static str,
    /// `classify` or `split`.
    pub route: &'static str,
    /// The model set, once known.
    pub set: Option<String>,
    /// The answering model's id (`name@sha256 prefix`).
    pub model: Option<String>,
    /// How the sample came (`raw`, `png`, `jpeg`, `webp`).
    pub encoding: Option<SampleEncoding>,
    /// Body bytes read.
    pub bytes: Option<usize>,
    /// The HTTP status answered.
    pub status: u16,
    /// The error code, when it failed.
    pub code: Option<ErrorCode>,
    /// Inference time inside the Worker (`null` where the runtime's clock does not advance).
    pub infer_ms: Option<f64>,
    /// The answer's label.
    pub label: Option<u32>,
    /// The answer's top probability.
    pub confidence: Option<f32>,
}

impl RequestLog {
    /// A request on `route` (`classify`, `split`) about to be served.
    pub fn new(route: &'static str) -> Self {
        Self {
            event: REQUEST_EVENT,
            route,
            set: None,
            model: None,
            encoding: None,
            bytes: None,
            status: 0,
            code: None,
            infer_ms: None,
            label: None,
            confidence: None,
        }
    }

    /// Records the body as read: its encoding and length.
    pub fn received(&mut self, encoding: SampleEncoding, bytes: usize) {
        (self.encoding, self.bytes) = (Some(encoding), Some(bytes));
    }

    /// Records the answer (status 200).
    pub fn answered(&mut self, r: &ClassifyResponse) {
        self.status = 200;
        self.model = Some(r.model.clone());
        self.infer_ms = r.infer_ms;
        self.label = Some(r.label);
        self.confidence = r.probs.get(r.label as usize).copied();
    }

    /// Records the error answered instead (its status and code; never its detail).
    pub fn failed(&mut self, e: &ApiError) {
        self.status = e.status();
        self.code = Some(e.code);
    }

    /// The same request as one Workers Analytics Engine data point (written where the Worker has
    /// the `HIEDGE_ANALYTICS` binding). Index: the set (`-` before it is known), so a query can
    /// sample per set. Blobs: `blob1` route, `blob2` model id, `blob3` encoding, `blob4` error code
    /// (each `""` when absent). Doubles: `double1` status, `double2` body bytes, `double3` inference
    /// ms, `double4` label, `double5` confidence (each -1 when absent).
    pub fn analytics_point(&self) -> AnalyticsPoint {
        // The code's name as the JSON line writes it (serde's), or "".
        let code = self.code.and_then(|c| serde_json::to_value(c).ok()).and_then(|v| v.as_str().map(String::from));
        AnalyticsPoint {
            index: self.set.clone().unwrap_or_else(|| "-".into()),
            blobs: [
                self.route.to_string(),
                self.model.clone().unwrap_or_default(),
                self.encoding.map_or("", SampleEncoding::name).to_string(),
                code.unwrap_or_default(),
            ],
            doubles: [
                f64::from(self.status),
                self.bytes.map_or(-1.0, |b| b as f64),
                self.infer_ms.unwrap_or(-1.0),
                self.label.map_or(-1.0, f64::from),
                self.confidence.map_or(-1.0, f64::from),
            ],
        }
    }

    /// The log line.
    pub fn to_json(&self) -> String {
        // Plain data of known types: serialising cannot fail; an empty object would still be a line.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_fields_and_never_the_detail() {
        let mut log = RequestLog::new("classify");
        log.set = Some("fashion-mnist".into());
        log.received(SampleEncoding::Webp, 308);
        log.answered(&ClassifyResponse {
            label: 2,
            probs: vec![0.1, 0.2, 0.7],
            model: "large@0123456789ab".into(),
            infer_ms: None,
            tier: Default::default(),
            why: None,
        });
        let v: serde_json::Value = serde_json::from_str(&log.to_json()).unwrap();
        assert_eq!(v["event"], REQUEST_EVENT);
        assert_eq!(
            (v["set"].as_str(), v["encoding"].as_str(), v["bytes"].as_u64()),
            (Some("fashion-mnist"), Some("webp"), Some(308))
        );
        assert_eq!(
            (v["status"].as_u64(), v["label"].as_u64(), v["model"].as_str()),
            (Some(200), Some(2), Some("large@0123456789ab"))
        );
        assert!((v["confidence"].as_f64().unwrap() - 0.7).abs() < 1e-6);
        assert!(v["infer_ms"].is_null() && v["code"].is_null());

        let mut log = RequestLog::new("classify");
        log.failed(&ApiError::internal("inference failed on this sample", "secret/path/large.nnef.tar: tract says no"));
        let line = log.to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["status"].as_u64(), v["code"].as_str()), (Some(500), Some("internal")));
        assert!(!line.contains("secret") && !line.contains("tract"), "{line}");
        let point = log.analytics_point();
        assert_eq!(point.index, "-");
        assert_eq!(point.blobs, ["classify".to_string(), String::new(), String::new(), "internal".to_string()]);
        assert_eq!(point.doubles, [500.0, -1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn an_analytics_point_carries_the_line_s_fields() {
        let mut log = RequestLog::new("split");
        log.set = Some("mnist".into());
        log.received(SampleEncoding::Raw, 784);
        log.answered(&ClassifyResponse {
            label: 1,
            probs: vec![0.25, 0.75],
            model: "tail@ab".into(),
            infer_ms: Some(3.5),
            tier: Default::default(),
            why: None,
        });
        let p = log.analytics_point();
        assert_eq!(p.index, "mnist");
        assert_eq!(p.blobs, ["split".to_string(), "tail@ab".to_string(), "raw".to_string(), String::new()]);
        assert_eq!(p.doubles, [200.0, 784.0, 3.5, 1.0, 0.75]);
    }
}
