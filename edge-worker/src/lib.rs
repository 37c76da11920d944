//! # hiedge-worker
//!
//! Every model set of a deployment behind the HI wire protocol (`docs/protocol.md`), as a Cloudflare
//! Worker. A thin HTTP facade: access rules, routes, body limits, which files a browser may fetch
//! and the models all come from `hiedge-core` ([`protocol`], [`server`]); this file admits a request
//! with those rules, then one `match` on core's parsed [`Route`] hands it to one small handler per
//! route: the routing table is core's alone (`protocol::route`), never declared twice.
//!
//! No model is compiled in. The sets are the directories of the Workers Static Assets directory
//! (`models/`, bound as `ASSETS`, with `run_worker_first` so nothing is served without this code):
//! `index.json` lists them, `<set>/manifest.json` describes each. A set's manifest and large model
//! are fetched from the binding on first use in each isolate, and the large model is parsed and
//! optimised then (never at start-up: Workers allow 1 s for it), then kept.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use hiedge_core::protocol::BrokenSet;
use hiedge_core::protocol::ClassifyResponse;
use hiedge_core::protocol::{self, ApiError, ErrorCode, Route, SampleEncoding};
use hiedge_core::runtime::{sha256_hex, PartsJoiner};
use hiedge_core::server::oip::{
    Readiness, ReadyState, ServerTier, Upstream, UpstreamError, UpstreamRequest, HEADER_LENGTH, MAX_ANSWER_BYTES,
};
use hiedge_core::server::{
    self as core_server, AccessRules, Caching, ModelService, ModelSet, RequestHead, RequestLog, SplitService,
    RATE_LIMIT_RETRY_AFTER_S,
};
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_error, console_log, event, AbortSignal, AnalyticsEngineDataPointBuilder, Context, Env, Fetch, Headers,
    Method, Request, RequestInit, Response, Result,
};

/// The Workers Static Assets binding holding the model sets.
const ASSETS_BINDING: &str = "ASSETS";
/// The `[vars]` entry naming the set of `POST /v1/classify` and `GET /v1/health`.
const DEFAULT_SET_VAR: &str = "DEFAULT_MODEL_SET";
/// The asset binding ignores the host; any absolute URL works.
const ASSET_ORIGIN: &str = "https://assets.invalid";
/// The Workers Rate Limiting binding (`[[ratelimits]]` in wrangler.toml) that counts each client's
/// inference requests; without it (a deployment that removed it) nothing is rate limited.
const RATE_LIMIT_BINDING: &str = "INFERENCE_RATE_LIMIT";

/// A set loaded in this isolate: its manifest, its large model once a classify needed it, and its
/// split tail once features arrived.
struct LoadedSet {
    set: ModelSet,
    service: RefCell<Option<Rc<ModelService>>>,
    split: RefCell<Option<Rc<SplitService>>>,
    /// Whether every file the manifest names is in the assets (checked once, for `GET /v1/models`).
    files_present: RefCell<Option<std::result::Result<(), String>>>,
    /// The set's Open Inference Protocol server (the manifest's `oip`), once a classify needed it.
    server: RefCell<Option<Rc<ServerHop>>>,
}

/// A set's server tier with what this isolate last learnt of its readiness.
struct ServerHop {
    tier: ServerTier,
    readiness: Cell<Readiness>,
}

thread_local! {
    /// Sets loaded in this isolate, by name.
    static SETS: RefCell<HashMap<String, Rc<LoadedSet>>> = RefCell::new(HashMap::new());
}

