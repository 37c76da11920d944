//! The offload request: `POST {endpoint}/v1/models/<set>/classify` (or `/v1/classify` for the
//! Worker's default set) with the model-sized input, under a timeout.
//! Every failure becomes [`RemoteOutcome::Failed`] with a reason; nothing here rejects.

use hiedge_core::manifest::{InputSpec, OffloadCodec};
use hiedge_core::protocol::{self, ClassifyResponse, ErrorBody, SampleEncoding, CLASSIFY_PATH, OCTET_STREAM};
use hiedge_core::session::RemoteOutcome;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::{
    coded_error, describe, fetch_with_request, now_ms, read_capped, sleep, to_js, INVALID_OPTIONS, MAX_JSON_BYTES,
};
use crate::options::{millis, OffloadRequest};

/// Default offload timeout.
pub const DEFAULT_TIMEOUT_MS: f64 = 3000.0;

/// Where and how offloads are sent.
#[derive(Debug, Clone)]
pub struct OffloadClient {
    base: Option<String>,
    path: String,
    token: Option<String>,
    timeout_ms: f64,
    delay_ms: f64,
    /// How classify bodies are encoded, and the sample's height, width and channels.
    codec: OffloadCodec,
    shape: (usize, usize, usize),
}

/// A request body and its `Content-Type`.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes sent.
    pub bytes: Vec<u8>,
    /// Their type.
    pub content_type: &'static str,
}

impl Body {
    /// Raw bytes (`application/octet-stream`).
    pub fn raw(bytes: Vec<u8>) -> Body {
        Body { bytes, content_type: OCTET_STREAM }
    }
}

impl OffloadClient {
    /// From the `endpoint`, `modelSet`, `token`, `timeoutMs` and `networkDelayMs` options.
    pub fn from_options(
        endpoint: Option<String>,
        model_set: Option<&str>,
        token: Option<String>,
        timeout_ms: Option<f64>,
        delay_ms: Option<f64>,
    ) -> Result<Self, JsValue> {
        let mut client = OffloadClient {
            base: None,
            path: model_set.map_or_else(|| CLASSIFY_PATH.to_string(), protocol::set_classify_path),
            token: token.filter(|t| !t.is_empty()),
            timeout_ms: millis(timeout_ms, "timeoutMs", DEFAULT_TIMEOUT_MS)?,
            delay_ms: millis(delay_ms, "networkDelayMs", 0.0)?,
            codec: OffloadCodec::RAW,
            shape: (0, 0, 0),
        };
        client.set_endpoint(endpoint)?;
        Ok(client)
    }

    /// Sets how samples of `input` are encoded: `option` (the `offloadCodec` option, read by
    /// [`codec_option`]) when given, else the manifest's `offload_codec`, else raw.
    pub fn set_codec(&mut self, option: Option<OffloadCodec>, manifest_codec: Option<OffloadCodec>, input: &InputSpec) {
        self.codec = option.or(manifest_codec).unwrap_or(OffloadCodec::RAW);
        let (h, w) = input.height_width();
        self.shape = (h, w, input.channels());
    }

    /// The body of one sample's offload: encoded by the codec in the browser
    /// (`OffscreenCanvas.convertToBlob`), or raw when the codec is raw, when the browser cannot
    /// encode that type, or when the encoded image is not smaller than the raw sample (so a body
    /// never outgrows the Worker's cap for the set, its raw length).
    pub async fn encode(&self, pixels: Vec<u8>) -> Body {
        let (h, w, channels) = self.shape;
        if self.codec.encoding == SampleEncoding::Raw || pixels.len() != h * w * channels || !matches!(channels, 1 | 3)
        {
            return Body::raw(pixels);
        }
        match encode_image(&pixels, w, h, channels, self.codec).await {
            Ok(bytes) if bytes.len() < pixels.len() => Body { bytes, content_type: self.codec.encoding.content_type() },
            _ => Body::raw(pixels),
        }
    }

