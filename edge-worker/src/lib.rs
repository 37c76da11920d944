//! # hiedge-worker
//!
//! The large model of a hiedge model set behind the HI wire protocol (`docs/protocol.md`), as a
//! Cloudflare Worker. A thin HTTP facade: access rules, body limits and the model all come from
//! `hiedge-core` ([`protocol`], [`server`]); this file admits a request with those rules, then a
//! workers-rs [`Router`] hands it to one small handler per route.
//!
//! The model is embedded in the bundle and parsed + optimised on first use in each isolate (never at
//! start-up: Workers allow 1 s for it), then kept.

use futures_util::StreamExt;
use hiedge_core::protocol::{self, ApiError, ErrorCode, CLASSIFY_PATH, HEALTH_PATH, MODELS_PATH};
use hiedge_core::server::{AccessRules, ModelService, RequestHead};
use worker::{event, Context, Env, Headers, Request, Response, Result, RouteContext, Router};

const MANIFEST_JSON: &str = include_str!("../../models/fashion-mnist/manifest.json");
const MODEL_NAME: &str = "large";
static MODEL_ONNX: &[u8] = include_bytes!("../../models/fashion-mnist/large.onnx");

thread_local! {
    /// One service per isolate; the tract plan inside is built on first classify.
    static SERVICE: Result<&'static ModelService, String> = ModelService::new(MANIFEST_JSON, MODEL_NAME, MODEL_ONNX)
        .map(|s| &*Box::leak(Box::new(s)))
        .map_err(|e| e.to_string());
}

fn service() -> std::result::Result<&'static ModelService, ApiError> {
    SERVICE.with(|s| s.clone()).map_err(|e| ApiError::new(ErrorCode::Internal, e))
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
    length_declared: bool,
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let rules = match access_rules(&env) {
        Ok(r) => r,
        Err(e) => return error_response(&ApiError::new(ErrorCode::Internal, e), None),
    };
    // Admission answers unknown paths (404), other methods (405), refused origins, tokens and
    // headers with the protocol's JSON errors, so the router below only sees requests it serves.
    let (cors, length_declared) = match admit(&req, &rules) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    Router::with_data(Admission { rules, cors, length_declared })
        .get_async(HEALTH_PATH, health)
        .head_async(HEALTH_PATH, health)
        .get_async(MODELS_PATH, models)
        .head_async(MODELS_PATH, models)
        .post_async(CLASSIFY_PATH, classify)
        .options(HEALTH_PATH, preflight)
        .options(MODELS_PATH, preflight)
        .options(CLASSIFY_PATH, preflight)
        .run(req, env)
        .await
}

/// The request's head against the access rules: the CORS origin to answer with and whether a
/// body length was declared, or the refusal.
fn admit(req: &Request, rules: &AccessRules) -> std::result::Result<(Option<String>, bool), Result<Response>> {
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
        Ok(admitted) => Ok((admitted.allow_origin, content_length.is_some())),
        Err(refused) => Err(error_response(&refused.error, refused.allow_origin.as_deref()).and_then(|mut resp| {
            if let Some(allow) = refused.allow {
                resp.headers_mut().set("Allow", allow)?;
            }
            Ok(resp)
        })),
    }
}

/// `GET /v1/health`.
async fn health(_req: Request, ctx: RouteContext<Admission>) -> Result<Response> {
    respond(service().and_then(|s| json(&s.health())), ctx.data.cors.as_deref())
}

/// `GET /v1/models`: the manifest the Worker serves.
async fn models(_req: Request, ctx: RouteContext<Admission>) -> Result<Response> {
    respond(service().map(|s| s.manifest_json().to_string()), ctx.data.cors.as_deref())
}

