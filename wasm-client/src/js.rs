//! Conversions between JavaScript values and Rust, errors with a `code`, and the JS globals the
//! client uses.

#[cfg(feature = "device")]
use std::{cell::Cell, rc::Rc};

use js_sys::Uint8Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::options::{LoadProgress, LoadStage};

#[wasm_bindgen]
extern "C" {
    /// `globalThis.fetch` (window or worker).
    #[wasm_bindgen(js_name = fetch)]
    pub fn fetch_with_request(request: &web_sys::Request) -> js_sys::Promise;
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

/// A classify result as the plain JS object [`to_js`] makes, built by `JSON.parse` of its JSON: one
/// crossing into JavaScript instead of one per field and array element, which took about a fifth of
/// a tiny model's `classifyLocal` call. JSON has no NaN or infinity, so a result holding one (a
/// model that outputs NaN) takes [`to_js`]'s way and keeps it.
pub fn result_to_js(result: &hiedge_core::session::HiResult) -> Result<JsValue, JsValue> {
    let t = &result.timings;
    let finite = result
        .probs
        .iter()
        .chain(&result.local_probs)
        .chain([&result.confidence, &result.score])
        .all(|v| v.is_finite())
        && result.threshold.is_none_or(f32::is_finite)
        && [t.preprocess_ms, t.local_ms, t.decision_ms, t.round_trip_ms, t.total_ms, t.remote_ms.unwrap_or(0.0)]
            .iter()
            .all(|v| v.is_finite());
    if !finite {
        return to_js(result);
    }
    let json = serde_json::to_string(result)
        .map_err(|e| coded_error("Internal", &format!("could not convert a result to JavaScript: {e}")))?;
    js_sys::JSON::parse(&json)
}

/// A Rust value as a plain JS object (`None` as `null`, maps as objects).
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| coded_error("Internal", &format!("could not convert a result to JavaScript: {e}")))
}

#[cfg(feature = "device")]
/// The clock a client or stream reads: `performance.now()` or the `clock` option's function.
#[derive(Clone)]
pub struct Clock {
    read: Option<js_sys::Function>,
    /// The last good reading, used inside the pump when a reading is bad (`push` refuses then).
    last: Rc<Cell<f64>>,
}

#[cfg(feature = "device")]
impl Clock {
    /// The clock of a `clock` option (`undefined`/`null`: `performance.now`); fails on a value that
    /// is not a function, or one whose first reading is not a finite number.
    pub fn from_option(value: &JsValue) -> Result<Clock, JsValue> {
        let read = if value.is_undefined() || value.is_null() {
            None
        } else {
            let f = value.dyn_ref::<js_sys::Function>().cloned();
            Some(f.ok_or_else(|| coded_error(INVALID_OPTIONS, "`clock` must be a function returning ms (or null)"))?)
        };
        let clock = Clock { read, last: Rc::new(Cell::new(0.0)) };
        clock.try_now()?;
        Ok(clock)
    }

    /// A reading, or why it is not one.
    pub fn try_now(&self) -> Result<f64, JsValue> {
        let Some(read) = &self.read else { return Ok(now_ms()) };
        let value = read.call0(&JsValue::NULL)?;
        match value.as_f64() {
            Some(ms) if ms.is_finite() && ms >= self.last.get() => {
                self.last.set(ms);
                Ok(ms)
            }
            Some(ms) if ms.is_finite() => {
                Err(coded_error(INVALID_OPTIONS, &format!("the clock went back from {} to {ms} ms", self.last.get())))
            }
            _ => Err(coded_error(INVALID_OPTIONS, "the clock must return a finite number of ms")),
        }
    }

    /// A reading; the last good one when this one is bad.
    pub fn now(&self) -> f64 {
        self.try_now().unwrap_or_else(|_| self.last.get())
    }
}