    /// Sets the Worker's base URL (`None`: no Worker, every offload falls back). The token is
    /// bound to the origin it was given for: an endpoint on another origin (or none) drops it, so
    /// a token is never sent to a server it was not meant for.
    pub fn set_endpoint(&mut self, endpoint: Option<String>) -> Result<(), JsValue> {
        let base = match endpoint {
            None => None,
            Some(e) if e.starts_with("http://") || e.starts_with("https://") || e.starts_with('/') => {
                Some(e.trim_end_matches('/').to_string())
            }
            Some(e) => return Err(coded_error(INVALID_OPTIONS, &format!("endpoint `{e}` is not an http(s) URL"))),
        };
        if self.base.is_some() && self.base.as_deref().and_then(origin_of) != base.as_deref().and_then(origin_of) {
            self.token = None;
        }
        self.base = base;
        Ok(())
    }

    /// `POST {endpoint}{path}` with `body` (split features, raw input or an encoded image), like
    /// [`classify`](Self::classify); the round trip is measured on `clock` (ms).
    pub async fn send_to(
        &self,
        path: &str,
        bytes: &[u8],
        content_type: &str,
        classes: usize,
        clock: &dyn Fn() -> f64,
    ) -> RemoteOutcome {
        let start = clock();
        let result = match &self.base {
            None => Err("no endpoint is configured".to_string()),
            Some(base) => {
                if self.delay_ms > 0.0 {
                    sleep(self.delay_ms).await;
                }
                self.post(&format!("{base}{path}"), bytes, content_type, classes).await
            }
        };
        let round_trip_ms = clock() - start;
        match result {
            Ok(response) => RemoteOutcome::Answered { response, round_trip_ms },
            Err(reason) => RemoteOutcome::Failed { reason, round_trip_ms },
        }
    }

    /// The offload timeout (ms).
    #[cfg(not(feature = "device"))]
    pub fn timeout_ms(&self) -> f64 {
        self.timeout_ms
    }

    /// Sets the emulated extra delay.
    #[cfg(feature = "device")]
    pub fn set_delay(&mut self, ms: f64) -> Result<(), JsValue> {
        self.delay_ms = millis(Some(ms), "networkDelayMs", 0.0)?;
        Ok(())
    }

    /// Sends one sample's body (from [`encode`](Self::encode)) to the classify route; the round
    /// trip covers the emulated delay, the request and parsing the answer.
    pub async fn classify(&self, body: &Body, classes: usize) -> RemoteOutcome {
        self.send_to(&self.path, &body.bytes, body.content_type, classes, &now_ms).await
    }

    async fn post(
        &self,
        url: &str,
        bytes: &[u8],
        content_type: &str,
        classes: usize,
    ) -> Result<ClassifyResponse, String> {
        // The timeout covers the request and reading the answer.
        let signal = web_sys::AbortSignal::timeout_with_f64(self.timeout_ms);
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_mode(web_sys::RequestMode::Cors);
        // An answer comes from the endpoint the page named, or from nowhere.
        init.set_redirect(web_sys::RequestRedirect::Error);
        init.set_signal(Some(&signal));
        let headers = web_sys::Headers::new().map_err(|e| describe(&e))?;
        headers.set("Content-Type", content_type).map_err(|e| describe(&e))?;
        if let Some(token) = &self.token {
            headers.set("Authorization", &format!("Bearer {token}")).map_err(|e| describe(&e))?;
        }
        init.set_headers(&headers);
        let bytes = js_sys::Uint8Array::from(bytes);
        init.set_body(&bytes);
        let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| describe(&e))?;

        self.send(&request, &signal, classes).await.map_err(|reason| {
            if signal.aborted() {
                format!("timeout after {} ms", self.timeout_ms)
            } else {
                reason
            }
        })
    }

    async fn send(
        &self,
        request: &web_sys::Request,
        signal: &web_sys::AbortSignal,
        classes: usize,
    ) -> Result<ClassifyResponse, String> {
        let resp = JsFuture::from(fetch_with_request(request))
            .await
            .map_err(|e| format!("network error: {}", describe(&e)))?;
        let resp: web_sys::Response = resp.dyn_into().map_err(|e| describe(&e))?;
        let bytes = read_capped(&resp, signal, MAX_JSON_BYTES, &request.url(), "answer", self.timeout_ms, &|_| ())
            .await
            .map_err(|e| format!("network error reading the response: {}", describe(&e)))?;
        let text = String::from_utf8_lossy(&bytes);
        if !resp.ok() {
            let detail = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| format!("{}: {}", serde_json::to_string(&b.error.code).unwrap_or_default(), b.error.message))
                .unwrap_or_else(|_| text.chars().take(200).collect());
            return Err(format!("HTTP {}: {detail}", resp.status()));
        }
        ClassifyResponse::from_json(&text, classes).map_err(|e| format!("bad response: {e}"))
    }
}

