//! Requests to a local Worker for the integration tests: one request type, one sender (which sends
//! again a request wrangler dev's own proxy lost), one check of the protocol's JSON errors.

use hiedge_cli::wrangler::{agent, dropped_by_dev_proxy, DEV_PROXY_RESENDS};
use hiedge_core::protocol::{ErrorBody, ErrorCode};
use ureq::http;

/// One request: method, path, headers, body.
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A request with no headers and no body.
pub fn req(method: &'static str, path: &str) -> Req {
    Req { method, path: path.into(), headers: vec![], body: vec![] }
}

impl Req {
    /// With one more header.
    pub fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    /// With a raw-pixel body (`application/octet-stream`).
    pub fn octets(self, body: Vec<u8>) -> Self {
        Req { body, ..self }.header("Content-Type", "application/octet-stream")
    }
    /// With this body and no `Content-Type` added.
    pub fn body(self, body: Vec<u8>) -> Self {
        Req { body, ..self }
    }
}

/// A response: status, content type, headers and the body as text (at most 1 MiB).
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends a request to `base` (the Worker's URL) and reads the answer.
pub fn send(base: &str, r: &Req) -> Resp {
    let mut attempt = 0;
    loop {
        let mut b = http::Request::builder().method(r.method).uri(format!("{base}{}", r.path));
        for (k, v) in &r.headers {
            b = b.header(*k, v.as_str());
        }
        let request = b.body(r.body.clone()).unwrap();
        let mut resp = agent().run(request).unwrap_or_else(|e| panic!("{} {}: transport error {e}", r.method, r.path));
        let headers = resp.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
        let status = resp.status().as_u16();
        // wrangler dev's proxy lost the request (workers-sdk#14641, its answer asks to send it
        // again); the Worker's own answers are never this one.
        if dropped_by_dev_proxy(status, &body) && attempt < DEV_PROXY_RESENDS {
            eprintln!("{} {}: wrangler dev's proxy lost it (workers-sdk#14641); sent again", r.method, r.path);
            attempt += 1;
            continue;
        }
        return Resp { status, content_type, headers, body };
    }
}

/// A JSON error of this status and code with a message a person can read.
pub fn assert_error(resp: &Resp, status: u16, code: ErrorCode, what: &str) {
    assert_eq!(resp.status, status, "{what}: status (body {})", resp.body);
    assert!(resp.content_type.starts_with("application/json"), "{what}: content type {}", resp.content_type);
    let body: ErrorBody =
        serde_json::from_str(&resp.body).unwrap_or_else(|e| panic!("{what}: not an error JSON ({e}): {}", resp.body));
    assert_eq!(body.error.code, code, "{what}: {}", body.error.message);
    assert!(body.error.message.len() > 10, "{what}: message too short: {}", body.error.message);
}
