//! The routing table of the wire protocol (the one the Worker dispatches on), the set-name rule and
//! the constants code outside Rust takes from it.

use super::{ApiError, ErrorCode, CLASSIFY_PATH, HEALTH_PATH, MODELS_PATH};

/// Longest model-set name.
pub const MAX_SET_NAME: usize = 64;

/// [`is_set_name`] as an ECMAScript regular expression, for the code outside Rust that must apply
/// the same rule (the Worker's build script): it reads it from
/// `core/protocol-constants.json`, which this crate's tests keep equal to these constants.
pub const SET_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// The Cache API cache a browser client keeps the wasm, manifests and model files in (by sha256).
pub const CLIENT_CACHE_NAME: &str = "hiedge-v1";

/// Whether `name` may name a model set: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter
/// or digit. Set names are directory names and URL path segments, so nothing else is allowed.
pub fn is_set_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SET_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `hex` is a sha256 as manifests write it: 64 lower-case hex digits.
pub fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `/v1/models/<set>`: the set's manifest.
pub fn set_path(set: &str) -> String {
    format!("{MODELS_PATH}/{set}")
}

/// `/v1/models/<set>/classify`: classify with the set's large model.
pub fn set_classify_path(set: &str) -> String {
    format!("{MODELS_PATH}/{set}/classify")
}

/// `/v1/models/<set>/split/<trunk sha256>`: the set's split tail on features from that trunk.
pub fn set_split_path(set: &str, trunk_sha256: &str) -> String {
    format!("{MODELS_PATH}/{set}/split/{trunk_sha256}")
}

/// `/v1/models/<set>/files/<sha256>`: one device-side file of the set (tiny model, early-exit
/// stages), addressed by its content so it can be cached for ever.
pub fn set_file_path(set: &str, sha256: &str) -> String {
    format!("{MODELS_PATH}/{set}/files/{sha256}")
}

/// The routes a Worker serves. `set: None` is the Worker's default set (`DEFAULT_MODEL_SET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/health`: the default set's large model.
    Health,
    /// `GET /v1/models`: the list of model sets.
    Models,
    /// `GET /v1/models/<set>`: a set's manifest.
    Manifest {
        /// The set.
        set: String,
    },
    /// `GET /v1/models/<set>/files/<sha256>`: a device-side file of a set.
    File {
        /// The set.
        set: String,
        /// The file's sha256, as the manifest lists it.
        sha256: String,
    },
    /// `POST /v1/models/<set>/split/<trunk sha256>`: the set's split tail on quantised features.
    Split {
        /// The set.
        set: String,
        /// sha256 of the trunk that computed the features (the client's split-model identity).
        trunk_sha256: String,
    },
    /// `POST /v1/classify` (the default set) or `POST /v1/models/<set>/classify`.
    Classify {
        /// The set; `None` for the default one.
        set: Option<String>,
    },
    /// `OPTIONS` on any known path (CORS preflight).
    Preflight,
}

impl Route {
    /// The model set the route names, if it names one.
    pub fn set(&self) -> Option<&str> {
        match self {
            Route::Manifest { set } | Route::File { set, .. } | Route::Split { set, .. } => Some(set),
            Route::Classify { set } => set.as_deref(),
            _ => None,
        }
    }
}

/// A path's route and the one method it accepts (besides `HEAD` for `GET`, and `OPTIONS`).
fn resolve(path: &str) -> Option<(Route, &'static str)> {
    match path {
        HEALTH_PATH => return Some((Route::Health, "GET")),
        MODELS_PATH => return Some((Route::Models, "GET")),
        CLASSIFY_PATH => return Some((Route::Classify { set: None }, "POST")),
        _ => {}
    }
    let rest = path.strip_prefix(MODELS_PATH)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [set] if is_set_name(set) => Some((Route::Manifest { set: set.to_string() }, "GET")),
        [set, "classify"] if is_set_name(set) => Some((Route::Classify { set: Some(set.to_string()) }, "POST")),
        [set, "files", sha] if is_set_name(set) && is_sha256(sha) => {
            Some((Route::File { set: set.to_string(), sha256: sha.to_string() }, "GET"))
        }
        [set, "split", sha] if is_set_name(set) && is_sha256(sha) => {
            Some((Route::Split { set: set.to_string(), trunk_sha256: sha.to_string() }, "POST"))
        }
        _ => None,
    }
}

/// Maps a method and path to a route: 404 for unknown paths (including any with `..`, `//`, a
/// trailing slash, a set name that is not [`is_set_name`] or a file key that is not a sha256),
/// 405 for known paths with another method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let Some((route, accepted)) = resolve(path) else {
        let shown: String = path.chars().take(80).collect();
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no route for `{shown}`; the routes are GET {HEALTH_PATH}, GET {MODELS_PATH}, GET {MODELS_PATH}/<set>, \
                 GET {MODELS_PATH}/<set>/files/<sha256>, POST {MODELS_PATH}/<set>/classify, \
                 POST {MODELS_PATH}/<set>/split/<trunk sha256>, POST {CLASSIFY_PATH}"
            ),
        ));
    };
    match method {
        "OPTIONS" => Ok(Route::Preflight),
        m if m == accepted || (m == "HEAD" && accepted == "GET") => Ok(route),
        m => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{} accepts {accepted} only, not {}",
                path.chars().take(80).collect::<String>(),
                m.chars().take(20).collect::<String>()
            ),
        )),
    }
}

/// Methods allowed on a route, for the `Allow` header.
pub fn allowed_methods(route: &Route) -> &'static str {
    match route {
        Route::Classify { .. } | Route::Split { .. } => "POST, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    }
}

