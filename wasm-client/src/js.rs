//! Small conversions between JavaScript values and Rust, and the JS globals the client uses.

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
    pub fn set_timeout(callback: &js_sys::Function, ms: f64) -> JsValue;
    /// `globalThis.clearTimeout`.
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// `performance.now()` in milliseconds.
pub fn now_ms() -> f64 {
    performance_now()
}

/// A JS `Error` with this message.
pub fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// A Rust value as a plain JS object (via JSON, so `None` becomes `null`).
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let json = serde_json::to_string(value).map_err(|e| js_error(&e.to_string()))?;
    js_sys::JSON::parse(&json)
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

async fn fetch_ok(url: &str, what: &str) -> Result<web_sys::Response, JsValue> {
    let resp = JsFuture::from(fetch_url(url))
        .await
        .map_err(|e| js_error(&format!("could not fetch the {what} from {url}: {}", describe(&e))))?;
    let resp: web_sys::Response = resp.dyn_into()?;
    if !resp.ok() {
        return Err(js_error(&format!("could not fetch the {what} from {url}: HTTP {}", resp.status())));
    }
    Ok(resp)
}

/// JSON text from a value that is an object (stringified), JSON text, or a URL to fetch.
pub async fn text_or_fetch(value: &JsValue, what: &str) -> Result<String, JsValue> {
    if let Some(s) = value.as_string() {
        if s.trim_start().starts_with('{') {
            return Ok(s);
        }
        let resp = fetch_ok(&s, what).await?;
        let text = JsFuture::from(resp.text()?).await?;
        return text.as_string().ok_or_else(|| js_error(&format!("the {what} at {s} is not text")));
    }
    if value.is_object() {
        return Ok(js_sys::JSON::stringify(value)?.into());
    }
    Err(js_error(&format!("`{what}` must be an object, JSON text or a URL")))
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
        let resp = fetch_ok(&url, what).await?;
        let buf = JsFuture::from(resp.array_buffer()?).await?;
        return Ok(Uint8Array::new(&buf).to_vec());
    }
    Err(js_error(&format!("`{what}` must be a Uint8Array, an ArrayBuffer or a URL")))
}

/// A short description of a thrown JS value.
pub fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(err.name()), String::from(err.message()));
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}