/// Milliseconds from the JS clock. workerd freezes it during pure CPU work, so a span around
/// inference reads 0 there (and the protocol then reports `infer_ms: null`).
fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Runs once per isolate: a Rust panic is logged with its message and location.
#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// What every handler gets: the access rules, the CORS origin admission allowed, and whether the
/// request declared its body length (admission checked it against the cap).
struct Admission {
    rules: AccessRules,
    cors: Option<String>,
    /// The request's `Content-Type` and `Content-Length`, checked again against the set's body cap
    /// once the set is known.
    content_type: Option<String>,
    content_length: Option<String>,
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let rules = match access_rules(&env) {
        Ok(r) => r,
        // Fails closed: a misconfigured Worker (a blank API_TOKEN, a bad MAX_BODY_BYTES) serves nothing.
        Err(e) => {
            let error = ApiError::internal("this Worker is misconfigured: its operator must fix its settings", e);
            return error_response(&error, None, None);
        }
    };
    // Admission parses the route (core's one routing table) and answers unknown paths (404), other
    // methods (405), refused origins, tokens and headers with the protocol's JSON errors.
    let (route, admitted) = match admit(&req, rules) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    match route {
        Route::Health => health(&env, &admitted).await,
        Route::Models => models(&env, &admitted).await,
        Route::Manifest { set } => manifest(&env, &admitted, &set).await,
        Route::File { set, sha256 } => device_file(&req, &env, &admitted, &set, &sha256).await,
        Route::Classify { set } => classify(req, &env, &admitted, set.as_deref()).await,
        Route::Split { set, trunk_sha256 } => split_tail(req, &env, &admitted, &set, &trunk_sha256).await,
        Route::Preflight => preflight(&req.path(), &admitted),
    }
}

/// The request's head against the access rules: the route and the admission, or the refusal.
fn admit(req: &Request, rules: AccessRules) -> std::result::Result<(Route, Admission), Result<Response>> {
    // The raw method: workers-rs maps unknown methods to GET.
    let method = req.inner().method();
    let path = req.path();
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (origin, authorization) = (header("Origin"), header("Authorization"));
    let (content_type, content_length) = (header("Content-Type"), header("Content-Length"));
    let head = RequestHead {
        method: &method,
        path: &path,
        origin: origin.as_deref(),
        authorization: authorization.as_deref(),
        content_type: content_type.as_deref(),
        content_length: content_length.as_deref(),
    };
    match rules.admit(&head) {
        Ok(admitted) => {
            Ok((admitted.route, Admission { cors: admitted.allow_origin, content_type, content_length, rules }))
        }
        Err(refused) => {
            Err(error_response(&refused.error, Some(&rules), refused.allow_origin.as_deref()).and_then(|mut resp| {
                if let Some(allow) = refused.allow {
                    resp.headers_mut().set("Allow", allow)?;
                }
                Ok(resp)
            }))
        }
    }
}

/// `GET /v1/health`: the default set's large model.
async fn health(env: &Env, admitted: &Admission) -> Result<Response> {
    let body = async {
        let set = load_set(env, &default_set(env)?).await?;
        let service = load_service(env, &set).await?;
        json(&service.health())
    };
    respond(body.await, admitted, Caching::NoStore)
}

/// `GET /v1/models`: every set of the deployment.
async fn models(env: &Env, admitted: &Admission) -> Result<Response> {
    let body = async {
        let default = default_set(env)?;
        let (mut sets, mut broken) = (Vec::new(), Vec::new());
        // One set that cannot be served is listed as broken; the others are listed as usual.
        for name in set_names(env).await? {
            let checked = match load_set(env, &name).await {
                Ok(loaded) => files_present(env, &loaded).await.map(|()| loaded.set.clone()),
                Err(e) => Err(e),
            };
            match checked {
                Ok(set) => sets.push(set),
                Err(e) => {
                    log_error(&e);
                    broken.push(BrokenSet { name, reason: e.message });
                }
            }
        }
        json(&core_server::model_set_list(&default, &sets, broken))
    };
    respond(body.await, admitted, Caching::Revalidate)
}

/// `GET /v1/models/<set>`: the set's manifest, as written.
async fn manifest(env: &Env, admitted: &Admission, set: &str) -> Result<Response> {
    let body = async { Ok(load_set(env, set).await?.set.manifest_json().to_string()) };
    respond(body.await, admitted, Caching::Revalidate)
}