/// The `offloadCodec` option (`"jpeg:85"`, ...), read once where the options are: `InvalidOptions`
/// naming the option when it is not a codec.
pub fn codec_option(text: Option<&str>) -> Result<Option<OffloadCodec>, JsValue> {
    text.map(|t| t.parse().map_err(|e: String| coded_error(INVALID_OPTIONS, &format!("`offloadCodec`: {e}"))))
        .transpose()
}

/// Model-input pixels (gray or RGB, interleaved) encoded by the browser: drawn opaque on an
/// `OffscreenCanvas` of the model's size and `convertToBlob`-ed to the codec's type and quality.
/// Fails where the browser has no `OffscreenCanvas` or writes another type (Safari's WebP).
async fn encode_image(
    pixels: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    codec: OffloadCodec,
) -> Result<Vec<u8>, String> {
    let d = |e: JsValue| describe(&e);
    let rgba: Vec<u8> = if channels == 1 {
        pixels.iter().flat_map(|&v| [v, v, v, 255]).collect()
    } else {
        pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
    };
    let canvas = web_sys::OffscreenCanvas::new(w as u32, h as u32).map_err(d)?;
    let context: web_sys::OffscreenCanvasRenderingContext2d =
        canvas.get_context("2d").map_err(d)?.ok_or("no 2d context")?.dyn_into().map_err(|o| d(o.into()))?;
    let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(&rgba), w as u32, h as u32)
        .map_err(d)?;
    context.put_image_data(&data, 0.0, 0.0).map_err(d)?;
    let options = web_sys::ImageEncodeOptions::new();
    let content_type = codec.encoding.content_type();
    options.set_type(content_type);
    if let Some(q) = codec.quality_fraction() {
        options.set_quality(q);
    }
    let blob: web_sys::Blob = JsFuture::from(canvas.convert_to_blob_with_options(&options).map_err(d)?)
        .await
        .map_err(d)?
        .dyn_into()
        .map_err(d)?;
    if blob.type_() != content_type {
        return Err(format!("this browser wrote `{}` for `{content_type}`", blob.type_()));
    }
    let buffer = JsFuture::from(blob.array_buffer()).await.map_err(d)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// `scheme://host:port` of an absolute http(s) URL; a path-only endpoint (`/api`) is the page's own
/// origin, written `""` here (two path-only endpoints share it).
fn origin_of(url: &str) -> Option<String> {
    if url.starts_with('/') {
        return Some(String::new());
    }
    web_sys::Url::new(url).ok().map(|u| u.origin())
}

/// The `allowOffload` option: a function, or nothing.
pub fn allow_offload_hook(value: &JsValue) -> Result<Option<js_sys::Function>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_ref::<js_sys::Function>()
        .cloned()
        .map(Some)
        .ok_or_else(|| coded_error(INVALID_OPTIONS, "`allowOffload` must be a function (or null)"))
}

/// Asks the `allowOffload` hook about a request: allowed only when it returns `true` or a Promise
/// of `true`; a throw or a rejection refuses.
pub async fn ask_hook(hook: &js_sys::Function, request: &OffloadRequest) -> bool {
    let Ok(request) = to_js(request) else { return false };
    let Ok(answer) = hook.call1(&JsValue::NULL, &request) else { return false };
    let answer = match answer.dyn_into::<js_sys::Promise>() {
        Ok(promise) => match JsFuture::from(promise).await {
            Ok(v) => v,
            Err(_) => return false,
        },
        Err(value) => value,
    };
    answer.as_bool() == Some(true)
}