/// Resolves after `ms` milliseconds.
pub async fn sleep(ms: f64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// Time allowed for a manifest or model file to arrive, unless `loadTimeoutMs` says otherwise.
pub const LOAD_TIMEOUT_MS: f64 = 120_000.0;
/// Most bytes read for a manifest or a Worker's JSON answer.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Most bytes read for a device model file.
pub const MAX_MODEL_BYTES: usize = 64 << 20;

/// `GET url` under `timeout_ms`, which must answer 2xx; with `Authorization: Bearer <token>` when
/// given (only ever for the Worker's own URLs, and then a redirect is an error, so the token goes
/// nowhere else). Returns the response and the signal that bounds reading its body too.
async fn fetch_ok(
    url: &str,
    what: &str,
    token: Option<&str>,
    fresh: bool,
    timeout_ms: f64,
) -> Result<(web_sys::Response, web_sys::AbortSignal), JsValue> {
    let failed = |why: String| coded_error(FETCH_FAILED, &format!("could not fetch the {what} from {url}: {why}"));
    let signal = web_sys::AbortSignal::timeout_with_f64(timeout_ms);
    let init = web_sys::RequestInit::new();
    init.set_signal(Some(&signal));
    if let Some(token) = token {
        let headers = web_sys::Headers::new().map_err(|e| failed(describe(&e)))?;
        headers.set("Authorization", &format!("Bearer {token}")).map_err(|e| failed(describe(&e)))?;
        init.set_headers(&headers);
        init.set_redirect(web_sys::RequestRedirect::Error);
    }
    if fresh {
        init.set_cache(web_sys::RequestCache::Reload);
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| failed(describe(&e)))?;
    let resp = JsFuture::from(fetch_with_request(&request)).await.map_err(|e| {
        if signal.aborted() {
            failed(format!("no answer in {timeout_ms} ms"))
        } else {
            failed(describe(&e))
        }
    })?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|e| failed(describe(&e)))?;
    if !resp.ok() {
        return Err(failed(format!("HTTP {}", resp.status())));
    }
    Ok((resp, signal))
}

/// The text at `url`, at most [`MAX_JSON_BYTES`], within `timeout_ms` (`token`: see [`fetch_ok`]).
pub async fn fetch_text(url: &str, what: &str, token: Option<&str>, timeout_ms: f64) -> Result<String, JsValue> {
    let (resp, signal) = fetch_ok(url, what, token, false, timeout_ms).await?;
    let bytes = read_capped(&resp, &signal, MAX_JSON_BYTES, url, what, timeout_ms, &|_| ()).await?;
    String::from_utf8(bytes).map_err(|_| coded_error(FETCH_FAILED, &format!("the {what} at {url} is not UTF-8 text")))
}

/// The bytes at `url`, at most [`MAX_MODEL_BYTES`] and within `timeout_ms`, read as they arrive so
/// `progress` can report `loaded` / `total` (the `Content-Length`, when the response is not
/// compressed in transit: reported, never used to size anything). `fresh`: past the HTTP cache.
pub async fn fetch_bytes_with_progress(
    url: &str,
    what: &str,
    token: Option<&str>,
    fresh: bool,
    timeout_ms: f64,
    progress: &Progress,
) -> Result<Vec<u8>, JsValue> {
    let (resp, signal) = fetch_ok(url, what, token, fresh, timeout_ms).await?;
    let encoded = resp.headers().get("Content-Encoding").ok().flatten().is_some_and(|e| e != "identity");
    let total = resp
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| !encoded && *n <= MAX_MODEL_BYTES as f64);
    progress.bytes(what, 0.0, total, false);
    let report = |loaded: usize| progress.bytes(what, loaded as f64, total, false);
    read_capped(&resp, &signal, MAX_MODEL_BYTES, url, what, timeout_ms, &report).await
}

/// A response's body, read chunk by chunk and refused as soon as it passes `cap` bytes (a
/// `Content-Length` over the cap is refused before reading); `report` hears the bytes so far.
pub async fn read_capped(
    resp: &web_sys::Response,
    signal: &web_sys::AbortSignal,
    cap: usize,
    url: &str,
    what: &str,
    timeout_ms: f64,
    report: &dyn Fn(usize),
) -> Result<Vec<u8>, JsValue> {
    let failed = |why: String| coded_error(FETCH_FAILED, &format!("could not fetch the {what} from {url}: {why}"));
    let too_big = || failed(format!("it is more than the {cap} bytes hiedge reads"));
    let announced = resp.headers().get("Content-Length").ok().flatten().and_then(|n| n.trim().parse::<f64>().ok());
    if announced.is_some_and(|n| n > cap as f64) {
        if let Some(body) = resp.body() {
            let _ = body.cancel();
        }
        return Err(too_big());
    }
    let read_failed = |e: JsValue| {
        if signal.aborted() {
            failed(format!("not downloaded in {timeout_ms} ms"))
        } else {
            failed(describe(&e))
        }
    };
    let Some(body) = resp.body() else { return Ok(Vec::new()) };
    let reader = web_sys::ReadableStreamDefaultReader::new(&body).map_err(read_failed)?;
    let mut bytes = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(read_failed)?;
        if js_sys::Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()) == Some(true) {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &"value".into()).map_err(read_failed)?;
        let value: Uint8Array = value.dyn_into().map_err(read_failed)?;
        let start = bytes.len();
        if start + value.length() as usize > cap {
            let _ = reader.cancel();
            return Err(too_big());
        }
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        report(bytes.len());
    }
    Ok(bytes)
}

