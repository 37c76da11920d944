//! The serving side of the wire protocol: access rules (CORS allow-list, bearer token, body cap) and
//! the classify handler. The Cloudflare Worker (edge-worker) is a thin HTTP facade over this, so
//! every check here is unit-tested natively.
//!
//! ```
//! use hiedge_core::server::AccessRules;
//! let rules = AccessRules::from_vars(Some("https://a.example, http://127.0.0.1:5173"), Some("s3cret"), None).unwrap();
//! assert_eq!(rules.allow_origin(Some("https://a.example")).unwrap().as_deref(), Some("https://a.example"));
//! assert_eq!(rules.allow_origin(Some("https://evil.example")).unwrap_err().status(), 403);
//! assert!(rules.check_token(Some("Bearer s3cret")).is_ok());
//! assert_eq!(rules.check_token(Some("Bearer nope")).unwrap_err().status(), 401);
//! ```
//!
//! `access.rs` admits a request (route, origin, token, headers, body cap) and chooses the response
//! headers; `models.rs` serves a deployment's model sets (which files browsers may fetch, the large
//! model, the split tail); `log.rs` is the one JSON line the Worker logs per inference request.

mod access;
mod log;
mod models;
pub mod oip;

pub use access::{AccessRules, Admitted, Caching, Refused, RequestHead, RATE_LIMIT_RETRY_AFTER_S};
pub use log::{RequestLog, REQUEST_EVENT};
pub use models::{
    broken_set, model_set_list, parse_set_index, sample_input, ModelService, ModelSet, SplitService, DEVICE_MODEL,
    DEVICE_ROLES, SERVER_MODEL,
};
