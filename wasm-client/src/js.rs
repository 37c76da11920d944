//! Conversions between JavaScript values and Rust, errors with a `code`, and the JS globals the
//! client uses.

use js_sys::{ArrayBuffer, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// `globalThis.fetch` (window or worker).
    #[wasm_bindgen(js_name = fetch)]
    pub fn fetch_with_request(request: &web_sys::Request) -> js_sys::Promise;
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_url(url: &str) -> js_sys::Promise;
    /// `globalThis.setTimeout`.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// `error.code` of errors the facade raises itself: the options could not be read.
pub const INVALID_OPTIONS: &str = "InvalidOptions";
/// `error.code` when a manifest or model URL could not be fetched.
pub const FETCH_FAILED: &str = "FetchFailed";

/// `performance.now()` in milliseconds.
pub fn now_ms() -> f64 {
    performance_now()
}

/// A JS `Error` with this message and `error.code = code`.
pub fn coded_error(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.into()
}

/// A hiedge-core error as a JS `Error` whose `code` names the variant (`"InputLength"`, ...).
pub fn core_error(e: hiedge_core::Error) -> JsValue {
    coded_error(e.code(), &e.to_string())
}

/// A Rust value as a plain JS object (`None` as `null`, maps as objects).
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| coded_error("Internal", &format!("could not convert a result to JavaScript: {e}")))
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// `GET url`, which must answer 2xx; with `Authorization: Bearer <token>` when given (only ever
/// for the Worker's own URLs).
async fn fetch_ok(url: &str, what: &str, token: Option<&str>) -> Result<web_sys::Response, JsValue> {
    let failed = |why: String| coded_error(FETCH_FAILED, &format!("could not fetch the {what} from {url}: {why}"));
    let promise = match token {
        None => fetch_url(url),
        Some(token) => {
            let init = web_sys::RequestInit::new();
            let headers = web_sys::Headers::new().map_err(|e| failed(describe(&e)))?;
            headers.set("Authorization", &format!("Bearer {token}")).map_err(|e| failed(describe(&e)))?;
            init.set_headers(&headers);
            let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| failed(describe(&e)))?;
            fetch_with_request(&request)
        }
    };
    let resp = JsFuture::from(promise).await.map_err(|e| failed(describe(&e)))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|e| failed(describe(&e)))?;
    if !resp.ok() {
        return Err(failed(format!("HTTP {}", resp.status())));
    }
    Ok(resp)
}

/// Where a manifest comes from.
pub enum ManifestSource {
    /// JSON text (given, or fetched from a URL).
    Text(String),
    /// A JS object, read with serde-wasm-bindgen.
    Object(JsValue),
}

/// A manifest option: an object, JSON text, or a URL to fetch.
pub async fn manifest_source(value: &JsValue) -> Result<ManifestSource, JsValue> {
    if let Some(s) = value.as_string() {
        if s.trim_start().starts_with('{') {
            return Ok(ManifestSource::Text(s));
        }
        return Ok(ManifestSource::Text(fetch_text(&s, "manifest", None).await?));
    }
    if value.is_object() {
        return Ok(ManifestSource::Object(value.clone()));
    }
    Err(coded_error(INVALID_OPTIONS, "`manifest` must be an object, JSON text or a URL"))
}

/// Bytes from a `Uint8Array`, an `ArrayBuffer`, or a URL to fetch.
pub async fn bytes_or_fetch(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if let Some(b) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Uint8Array::new(b).to_vec());
    }
    if let Some(url) = value.as_string() {
        return fetch_bytes(&url, what, None).await;
    }
    Err(coded_error(INVALID_OPTIONS, &format!("`{what}` must be a Uint8Array, an ArrayBuffer or a URL")))
}

/// The text at `url` (`token`: see [`fetch_ok`]).
pub async fn fetch_text(url: &str, what: &str, token: Option<&str>) -> Result<String, JsValue> {
    let resp = fetch_ok(url, what, token).await?;
    let text = JsFuture::from(resp.text()?).await?;
    text.as_string().ok_or_else(|| coded_error(FETCH_FAILED, &format!("the {what} at {url} is not text")))
}

/// The bytes at `url` (`token`: see [`fetch_ok`]).
pub async fn fetch_bytes(url: &str, what: &str, token: Option<&str>) -> Result<Vec<u8>, JsValue> {
    let resp = fetch_ok(url, what, token).await?;
    let buf = JsFuture::from(resp.array_buffer()?).await?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// A short description of a thrown JS value.
pub fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(err.name()), String::from(err.message()));
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}
