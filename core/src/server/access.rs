//! Who may call the Worker and what it answers with: the CORS allow-list, the bearer token, the
//! body cap, a request's admission in the Worker's order, and the headers of every response.

use subtle::ConstantTimeEq;

use crate::protocol::{self, ApiError, ErrorCode, Route, SampleEncoding};
use crate::server::ModelSet;

/// Who may call the Worker and how much they may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    /// Allowed `Origin`s; `None` means any (`*`).
    pub allowed_origins: Option<Vec<String>>,
    /// Bearer token required on every request except the CORS preflight, when set.
    pub api_token: Option<String>,
    /// `MAX_BODY_BYTES`: the largest classify or split body any set accepts. `None` (the default):
    /// each set's own largest body ([`ModelSet::largest_body`]), so a set never refuses its own
    /// samples and no body is larger than the set it goes to can use.
    pub max_body: Option<usize>,
}

impl AccessRules {
    /// Rules from the Worker's variables: `ALLOWED_ORIGINS` (comma-separated exact origins, or `*`;
    /// unset means `*`), the `API_TOKEN` secret (unset: no token needed; set but blank: an error, so
    /// a misconfigured Worker fails closed) and `MAX_BODY_BYTES`.
    pub fn from_vars(origins: Option<&str>, token: Option<&str>, max_body: Option<&str>) -> Result<Self, String> {
        let allowed_origins = match origins.map(str::trim) {
            None | Some("") | Some("*") => None,
            Some(list) => Some(
                list.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect(),
            ),
        };
        // A token that is set but blank fails closed: an empty secret must never open the Worker.
        let api_token = match token {
            None => None,
            Some(t) if t.trim().is_empty() => {
                return Err("API_TOKEN is set but blank: set a real token, or remove the secret/variable to run \
                            without one"
                    .into())
            }
            Some(t) => Some(t.trim().to_string()),
        };
        let max_body = match max_body.map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse().map_err(|_| format!("MAX_BODY_BYTES must be a number of bytes, is `{v}`"))?),
        };
        Ok(AccessRules { allowed_origins, api_token, max_body })
    }

    /// The body cap for requests to `set`: `MAX_BODY_BYTES` when set, else the set's largest body.
    pub fn body_cap(&self, set: &ModelSet) -> usize {
        self.max_body.unwrap_or_else(|| set.largest_body())
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`: `None` for requests without
    /// one (not from a browser), `*` or the echoed origin when allowed, 403 otherwise.
    pub fn allow_origin(&self, origin: Option<&str>) -> Result<Option<String>, ApiError> {
        let Some(origin) = origin else { return Ok(None) };
        match &self.allowed_origins {
            None => Ok(Some("*".into())),
            Some(list) if list.iter().any(|o| o == origin) => Ok(Some(origin.to_string())),
            Some(_) => Err(ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("origin `{}` is not in ALLOWED_ORIGINS", origin.chars().take(100).collect::<String>()),
            )),
        }
    }

    /// Checks the `Authorization` header when a token is configured (constant-time comparison).
    pub fn check_token(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.api_token else { return Ok(()) };
        let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        match given {
            Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            Some(_) => Err(ApiError::new(ErrorCode::Unauthorized, "the bearer token is not valid")),
            None => {
                Err(ApiError::new(ErrorCode::Unauthorized, "this Worker needs `Authorization: Bearer <API_TOKEN>`"))
            }
        }
    }
}

/// How a response may be cached, for [`AccessRules::response_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Content-addressed device files: cached for ever.
    Immutable,
    /// Manifests and the set list: cached, but revalidated on every use.
    Revalidate,
    /// Inference answers, health and errors: never stored.
    NoStore,
}

/// Seconds a client waits after a `429` (the rate-limit binding's period, `[[ratelimits]]` in
/// wrangler.toml).
pub const RATE_LIMIT_RETRY_AFTER_S: u32 = 60;

