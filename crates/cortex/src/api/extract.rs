//! Request extractors that answer in the contract's shapes: JSON bodies (422 with `loc` paths,
//! 413 over the limit), pagination, and the authenticated caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{ApiError, FieldError};
use crate::auth::Identity;

/// Validation beyond what deserialisation checks; errors carry `loc` paths.
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// Collects field errors while checking a request body.
#[derive(Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    /// A string field's length in characters must lie in `min..=max`.
    pub fn len(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let n = value.chars().count();
        if n < min || n > max {
            let msg = if min > 0 && value.trim().is_empty() {
                "Field required and must not be empty".to_string()
            } else {
                format!("String should have between {min} and {max} characters")
            };
            self.0.push(FieldError::body(field, msg, "string_length"));
        }
        self
    }

    pub fn check(&mut self, ok: bool, field: &str, msg: &str, kind: &str) -> &mut Self {
        if !ok {
            self.0.push(FieldError::body(field, msg, kind));
        }
        self
    }

    pub fn push(&mut self, error: FieldError) -> &mut Self {
        self.0.push(error);
        self
    }

    pub fn finish(&mut self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.0))
        }
    }
}

/// A JSON body, deserialised and validated.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_lite::Mime>().ok())
            .is_some_and(|m| m.is_json());
        if !is_json {
            return Err(ApiError::validation(vec![FieldError {
                loc: vec![json!("body")],
                msg: "Expected a JSON body with Content-Type: application/json".into(),
                kind: "content_type".into(),
            }]));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("Request body too large".into())
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        let value: T = parse_json(&bytes)?;
        value.validate().map_err(ApiError::validation)?;
        Ok(ApiJson(value))
    }
}

/// Deserialise with the path of the failing field in `loc`. The whole body must be one JSON
/// value (trailing garbage is a `422`), and no string in it may hold a NUL character: PostgreSQL
/// cannot store one in `text`, so both backends refuse it here, alike, with the field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = deserialize_at_path(de)?;
    de.end().map_err(|err| {
        ApiError::validation(vec![FieldError {
            loc: vec![json!("body")],
            msg: format!("Invalid JSON: {err}"),
            kind: "json_invalid".into(),
        }])
    })?;
    if may_hold_nul(bytes)
        && let Ok(tree) = serde_json::from_slice::<Value>(bytes)
        && let Some(mut loc) = nul_path(&tree)
    {
        loc.insert(0, json!("body"));
        return Err(ApiError::validation(vec![nul_error(loc)]));
    }
    Ok(value)
}

/// The error for text holding a NUL character, at `loc`.
pub fn nul_error(loc: Vec<Value>) -> FieldError {
    FieldError {
        loc,
        msg: "Text must not contain the NUL character (\\u0000)".into(),
        kind: "string_nul".into(),
    }
}

/// Refuses a path or query string that decodes to a NUL character (`%00`), with the same `422`
/// on both backends, before any handler can try to store it.
pub async fn reject_nul(
    req: Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let uri = req.uri();
    let part = if uri.path().contains("%00") {
        Some("path")
    } else if uri.query().is_some_and(|q| q.contains("%00")) {
        Some("query")
    } else {
        None
    };
    match part {
        Some(part) => Err(ApiError::validation(vec![nul_error(vec![json!(part)])])),
        None => Ok(next.run(req).await),
    }
}

/// A cheap pre-check: only a body with a `\u0000` escape can hold a NUL (a raw control
/// character is already invalid JSON), so the tree walk runs only then.
fn may_hold_nul(bytes: &[u8]) -> bool {
    bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && &w[2..] == b"0000")
}

/// The path of the first string (value or key) holding a NUL character.
fn nul_path(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::String(s) => s.contains('\0').then(Vec::new),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            nul_path(item).map(|mut p| {
                p.insert(0, json!(i));
                p
            })
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(vec![json!(k)]);
            }
            nul_path(v).map(|mut p| {
                p.insert(0, json!(k));
                p
            })
        }),
        _ => None,
    }
}

fn deserialize_at_path<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(de).map_err(|err| {
        let mut loc = vec![json!("body")];
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => loc.push(json!(index)),
                serde_path_to_error::Segment::Map { key } => loc.push(json!(key)),
                serde_path_to_error::Segment::Enum { variant } => loc.push(json!(variant)),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = err.into_inner();
        let (kind, msg) = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ("json_invalid", format!("Invalid JSON: {inner}"))
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                let text = inner.to_string();
                // serde_json appends " at line L column C"; the loc already says where.
                let text = text.split(" at line ").next().unwrap_or(&text).to_string();
                let kind = if text.starts_with("missing field") {
                    "missing"
                } else {
                    "value_error"
                };
                if let Some(field) = text
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                {
                    loc.push(json!(field));
                }
                (kind, text)
            }
        };
        ApiError::validation(vec![FieldError {
            loc,
            msg,
            kind: kind.into(),
        }])
    })
}