/// `GET /v1/models/<set>/files/<sha256>`: a device-side file, checked against its sha256 and
/// cached for ever; the large model is never one of them (404).
async fn device_file(req: &Request, env: &Env, admitted: &Admission, set: &str, sha256: &str) -> Result<Response> {
    let etag = format!("\"{sha256}\"");
    let bytes = async {
        let loaded = load_set(env, set).await?;
        let file = loaded.set.device_file(sha256)?;
        if req.headers().get("If-None-Match").ok().flatten().as_deref() == Some(etag.as_str()) {
            return Ok(None);
        }
        let bytes = asset(env, &format!("{set}/{file}"))
            .await?
            .ok_or_else(|| core_server::broken_set(set, format!("`{file}` is missing from the assets")))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(core_server::broken_set(set, format!("`{file}` does not match the sha256 its manifest gives")));
        }
        Ok(Some(bytes))
    };
    let (status, body) = match bytes.await {
        Ok(Some(bytes)) => (200, bytes),
        Ok(None) => (304, Vec::new()),
        Err(e) => return admitted_error(&e, admitted),
    };
    let headers = response_headers(Some(&admitted.rules), admitted.cors.as_deref(), Caching::Immutable)?;
    headers.set("Content-Type", "application/octet-stream")?;
    headers.set("ETag", &etag)?;
    Ok(Response::from_bytes(body)?.with_status(status).with_headers(headers))
}

/// `POST /v1/classify` (the default set) or `POST /v1/models/<set>/classify`: the body read (whole
/// when its length was declared and checked, else streamed with a cap), checked, then classified;
/// the inference time in `Server-Timing`.
async fn classify(mut req: Request, env: &Env, admitted: &Admission, set: Option<&str>) -> Result<Response> {
    let mut log = RequestLog::new("classify");
    let answer = async {
        rate_limit(&req, env).await?;
        classify_body(&mut req, env, admitted, set, &mut log).await
    };
    inference_response(answer.await, env, admitted, log)
}

/// A classify-like answer: the JSON body with its `Server-Timing`, never cached; or the error.
fn inference_response(
    answer: std::result::Result<(String, String), ApiError>,
    env: &Env,
    admitted: &Admission,
    mut log: RequestLog,
) -> Result<Response> {
    if let Err(e) = &answer {
        log.failed(e);
    }
    // One structured line per inference request (Workers Logs): no pixels, no header values.
    console_log!("{}", log.to_json());
    write_analytics(env, &log);
    match answer {
        Ok((body, timing)) => {
            let mut resp = json_response(body, 200, Some(&admitted.rules), admitted.cors.as_deref(), Caching::NoStore)?;
            resp.headers_mut().set("Server-Timing", &timing)?;
            Ok(resp)
        }
        Err(e) => admitted_error(&e, admitted),
    }
}

/// Counts an inference request against the client's budget (`INFERENCE_RATE_LIMIT`, keyed by
/// `CF-Connecting-IP`, which Cloudflare sets and clients cannot): `429` once it is spent.
async fn rate_limit(req: &Request, env: &Env) -> std::result::Result<(), ApiError> {
    let env_js: &JsValue = env.as_ref();
    let binding = js_sys::Reflect::get(env_js, &JsValue::from_str(RATE_LIMIT_BINDING)).unwrap_or(JsValue::UNDEFINED);
    if binding.is_undefined() || binding.is_null() {
        return Ok(());
    }
    let key = req.headers().get("CF-Connecting-IP").ok().flatten().unwrap_or_else(|| "unknown".into());
    let outcome = async {
        let limit: js_sys::Function = js_sys::Reflect::get(&binding, &JsValue::from_str("limit"))?.dyn_into()?;
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &JsValue::from_str("key"), &JsValue::from_str(&key))?;
        let promise: js_sys::Promise = limit.call1(&binding, &options)?.dyn_into()?;
        let outcome = wasm_bindgen_futures::JsFuture::from(promise).await?;
        js_sys::Reflect::get(&outcome, &JsValue::from_str("success"))
    };
    match outcome.await {
        Ok(success) if success.as_bool() == Some(false) => Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("too many inference requests from this client: retry after {RATE_LIMIT_RETRY_AFTER_S} s"),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::internal("the rate limiter failed", format!("{RATE_LIMIT_BINDING}: {e:?}"))),
    }
}

/// `POST /v1/models/<set>/split/<trunk sha256>`: the set's split tail on the device's quantised
/// features (409 when they come from another trunk), answered like classify.
async fn split_tail(
    mut req: Request,
    env: &Env,
    admitted: &Admission,
    set: &str,
    trunk_sha256: &str,
) -> Result<Response> {
    let mut log = RequestLog::new("split");
    log.set = Some(set.to_string());
    let answer = async {
        rate_limit(&req, env).await?;
        let loaded = load_set(env, set).await?;
        let tail_file = loaded.set.split_tail_file(trunk_sha256)?.to_string();
        let cap = admitted.rules.body_cap(&loaded.set);
        let (encoding, body) = read_body(&mut req, admitted, cap).await?;
        log.received(encoding, body.len());
        let service = load_split(env, &loaded, &tail_file).await?;
        let response = service.classify(&body, cap, &now_ms)?;
        log.answered(&response);
        Ok((json(&response)?, server_timing(response.infer_ms)))
    };
    let answer = answer.await;
    inference_response(answer, env, admitted, log)
}