impl AccessRules {
    /// The CORS and caching headers of every response, given the `Access-Control-Allow-Origin`
    /// admission chose (`None`: no `Origin`, or a refused one).
    ///
    /// A shared cache must never hand a response made for one origin (or for no origin) to another:
    /// a Worker open to any origin answers every response with `Access-Control-Allow-Origin: *`,
    /// whether or not the request had an `Origin`; one with an origin list adds `Vary: Origin` to
    /// every response. With `API_TOKEN` set, nothing is `public`: files are `private`.
    pub fn response_headers(&self, allow_origin: Option<&str>, caching: Caching) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        let acao = match (&self.allowed_origins, allow_origin) {
            (None, _) => Some("*"),
            (Some(_), origin) => origin,
        };
        if let Some(origin) = acao {
            headers.push(("Access-Control-Allow-Origin", origin.to_string()));
            headers.push(("Access-Control-Expose-Headers", "Server-Timing, ETag, Retry-After".to_string()));
        }
        if self.allowed_origins.is_some() {
            headers.push(("Vary", "Origin".to_string()));
        }
        let scope = if self.api_token.is_some() { "private" } else { "public" };
        let cache_control = match caching {
            Caching::Immutable => format!("{scope}, max-age=31536000, immutable"),
            Caching::Revalidate if self.api_token.is_some() => "private, no-cache".to_string(),
            Caching::Revalidate => "no-cache".to_string(),
            Caching::NoStore => "no-store".to_string(),
        };
        headers.push(("Cache-Control", cache_control));
        headers.push(("X-Content-Type-Options", "nosniff".to_string()));
        headers
    }
}

/// A request as the Worker sees it before reading the body: untrusted strings, all of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// The raw method (`GET`, `POST`, `OPTIONS`, or anything else a client sent).
    pub method: &'a str,
    /// The URL path.
    pub path: &'a str,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Content-Length` header.
    pub content_length: Option<&'a str>,
}

/// A request the Worker may serve: its route and the `Access-Control-Allow-Origin` to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The route.
    pub route: Route,
    /// `Access-Control-Allow-Origin` for the response (`None`: not a browser request).
    pub allow_origin: Option<String>,
}

/// A request refused before its body is read: the error, the CORS origin to answer it with (so a
/// browser can read the JSON error), and the `Allow` header for a 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What is wrong.
    pub error: ApiError,
    /// `Access-Control-Allow-Origin` for the error response.
    pub allow_origin: Option<String>,
    /// `Allow` header value, for 405.
    pub allow: Option<&'static str>,
}