/// The `Allow` header for a known path (its method and `OPTIONS`).
pub fn allow_header(path: &str) -> &'static str {
    match resolve(path) {
        Some((route, _)) => allowed_methods(&route),
        None => allowed_methods(&Route::Health),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern is `is_set_name` written out: its two character classes are exactly the bytes
    /// the function accepts first and after, and its repeat count is `MAX_SET_NAME - 1`.
    #[test]
    fn set_name_pattern_says_what_is_set_name_says() {
        let class = |bytes: &mut dyn Iterator<Item = u8>| -> String { bytes.map(char::from).collect() };
        let first = class(&mut (0u8..128).filter(|&b| is_set_name(&char::from(b).to_string())));
        let rest = class(&mut (0u8..128).filter(|&b| is_set_name(&format!("a{}", char::from(b)))));
        let spell = |members: &str| {
            let mut out = String::new();
            for (from, to) in [('a', 'z'), ('0', '9')] {
                let range: String = (from..=to).collect();
                assert!(members.contains(&range), "{members}");
                out.push_str(&format!("{from}-{to}"));
            }
            let others: String = members.chars().filter(|c| !c.is_ascii_alphanumeric()).collect();
            out + &others.replace('-', "") + if others.contains('-') { "-" } else { "" }
        };
        assert_eq!((first.len(), rest.len()), (36, 38));
        let pattern = format!("^[{}][{}]{{0,{}}}$", spell(&first), spell(&rest), MAX_SET_NAME - 1);
        assert_eq!(SET_NAME_PATTERN, pattern);
        assert!(is_set_name(&"a".repeat(MAX_SET_NAME)) && !is_set_name(&"a".repeat(MAX_SET_NAME + 1)));
    }

    /// The constants code outside Rust takes from core, as the JSON of `core/protocol-constants.json`.
    fn constants_json() -> String {
        let constants = serde_json::json!({
            "_comment": "Generated from hiedge-core (core/src/protocol/routes.rs) by its tests; HIEDGE_BLESS=1 cargo test -p hiedge-core rewrites it.",
            "setNamePattern": SET_NAME_PATTERN,
            "maxSetName": MAX_SET_NAME,
            "maxStaticAssetBytes": crate::protocol::MAX_STATIC_ASSET_BYTES,
        });
        let mut text = serde_json::to_string_pretty(&constants).unwrap_or_default();
        text.push('\n');
        text
    }

    /// `core/protocol-constants.json` is what [`constants_json`] writes (HIEDGE_BLESS=1 rewrites it).
    #[test]
    fn the_constants_file_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-constants.json");
        let expected = constants_json();
        if std::env::var("HIEDGE_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &expected).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(committed, expected, "{} is stale: run HIEDGE_BLESS=1 cargo test -p hiedge-core", path.display());
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("GET", HEALTH_PATH).unwrap(), Route::Health);
        assert_eq!(route("HEAD", MODELS_PATH).unwrap(), Route::Models);
        assert_eq!(route("OPTIONS", CLASSIFY_PATH).unwrap(), Route::Preflight);
        assert_eq!(route("POST", CLASSIFY_PATH).unwrap(), Route::Classify { set: None });
        assert_eq!(route("GET", "/v1/models/mnist").unwrap(), Route::Manifest { set: "mnist".into() });
        let classify = route("POST", &set_classify_path("fashion-mnist")).unwrap();
        assert_eq!((classify.set(), allowed_methods(&classify)), (Some("fashion-mnist"), "POST, OPTIONS"));
        let sha = "ab".repeat(32);
        assert_eq!(
            route("GET", &set_file_path("my_set-2", &sha)).unwrap(),
            Route::File { set: "my_set-2".into(), sha256: sha.clone() }
        );
        let set_classify = set_classify_path("mnist");
        for (m, p) in [
            ("PUT", CLASSIFY_PATH),
            ("DELETE", HEALTH_PATH),
            ("POST", MODELS_PATH),
            ("GET", CLASSIFY_PATH),
            ("GET", set_classify.as_str()),
            ("POST", "/v1/models/mnist"),
        ] {
            let e = route(m, p).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::MethodNotAllowed, 405), "{m} {p}");
        }
        assert_eq!(allow_header(&set_classify), "POST, OPTIONS");
        assert_eq!(allow_header("/v1/models/mnist"), "GET, HEAD, OPTIONS");
        let upper_sha = format!("/v1/models/mnist/files/{}", "AB".repeat(32));
        let short_sha = format!("/v1/models/mnist/files/{}", "ab".repeat(31));
        let long_name = format!("/v1/models/{}", "a".repeat(65));
        for p in [
            "/",
            "/v1",
            "/v1/classify/",
            "/v2/classify",
            "/v1/../v1/classify",
            "//v1/health",
            "/v1/models/../../etc",
            "/v1/models/",
            "/v1/models/..",
            "/v1/models/Mnist",
            "/v1/models/-x",
            "/v1/models/mnist/",
            "/v1/models/mnist/large.onnx",
            "/v1/models/mnist/files/large.onnx",
            "/v1/models/mnist/classify/x",
            "/v1/models/a%2Fb",
            upper_sha.as_str(),
            short_sha.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(route("GET", p).unwrap_err().status(), 404, "{p}");
        }
        assert_eq!(allowed_methods(&Route::Classify { set: None }), "POST, OPTIONS");
        let split = route("POST", &set_split_path("mnist", &sha)).unwrap();
        assert_eq!(split, Route::Split { set: "mnist".into(), trunk_sha256: sha.clone() });
        assert_eq!((split.set(), allowed_methods(&split)), (Some("mnist"), "POST, OPTIONS"));
        assert_eq!(route("GET", &set_split_path("mnist", &sha)).unwrap_err().status(), 405);
        assert_eq!(route("POST", "/v1/models/mnist/split/abc").unwrap_err().status(), 404);
    }
}