/// The Workers Analytics Engine binding the request counters go to, when the Worker has it.
const ANALYTICS_BINDING: &str = "HIEDGE_ANALYTICS";

/// Writes the request as one Analytics Engine data point (hiedge-core's `analytics_point`) when
/// the binding exists; a failed write is logged, never the request's failure.
fn write_analytics(env: &Env, log: &RequestLog) {
    let Ok(dataset) = env.analytics_engine(ANALYTICS_BINDING) else { return };
    let p = log.analytics_point();
    let written = AnalyticsEngineDataPointBuilder::new()
        .indexes([p.index.as_str()])
        .blobs(p.blobs)
        .doubles(p.doubles)
        .write_to(&dataset);
    if let Err(e) = written {
        console_error!("hiedge: the Analytics Engine write failed: {e}");
    }
}

/// `OPTIONS` on a known path: the CORS preflight.
fn preflight(path: &str, admitted: &Admission) -> Result<Response> {
    let headers = response_headers(Some(&admitted.rules), admitted.cors.as_deref(), Caching::NoStore)?;
    headers.set("Access-Control-Allow-Methods", protocol::allow_header(path))?;
    headers.set("Access-Control-Allow-Headers", "Content-Type, Authorization")?;
    headers.set("Access-Control-Max-Age", "86400")?;
    headers.set("Allow", protocol::allow_header(path))?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// The classify response body and its `Server-Timing` value.
async fn classify_body(
    req: &mut Request,
    env: &Env,
    admitted: &Admission,
    set: Option<&str>,
    log: &mut RequestLog,
) -> std::result::Result<(String, String), ApiError> {
    let name = match set {
        Some(name) => name.to_string(),
        None => default_set(env)?,
    };
    log.set = Some(name.clone());
    let set = load_set(env, &name).await?;
    let cap = admitted.rules.body_cap(&set.set);
    let (encoding, body) = read_body(req, admitted, cap).await?;
    log.received(encoding, body.len());
    let pixels = core_server::sample_input(body, encoding, set.set.manifest(), cap)?;
    let service = load_service(env, &set).await?;
    let response = service.classify(&pixels, &now_ms)?;
    // A set with a server tier: the Worker's answer, or the server's where the manifest's
    // `oip.escalate` sends the sample on.
    let response = match server_hop(env, &set)? {
        Some(hop) => escalate(&hop, response, &pixels).await?,
        None => response,
    };
    log.answered(&response);
    Ok((json(&response)?, server_timing(response.infer_ms)))
}

/// The set's server tier from its manifest's `oip` and the Worker variable and secret it names,
/// built once per isolate; `None` for a set without one.
fn server_hop(env: &Env, loaded: &LoadedSet) -> std::result::Result<Option<Rc<ServerHop>>, ApiError> {
    if let Some(hop) = loaded.server.borrow().clone() {
        return Ok(Some(hop));
    }
    // Read and checked with the set's manifest (ModelSet::new).
    let Some(oip) = loaded.set.oip() else { return Ok(None) };
    // Variables and secrets both read as plain strings.
    let setting = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let token = oip.token_secret.as_deref().and_then(setting);
    let url = setting(&oip.url_var);
    let tier = ServerTier::new(loaded.set.manifest(), oip.clone(), url.as_deref(), token.as_deref())?;
    let hop = Rc::new(ServerHop { tier, readiness: Cell::new(Readiness::default()) });
    Ok(Some(loaded.server.borrow_mut().get_or_insert(hop).clone()))
}

/// The Worker's answer kept, or the sample sent on to the server: its answer, or the manifest's
/// fallback when it is down, slow or wrong (the cause goes to the log, never to the client).
async fn escalate(
    hop: &ServerHop,
    worker_answer: ClassifyResponse,
    pixels: &[u8],
) -> std::result::Result<ClassifyResponse, ApiError> {
    if !hop.tier.escalates(&worker_answer)? {
        return Ok(hop.tier.kept(worker_answer));
    }
    match ask_server(hop, pixels).await {
        Ok(answer) => Ok(answer),
        Err(cause) => {
            console_error!("hiedge: the set's inference server ({}) failed: {cause}", hop.tier.model_id());
            hop.tier.failed(worker_answer, &cause)
        }
    }
}

/// The server's answer for one sample: readiness first unless known (core's [`Readiness`]), then
/// the inference request, each within the manifest's `timeout_ms`.
async fn ask_server(hop: &ServerHop, pixels: &[u8]) -> std::result::Result<ClassifyResponse, UpstreamError> {
    let record = |ready: bool| {
        let mut r = hop.readiness.get();
        r.record(ready, now_ms());
        hop.readiness.set(r);
    };
    match hop.readiness.get().state(now_ms()) {
        ReadyState::Ready => {}
        ReadyState::Down => {
            return Err(UpstreamError::NotReady("found down moments ago; not asked again yet".into()));
        }
        ReadyState::Unknown => {
            for check in hop.tier.ready_requests() {
                let answer = send_upstream(&check, hop.tier.config().timeout_ms).await;
                match answer {
                    Ok((200, _, _)) => {}
                    Ok((status, _, _)) => {
                        record(false);
                        return Err(UpstreamError::NotReady(format!("{} answered {status}", check.url)));
                    }
                    Err(e) => {
                        record(false);
                        return Err(e);
                    }
                }
            }
            record(true);
        }
    }
    let id = format!("{:x}", (js_sys::Math::random() * 2f64.powi(52)) as u64);
    let request =
        hop.tier.infer_request(pixels, &id).map_err(|e| UpstreamError::Invalid(format!("the request: {e}")))?;
    let t0 = now_ms();
    let answer = send_upstream(&request, hop.tier.config().timeout_ms).await;
    let (status, header_length, body) = answer.inspect_err(|_| record(false))?;
    let elapsed = now_ms() - t0;
    let upstream = Upstream { status, header_length: header_length.as_deref(), body: &body };
    let answer = hop.tier.answer(&upstream, (elapsed > 0.0).then_some(elapsed));
    // The server answered (even if wrongly): it is up, unless it said it is not.
    record(status != 503);
    answer
}

/// Sends one request to the server, aborted after `timeout_ms` (the body's reading included):
/// status, the binary extension's header, and the body (at most `MAX_ANSWER_BYTES` + 1 bytes).
async fn send_upstream(
    request: &UpstreamRequest,
    timeout_ms: u32,
) -> std::result::Result<(u16, Option<String>, Vec<u8>), UpstreamError> {
    let unreachable =
        |what: &str, e: &dyn std::fmt::Debug| UpstreamError::Unreachable(format!("{} {what}: {e:?}", request.url));
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(|e| unreachable("header", &e))?;
    }
    let mut init = RequestInit::new();
    init.with_method(if request.method == "GET" { Method::Get } else { Method::Post }).with_headers(headers);
    if !request.body.is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(request.body.as_slice()).into()));
    }
    let req = Request::new_with_init(&request.url, &init).map_err(|e| unreachable("request", &e))?;
    let signal = timeout_signal(timeout_ms).map_err(|e| unreachable("timeout", &e))?;
    let resp = Fetch::Request(req).send_with_signal(&signal).await.map_err(|e| unreachable("fetch", &e))?;
    let status = resp.status_code();
    let header_length = resp.headers().get(HEADER_LENGTH).ok().flatten();
    let body = read_stream_capped(worker::web_sys::Response::from(resp).body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unreachable("body", &e))?
        .ok_or(UpstreamError::TooLarge)?;
    Ok((status, header_length, body))
}