/// `POST /v1/classify`: the body read (whole when its length was declared and checked, else
/// streamed with a cap), checked, then classified; the inference time in `Server-Timing`.
async fn classify(mut req: Request, ctx: RouteContext<Admission>) -> Result<Response> {
    let cors = ctx.data.cors.as_deref();
    match classify_body(&mut req, &ctx.data).await {
        Ok((body, timing)) => {
            let mut resp = json_response(body, 200, cors)?;
            resp.headers_mut().set("Server-Timing", &timing)?;
            resp.headers_mut().set("Cache-Control", "no-store")?;
            Ok(resp)
        }
        Err(e) => error_response(&e, cors),
    }
}

/// `OPTIONS` on a known path: the CORS preflight.
fn preflight(req: Request, ctx: RouteContext<Admission>) -> Result<Response> {
    let path = req.path();
    let headers = cors_headers(ctx.data.cors.as_deref())?;
    headers.set("Access-Control-Allow-Methods", protocol::allow_header(&path))?;
    headers.set("Access-Control-Allow-Headers", "Content-Type, Authorization")?;
    headers.set("Access-Control-Max-Age", "86400")?;
    headers.set("Allow", protocol::allow_header(&path))?;
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

/// The classify response body and its `Server-Timing` value.
async fn classify_body(req: &mut Request, admitted: &Admission) -> std::result::Result<(String, String), ApiError> {
    let service = service()?;
    let max_body = admitted.rules.max_body;
    let body = if admitted.length_declared {
        req.bytes()
            .await
            .map_err(|e| ApiError::new(ErrorCode::EmptyBody, format!("the body could not be read: {e}")))?
    } else {
        read_body_capped(req, max_body).await?
    };
    protocol::check_classify_body(&body, service.input_len(), max_body)?;
    let response = service.classify(&body, &now_ms)?;
    let timing = match response.infer_ms {
        Some(ms) => format!("infer;dur={ms:.3}"),
        None => "infer;desc=\"not measurable: the runtime clock does not advance during CPU work\"".to_string(),
    };
    Ok((json(&response)?, timing))
}

/// Reads the body chunk by chunk and stops with 413 as soon as it passes `max_body`, so a huge
/// body without a `Content-Length` is never held whole.
async fn read_body_capped(req: &mut Request, max_body: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let bad_body = |e: worker::Error| ApiError::new(ErrorCode::EmptyBody, format!("the body could not be read: {e}"));
    let mut stream = match req.stream() {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(bad_body)?;
        if body.len() + chunk.len() > max_body {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("body exceeds the limit of {max_body} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn access_rules(env: &Env) -> std::result::Result<AccessRules, String> {
    let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let token = env.secret("API_TOKEN").ok().map(|v| v.to_string()).or_else(|| var("API_TOKEN"));
    AccessRules::from_vars(var("ALLOWED_ORIGINS").as_deref(), token.as_deref(), var("MAX_BODY_BYTES").as_deref())
}

fn json<T: serde::Serialize>(value: &T) -> std::result::Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

fn cors_headers(cors: Option<&str>) -> Result<Headers> {
    let headers = Headers::new();
    if let Some(origin) = cors {
        headers.set("Access-Control-Allow-Origin", origin)?;
        headers.set("Access-Control-Expose-Headers", "Server-Timing")?;
        if origin != "*" {
            headers.set("Vary", "Origin")?;
        }
    }
    Ok(headers)
}

fn json_response(body: String, status: u16, cors: Option<&str>) -> Result<Response> {
    let headers = cors_headers(cors)?;
    headers.set("Content-Type", "application/json")?;
    headers.set("X-Content-Type-Options", "nosniff")?;
    Ok(Response::from_bytes(body.into_bytes())?.with_status(status).with_headers(headers))
}

fn error_response(e: &ApiError, cors: Option<&str>) -> Result<Response> {
    json_response(e.to_json(), e.status(), cors)
}

/// A 200 JSON answer, or the error's JSON answer.
fn respond(body: std::result::Result<String, ApiError>, cors: Option<&str>) -> Result<Response> {
    match body {
        Ok(body) => json_response(body, 200, cors),
        Err(e) => error_response(&e, cors),
    }
}