/// Minimal media-type check, so `application/json; charset=utf-8` and `application/x+json` pass.
mod mime_lite {
    pub struct Mime(String);

    impl std::str::FromStr for Mime {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s.split(';').next().ok_or(())?.trim().to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Mime(essence))
            } else {
                Err(())
            }
        }
    }

    impl Mime {
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `?limit=&offset=` of every list.
#[derive(Debug, Clone, Copy)]
pub struct Pagination {
    pub limit: i64,
    pub offset: i64,
}

/// The `pagination` object of every list response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageInfo {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl Pagination {
    pub fn info(&self, total: i64) -> PageInfo {
        PageInfo {
            total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

#[derive(Deserialize)]
struct RawPagination {
    limit: Option<String>,
    offset: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<RawPagination>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::validation(vec![FieldError::query(
                    "query",
                    e.body_text(),
                    "query_invalid",
                )])
            })?;
        let mut errors = Vec::new();
        let limit = match raw.limit.as_deref().map(str::parse::<i64>) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                errors.push(FieldError::query(
                    "limit",
                    format!("limit must be an integer between 1 and {MAX_LIMIT}"),
                    "int_range",
                ));
                DEFAULT_LIMIT
            }
        };
        let offset = match raw.offset.as_deref().map(str::parse::<i64>) {
            None => 0,
            Some(Ok(n)) if n >= 0 => n,
            Some(_) => {
                errors.push(FieldError::query(
                    "offset",
                    "offset must be a non-negative integer",
                    "int_range",
                ));
                0
            }
        };
        if errors.is_empty() {
            Ok(Pagination { limit, offset })
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// The authenticated caller, put in place by the authentication layer.
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A partial update: a JSON object whose fields replace the resource's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(value_type = Object)]
pub struct JsonPatch(pub serde_json::Map<String, Value>);

impl Validate for JsonPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

impl JsonPatch {
    /// Apply to `current`: top-level fields replace, the object fields named in `merge` merge
    /// field by field; the result is parsed and validated as a whole, as a create would be.
    pub fn apply<T>(self, current: &T, merge: &[&str]) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned + Validate,
    {
        let mut target = match serde_json::to_value(current).map_err(ApiError::internal)? {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        for (key, value) in self.0 {
            match (target.get_mut(&key), value) {
                (Some(Value::Object(existing)), Value::Object(changes))
                    if merge.contains(&key.as_str()) =>
                {
                    existing.extend(changes);
                }
                (_, value) => {
                    target.insert(key, value);
                }
            }
        }
        let merged: T = parse_json(&serde_json::to_vec(&target).map_err(ApiError::internal)?)?;
        merged.validate().map_err(ApiError::validation)?;
        Ok(merged)
    }
}

/// Changing agents, actions and keys is for company admins.
pub fn require_admin(caller: &Identity, what: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Only company admins can change {what}"
        )))
    }
}

/// A `company_id` given in a body or query must be the caller's: any other (or no UUID at all)
/// answers 404 for `what`, exactly like a missing resource.
pub fn own_company(
    caller: &Identity,
    company_id: &str,
    what: &str,
) -> Result<uuid::Uuid, ApiError> {
    match uuid::Uuid::parse_str(company_id.trim()) {
        Ok(id) if id == caller.company_id => Ok(id),
        _ => Err(ApiError::not_found(what)),
    }
}

/// A path id; one that is not a UUID is a resource that does not exist.
pub fn path_id(id: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

/// Map a store error, naming the resource when it is missing.
pub fn missing(what: &'static str) -> impl Fn(crate::store::StoreError) -> ApiError {
    move |e| match e {
        crate::store::StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

/// A `multipart/form-data` body; anything else is a `400` in the contract's envelope (axum's
/// own rejection is plain text).
pub struct Form(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Form)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "Expected a multipart/form-data body ({})",
                    e.body_text()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        items: Vec<u32>,
    }

    fn loc_of(bytes: &str) -> (Vec<Value>, String) {
        match parse_json::<Body>(bytes.as_bytes()) {
            Err(ApiError::Validation(v)) => (v[0].loc.clone(), v[0].kind.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            loc_of(r#"{"inner": {"items": []}}"#),
            (vec![json!("body"), json!("name")], "missing".into())
        );
        assert_eq!(
            loc_of(r#"{"name": "x", "inner": {"items": [1, "two"]}}"#),
            (
                vec![json!("body"), json!("inner"), json!("items"), json!(1)],
                "value_error".into()
            )
        );
        assert_eq!(loc_of("{not json").1, "json_invalid");
    }
}