/// `AbortSignal.timeout(ms)`: aborts the fetch and the reading of its body after `ms`.
fn timeout_signal(ms: u32) -> std::result::Result<AbortSignal, JsValue> {
    let class = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("AbortSignal"))?;
    let timeout: js_sys::Function = js_sys::Reflect::get(&class, &JsValue::from_str("timeout"))?.dyn_into()?;
    let signal = timeout.call1(&class, &JsValue::from(ms))?;
    Ok(AbortSignal::from(signal.unchecked_into::<worker::web_sys::AbortSignal>()))
}

/// The `Server-Timing` value for an inference time, or why there is none.
fn server_timing(infer_ms: Option<f64>) -> String {
    match infer_ms {
        Some(ms) => format!("infer;dur={ms:.3}"),
        None => "infer;desc=\"not measurable: the runtime clock does not advance during CPU work\"".to_string(),
    }
}

/// The body under the set's cap (`AccessRules::body_cap`) and its encoding: its declared type and
/// length checked against it first and then read whole, or, with no length declared, streamed
/// with the cap.
async fn read_body(
    req: &mut Request,
    admitted: &Admission,
    cap: usize,
) -> std::result::Result<(SampleEncoding, Vec<u8>), ApiError> {
    let encoding =
        protocol::check_classify_headers(admitted.content_type.as_deref(), admitted.content_length.as_deref(), cap)?;
    let body = if admitted.content_length.is_some() {
        req.bytes()
            .await
            .map_err(|e| ApiError::new(ErrorCode::EmptyBody, format!("the body could not be read: {e}")))?
    } else {
        read_body_capped(req, cap).await?
    };
    Ok((encoding, body))
}