/// The `onProgress` option: stages and download bytes, reported to the callback when there is one.
/// A throwing callback never stops loading.
pub struct Progress {
    callback: Option<js_sys::Function>,
}

impl Progress {
    /// Reports to `callback` when it is a function.
    pub fn new(callback: &JsValue) -> Self {
        Progress { callback: callback.dyn_ref::<js_sys::Function>().cloned() }
    }

    /// A stage begins.
    #[cfg(feature = "device")]
    pub fn stage(&self, stage: LoadStage, message: &str) {
        self.send(&LoadProgress {
            stage,
            message: message.into(),
            file: None,
            loaded: None,
            total: None,
            from_cache: None,
        });
    }

    /// Bytes of a file so far (`total` when known); `from_cache` when none came over the network.
    pub fn bytes(&self, what: &str, loaded: f64, total: Option<f64>, from_cache: bool) {
        let message = match (from_cache, total) {
            (true, _) => format!("{what}: {loaded} bytes from the cache"),
            (false, Some(total)) => format!("{what}: {loaded} of {total} bytes"),
            (false, None) => format!("{what}: {loaded} bytes"),
        };
        self.send(&LoadProgress {
            stage: LoadStage::Download,
            message,
            file: Some(what.into()),
            loaded: Some(loaded),
            total,
            from_cache: Some(from_cache),
        });
    }

    fn send(&self, progress: &LoadProgress) {
        if let (Some(f), Ok(p)) = (&self.callback, to_js(progress)) {
            let _ = f.call1(&JsValue::NULL, &p);
        }
    }
}

/// A short description of a thrown JS value.
pub fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return format!("{}: {}", String::from(err.name()), String::from(err.message()));
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hiedge_core::session::HiResult;
    use wasm_bindgen_test::*;

    wasm_bindgen_test_configure!(run_in_browser);

    fn result(probs: [f32; 2]) -> HiResult {
        serde_json::from_value(serde_json::json!({
            "label": 1, "className": "b", "probs": probs, "confidence": probs[1], "decision": "local",
            "score": 0.5, "threshold": 0.25, "offloadWanted": false, "explored": false, "localLabel": 1,
            "localProbs": probs, "remoteLabel": null, "remoteModel": null, "fallbackReason": null,
            "timings": {"preprocessMs": 0.01, "localMs": 0.2, "decisionMs": 0.0, "roundTripMs": 0.0, "remoteMs": null, "totalMs": 0.21},
            "bytesSent": 0, "localStage": "full", "answeredBy": "device", "why": "confident"
        }))
        .expect("a HiResult")
    }

    fn field(v: &JsValue, path: &[&str]) -> JsValue {
        path.iter().fold(v.clone(), |v, k| js_sys::Reflect::get(&v, &JsValue::from_str(k)).unwrap())
    }

    #[wasm_bindgen_test]
    fn the_json_way_gives_the_object_to_js_gives_and_nan_keeps_to_js() {
        let r = result([0.1, 0.9]);
        let (fast, slow) = (result_to_js(&r).unwrap(), to_js(&r).unwrap());
        // The same fields, and every number the same f32: to_js widens 0.1f32 to 0.10000000149011612,
        // JSON writes its shortest decimal 0.1; both read back as 0.1f32.
        let back = |v: &JsValue| -> HiResult {
            serde_json::from_str(&String::from(js_sys::JSON::stringify(v).unwrap())).unwrap()
        };
        assert_eq!((back(&fast), back(&slow)), (r.clone(), r.clone()));
        let p = field(&fast, &["probs"]);
        assert_eq!(js_sys::Reflect::get_u32(&p, 0).unwrap().as_f64().unwrap() as f32, 0.1f32);
        assert!(field(&fast, &["remoteMs"]).is_undefined() && field(&fast, &["timings", "remoteMs"]).is_null());
        let mut nan = result([0.1, 0.9]);
        nan.probs[0] = f32::NAN;
        let kept = field(&result_to_js(&nan).unwrap(), &["probs"]);
        assert!(js_sys::Reflect::get_u32(&kept, 0).unwrap().as_f64().unwrap().is_nan(), "NaN is not turned into null");
    }
}