impl AccessRules {
    /// Every check the Worker makes before reading a body, in order: origin (403, answered without
    /// CORS), route (404/405), bearer token (401; not for the CORS preflight) and, for classify,
    /// the content type and declared length (415/413/400). The body itself is checked with
    /// [`protocol::check_classify_body`] once read.
    pub fn admit(&self, head: &RequestHead<'_>) -> Result<Admitted, Box<Refused>> {
        let allow_origin = self
            .allow_origin(head.origin)
            .map_err(|error| Box::new(Refused { error, allow_origin: None, allow: None }))?;
        let refuse = |error: ApiError| {
            let allow = (error.code == ErrorCode::MethodNotAllowed).then(|| protocol::allow_header(head.path));
            Box::new(Refused { error, allow_origin: allow_origin.clone(), allow })
        };
        let route = protocol::route(head.method, head.path).map_err(refuse)?;
        if route != Route::Preflight {
            self.check_token(head.authorization).map_err(refuse)?;
        }
        if matches!(route, Route::Classify { .. } | Route::Split { .. }) {
            // Without MAX_BODY_BYTES the length is checked against the set's own cap once the
            // set is known (`body_cap`), before the body is read.
            let cap = self.max_body.unwrap_or(usize::MAX);
            let encoding =
                protocol::check_classify_headers(head.content_type, head.content_length, cap).map_err(refuse)?;
            if matches!(route, Route::Split { .. }) && encoding != SampleEncoding::Raw {
                return Err(refuse(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("split features are `Content-Type: {}`, not an image", protocol::OCTET_STREAM),
                )));
            }
        }
        Ok(Admitted { route, allow_origin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let any = AccessRules::from_vars(None, None, None).unwrap();
        assert_eq!(any.allow_origin(Some("https://x.example")).unwrap().as_deref(), Some("*"));
        assert_eq!(any.allow_origin(None).unwrap(), None);
        let star = AccessRules::from_vars(Some(" * "), None, Some("")).unwrap();
        assert_eq!(star, any);
        let list = AccessRules::from_vars(Some("https://a.example/, http://127.0.0.1:8080"), None, None).unwrap();
        assert_eq!(list.allow_origin(Some("https://a.example")).unwrap().as_deref(), Some("https://a.example"));
        assert_eq!(list.allow_origin(Some("http://127.0.0.1:8080")).unwrap().as_deref(), Some("http://127.0.0.1:8080"));
        for bad in ["https://a.example.evil", "http://a.example", "null", ""] {
            let e = list.allow_origin(Some(bad)).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::OriginNotAllowed, 403), "{bad}");
        }
        assert_eq!(list.allow_origin(None).unwrap(), None);
    }

    #[test]
    fn tokens() {
        let open = AccessRules::from_vars(None, None, None).unwrap();
        assert!(open.check_token(None).is_ok());
        let locked = AccessRules::from_vars(None, Some("tok"), None).unwrap();
        for bad in [None, Some("tok"), Some("Bearer"), Some("Bearer to"), Some("Bearer tokk"), Some("Basic tok")] {
            assert_eq!(locked.check_token(bad).unwrap_err().status(), 401, "{bad:?}");
        }
        assert!(locked.check_token(Some("Bearer tok")).is_ok());
    }

    #[test]
    fn admit_checks_in_the_workers_order() {
        let rules = AccessRules::from_vars(Some("https://a.example"), Some("tok"), Some("1000")).unwrap();
        let classify = RequestHead {
            method: "POST",
            path: "/v1/classify",
            origin: Some("https://a.example"),
            authorization: Some("Bearer tok"),
            content_type: Some("application/octet-stream"),
            content_length: Some("784"),
        };
        let ok = rules.admit(&classify).unwrap();
        assert_eq!((ok.route, ok.allow_origin.as_deref()), (Route::Classify { set: None }, Some("https://a.example")));
        let refused = |head: RequestHead<'_>| *rules.admit(&head).unwrap_err();
        // A foreign origin is refused first, without CORS headers (the browser must not read it).
        let r = refused(RequestHead { origin: Some("https://evil.example"), method: "PUT", ..classify });
        assert_eq!((r.error.status(), r.allow_origin, r.allow), (403, None, None));
        // 405 carries the Allow header and CORS; 404 and 401 carry CORS.
        let r = refused(RequestHead { method: "GET", ..classify });
        assert_eq!((r.error.status(), r.allow), (405, Some("POST, OPTIONS")));
        assert_eq!(r.allow_origin.as_deref(), Some("https://a.example"));
        let r = refused(RequestHead { method: "DELETE", path: "/v1/health", ..classify });
        assert_eq!((r.error.status(), r.allow), (405, Some("GET, HEAD, OPTIONS")));
        assert_eq!(refused(RequestHead { path: "/v1/../etc", ..classify }).error.status(), 404);
        assert_eq!(refused(RequestHead { authorization: None, ..classify }).error.status(), 401);
        // The preflight needs no token; headers are checked for classify only.
        let pre = rules.admit(&RequestHead { method: "OPTIONS", authorization: None, ..classify }).unwrap();
        assert_eq!(pre.route, Route::Preflight);
        assert_eq!(refused(RequestHead { content_type: Some("text/plain"), ..classify }).error.status(), 415);
        assert_eq!(refused(RequestHead { content_length: Some("1001"), ..classify }).error.status(), 413);
        let health = RequestHead { method: "GET", path: "/v1/health", content_type: None, ..classify };
        assert_eq!(rules.admit(&health).unwrap().route, Route::Health);
        // A huge method is not echoed back whole.
        let long = "X".repeat(10_000);
        assert!(refused(RequestHead { method: &long, ..classify }).error.message.len() < 200);
    }

    #[test]
    fn body_cap() {
        assert_eq!(AccessRules::from_vars(None, None, None).unwrap().max_body, None);
        assert_eq!(AccessRules::from_vars(None, None, Some("2048")).unwrap().max_body, Some(2048));
        assert!(AccessRules::from_vars(None, None, Some("lots")).unwrap_err().contains("MAX_BODY_BYTES"));
    }

    #[test]
    fn a_blank_token_fails_closed() {
        for blank in ["", " ", "\t\n "] {
            let e = AccessRules::from_vars(None, Some(blank), None).unwrap_err();
            assert!(e.contains("API_TOKEN is set but blank"), "{blank:?}: {e}");
        }
        assert_eq!(AccessRules::from_vars(None, None, None).unwrap().api_token, None);
        assert_eq!(AccessRules::from_vars(None, Some(" tok "), None).unwrap().api_token.as_deref(), Some("tok"));
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_response_is_safe_in_a_shared_cache() {
        // Open to any origin: a wildcard ACAO on every response, with or without an Origin.
        let any = AccessRules::from_vars(None, None, None).unwrap();
        for origin in [None, Some("*")] {
            let h = any.response_headers(origin, Caching::Immutable);
            assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("*"));
            assert_eq!(header(&h, "Cache-Control"), Some("public, max-age=31536000, immutable"));
        }
        // An origin list: Vary: Origin on every response, the allowed origin echoed only to itself.
        let list = AccessRules::from_vars(Some("https://a.example"), None, None).unwrap();
        let no_origin = list.response_headers(None, Caching::Revalidate);
        assert_eq!(header(&no_origin, "Vary"), Some("Origin"));
        assert_eq!(header(&no_origin, "Access-Control-Allow-Origin"), None);
        let echoed = list.response_headers(Some("https://a.example"), Caching::Revalidate);
        assert_eq!((header(&echoed, "Vary"), header(&echoed, "Cache-Control")), (Some("Origin"), Some("no-cache")));
        // With a token nothing is public.
        let locked = AccessRules::from_vars(None, Some("tok"), None).unwrap();
        let file = locked.response_headers(None, Caching::Immutable);
        assert_eq!(header(&file, "Cache-Control"), Some("private, max-age=31536000, immutable"));
        assert_eq!(
            header(&locked.response_headers(None, Caching::Revalidate), "Cache-Control"),
            Some("private, no-cache")
        );
        assert_eq!(header(&locked.response_headers(None, Caching::NoStore), "Cache-Control"), Some("no-store"));
    }

    #[test]
    fn the_body_cap_is_each_sets_own_unless_max_body_bytes_says_otherwise() {
        let json = include_str!("../../../models/fashion-mnist/manifest.json");
        let set = ModelSet::new("fashion-mnist", json).unwrap();
        let split = set.manifest().split.as_ref().expect("the committed set has a split model");
        let features = protocol::FEATURES_HEADER_LEN + split.feature_shape.iter().product::<usize>();
        let derived = AccessRules::from_vars(None, None, None).unwrap();
        assert_eq!(derived.body_cap(&set), 784.max(features));
        assert_eq!(AccessRules::from_vars(None, None, Some("2048")).unwrap().body_cap(&set), 2048);
        // A 224x224 RGB set takes 150,528-byte samples, more than the 64 KiB the cap used to be.
        let mut rgb: serde_json::Value = serde_json::from_str(json).unwrap();
        rgb["input"]["shape"] = serde_json::json!([1, 3, 224, 224]);
        rgb["input"]["color"] = serde_json::json!("rgb");
        rgb["schema_version"] = serde_json::json!(2);
        rgb["name"] = serde_json::json!("photos");
        for key in ["split", "early_exit"] {
            rgb.as_object_mut().unwrap().remove(key);
        }
        let rgb = ModelSet::new("photos", &rgb.to_string()).unwrap();
        assert_eq!(derived.body_cap(&rgb), 150_528);
        // Admission, before the set is known, checks the type and that a declared length is a
        // number; the set's cap comes next. MAX_BODY_BYTES refuses at admission.
        let head = |length: &'static str| RequestHead {
            method: "POST",
            path: "/v1/models/photos/classify",
            origin: None,
            authorization: None,
            content_type: Some("application/octet-stream"),
            content_length: Some(length),
        };
        assert!(derived.admit(&head("150528")).is_ok());
        assert_eq!(derived.admit(&head("lots")).unwrap_err().error.code, ErrorCode::WrongInputLength);
        let capped = AccessRules::from_vars(None, None, Some("65536")).unwrap();
        assert_eq!(capped.admit(&head("150528")).unwrap_err().error.code, ErrorCode::PayloadTooLarge);
    }
}