/// Reads the body chunk by chunk and stops with 413 as soon as it passes `max_body`, so a huge
/// body without a `Content-Length` is never held whole; the rest of the body is cancelled.
async fn read_body_capped(req: &mut Request, max_body: usize) -> std::result::Result<Vec<u8>, ApiError> {
    match read_stream_capped(req.inner().body(), max_body).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => {
            Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("body exceeds the limit of {max_body} bytes")))
        }
        Err(e) => Err(ApiError::new(ErrorCode::EmptyBody, format!("the body could not be read: {e:?}"))),
    }
}

/// A stream's bytes, or `None` as soon as they pass `cap` (the rest is cancelled); no stream is
/// no bytes. The one capped reader of a client's body and of an upstream server's answer.
async fn read_stream_capped(
    stream: Option<worker::web_sys::ReadableStream>,
    cap: usize,
) -> std::result::Result<Option<Vec<u8>>, JsValue> {
    let Some(stream) = stream else { return Ok(Some(Vec::new())) };
    let reader: worker::web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut body = Vec::new();
    loop {
        let chunk = wasm_bindgen_futures::JsFuture::from(reader.read()).await?;
        if js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))?.as_bool() == Some(true) {
            return Ok(Some(body));
        }
        let value: js_sys::Uint8Array = js_sys::Reflect::get(&chunk, &JsValue::from_str("value"))?.dyn_into()?;
        if body.len() + value.length() as usize > cap {
            let _ = wasm_bindgen_futures::JsFuture::from(reader.cancel()).await;
            return Ok(None);
        }
        let start = body.len();
        body.resize(start + value.length() as usize, 0);
        value.copy_to(&mut body[start..]);
    }
}

/// A `500 internal` whose details stay in the log: the caller learns only that the Worker failed.
fn internal(detail: impl std::fmt::Display) -> ApiError {
    ApiError::internal("the Worker failed to answer; its log has the details", detail)
}

/// `DEFAULT_MODEL_SET`, checked to be a set name.
fn default_set(env: &Env) -> std::result::Result<String, ApiError> {
    let name = env.var(DEFAULT_SET_VAR).map(|v| v.to_string()).unwrap_or_default();
    if protocol::is_set_name(&name) {
        Ok(name)
    } else {
        Err(internal(format!(
            "the Worker variable {DEFAULT_SET_VAR} must name a model set, is `{}`",
            name.escape_debug()
        )))
    }
}

/// The sets of the deployment, from the assets' `index.json`.
async fn set_names(env: &Env) -> std::result::Result<Vec<String>, ApiError> {
    let bytes = asset(env, "index.json").await?.ok_or_else(|| {
        internal("the assets have no index.json: deploy with `npx wrangler deploy` (its build step writes it)")
    })?;
    core_server::parse_set_index(&String::from_utf8_lossy(&bytes)).map_err(internal)
}

/// A set's manifest, fetched once per isolate; 404 when the deployment has no such set.
async fn load_set(env: &Env, name: &str) -> std::result::Result<Rc<LoadedSet>, ApiError> {
    if let Some(set) = SETS.with(|s| s.borrow().get(name).cloned()) {
        return Ok(set);
    }
    let bytes = asset(env, &format!("{name}/manifest.json"))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("this Worker has no model set `{name}`")))?;
    let text = String::from_utf8(bytes).map_err(|_| core_server::broken_set(name, "manifest.json is not UTF-8"))?;
    let set = ModelSet::new(name, &text).map_err(|e| core_server::broken_set(name, e))?;
    let loaded = Rc::new(LoadedSet {
        set,
        service: RefCell::new(None),
        split: RefCell::new(None),
        files_present: RefCell::new(None),
        server: RefCell::new(None),
    });
    Ok(SETS.with(|s| s.borrow_mut().entry(name.to_string()).or_insert(loaded).clone()))
}

/// A set's Worker model (`large`, or a three-tier set's `oip.worker_model`), fetched and checked
/// once per isolate (parsed on first classify).
async fn load_service(env: &Env, loaded: &LoadedSet) -> std::result::Result<Rc<ModelService>, ApiError> {
    if let Some(service) = loaded.service.borrow().clone() {
        return Ok(service);
    }
    let name = loaded.set.name();
    let role = loaded.set.worker_model();
    let entry = loaded.set.manifest().model(role).map_err(|e| core_server::broken_set(name, e))?;
    // A large model over the 25 MiB static-asset limit is stored in parts: each fetched, checked
    // and appended in turn (runtime::PartsJoiner: the model once plus one part in memory), then
    // checked whole.
    let missing = |file: &str| core_server::broken_set(name, format!("its `{role}` model's file `{file}` is missing"));
    let bytes = if entry.parts.is_some() {
        let mut joiner = PartsJoiner::new(role, entry);
        for file in entry.stored_files() {
            let part = asset(env, &format!("{name}/{file}")).await?.ok_or_else(|| missing(file))?;
            joiner.push(&part).map_err(|e| core_server::broken_set(name, e))?;
        }
        joiner.finish().map_err(|e| core_server::broken_set(name, e))?
    } else {
        asset(env, &format!("{name}/{}", entry.file)).await?.ok_or_else(|| missing(&entry.file))?
    };
    let service =
        ModelService::new(loaded.set.manifest_json(), role, bytes).map_err(|e| core_server::broken_set(name, e))?;
    let service = Rc::new(service);
    Ok(loaded.service.borrow_mut().get_or_insert(service).clone())
}

/// A set's split tail, fetched and checked once per isolate (parsed on first use).
async fn load_split(env: &Env, loaded: &LoadedSet, tail_file: &str) -> std::result::Result<Rc<SplitService>, ApiError> {
    if let Some(service) = loaded.split.borrow().clone() {
        return Ok(service);
    }
    let name = loaded.set.name();
    let bytes = asset(env, &format!("{name}/{tail_file}"))
        .await?
        .ok_or_else(|| core_server::broken_set(name, format!("its split tail `{tail_file}` is missing")))?;
    let service = SplitService::new(loaded.set.manifest_json(), bytes).map_err(|e| core_server::broken_set(name, e))?;
    Ok(loaded.split.borrow_mut().get_or_insert(Rc::new(service)).clone())
}

/// An asset's bytes (`None` when there is no such file), by its path in the assets directory.
async fn asset(env: &Env, path: &str) -> std::result::Result<Option<Vec<u8>>, ApiError> {
    let fetcher = env.assets(ASSETS_BINDING).map_err(|e| internal(format!("no `{ASSETS_BINDING}` binding: {e}")))?;
    let url = format!("{ASSET_ORIGIN}/{}", encode_path(path));
    let mut resp = fetcher.fetch(url, None).await.map_err(|e| internal(format!("reading asset `{path}`: {e}")))?;
    match resp.status_code() {
        200 => resp.bytes().await.map(Some).map_err(|e| internal(format!("reading asset `{path}`: {e}"))),
        404 => Ok(None),
        status => Err(internal(format!("reading asset `{path}`: status {status}"))),
    }
}

/// Whether every file a set's manifest names is in the assets (`HEAD`, no body read), checked once
/// per isolate: a set with a missing file is listed as broken.
async fn files_present(env: &Env, loaded: &LoadedSet) -> std::result::Result<(), ApiError> {
    let name = loaded.set.name();
    if let Some(known) = loaded.files_present.borrow().clone() {
        return known.map_err(|detail| core_server::broken_set(name, detail));
    }
    let mut found = Ok(());
    for file in loaded.set.asset_files() {
        if !asset_exists(env, &format!("{name}/{file}")).await? {
            found = Err(format!("`{file}` is missing from the assets"));
            break;
        }
    }
    *loaded.files_present.borrow_mut() = Some(found.clone());
    found.map_err(|detail| core_server::broken_set(name, detail))
}

/// Whether an asset exists, by a `HEAD` request to the binding.
async fn asset_exists(env: &Env, path: &str) -> std::result::Result<bool, ApiError> {
    let fetcher = env.assets(ASSETS_BINDING).map_err(|e| internal(format!("no `{ASSETS_BINDING}` binding: {e}")))?;
    let url = format!("{ASSET_ORIGIN}/{}", encode_path(path));
    let mut init = RequestInit::new();
    init.with_method(Method::Head);
    let head = Request::new_with_init(&url, &init).map_err(|e| internal(format!("HEAD `{path}`: {e}")))?;
    let resp = fetcher.fetch_request(head).await.map_err(|e| internal(format!("HEAD `{path}`: {e}")))?;
    Ok(resp.status_code() == 200)
}

/// Percent-encodes every byte of a relative path but unreserved characters and `/`.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn access_rules(env: &Env) -> std::result::Result<AccessRules, String> {
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let token = env.secret("API_TOKEN").ok().map(|v| v.to_string()).or_else(|| var("API_TOKEN"));
    AccessRules::from_vars(var("ALLOWED_ORIGINS").as_deref(), token.as_deref(), var("MAX_BODY_BYTES").as_deref())
}

fn json<T: serde::Serialize>(value: &T) -> std::result::Result<String, ApiError> {
    serde_json::to_string(value).map_err(internal)
}

/// The CORS, caching and `nosniff` headers core chooses for a response (`rules` is `None` only when
/// the Worker's own settings are broken: then no CORS and no caching).
fn response_headers(rules: Option<&AccessRules>, cors: Option<&str>, caching: Caching) -> Result<Headers> {
    let headers = Headers::new();
    match rules {
        Some(rules) => {
            for (name, value) in rules.response_headers(cors, caching) {
                headers.set(name, &value)?;
            }
        }
        None => {
            headers.set("Cache-Control", "no-store")?;
            headers.set("X-Content-Type-Options", "nosniff")?;
        }
    }
    Ok(headers)
}

fn json_response(
    body: String,
    status: u16,
    rules: Option<&AccessRules>,
    cors: Option<&str>,
    caching: Caching,
) -> Result<Response> {
    let headers = response_headers(rules, cors, caching)?;
    headers.set("Content-Type", "application/json")?;
    Ok(Response::from_bytes(body.into_bytes())?.with_status(status).with_headers(headers))
}

/// Writes an error's private detail (file names, tract's error chain) to the Worker's log.
fn log_error(e: &ApiError) {
    if let Some(detail) = &e.detail {
        console_error!("hiedge: {} ({:?}): {detail}", e.message, e.code);
    }
}

/// The error's JSON answer, never cached; its detail goes to the log, never to the caller. A 429
/// says when to retry.
fn error_response(e: &ApiError, rules: Option<&AccessRules>, cors: Option<&str>) -> Result<Response> {
    log_error(e);
    let mut resp = json_response(e.to_json(), e.status(), rules, cors, Caching::NoStore)?;
    if e.code == ErrorCode::RateLimited {
        resp.headers_mut().set("Retry-After", &RATE_LIMIT_RETRY_AFTER_S.to_string())?;
    }
    Ok(resp)
}

/// An error answer to an admitted request.
fn admitted_error(e: &ApiError, admitted: &Admission) -> Result<Response> {
    error_response(e, Some(&admitted.rules), admitted.cors.as_deref())
}

/// A 200 JSON answer cached as `caching` says, or the error's JSON answer.
fn respond(body: std::result::Result<String, ApiError>, admitted: &Admission, caching: Caching) -> Result<Response> {
    match body {
        Ok(body) => json_response(body, 200, Some(&admitted.rules), admitted.cors.as_deref(), caching),
        Err(e) => admitted_error(&e, admitted),
    }
}
