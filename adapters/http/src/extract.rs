//! Request extraction that answers with problem details instead of axum's plain-text
//! rejections, and the Idempotency-Key header.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use ordership_application::IdempotentRequest;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::problem::{ApiError, FieldError};

/// A JSON body, and on demand its canonical form (keys sorted, no insignificant white space) for
/// fingerprinting: the same JSON written differently is the same request.
///
/// Strict: the content type must be JSON (415 otherwise), and the body must be exactly what `T`
/// describes — an unknown field at any depth, a duplicated key or a wrong type is a 400.
#[derive(Debug)]
pub(crate) struct JsonBody<T> {
    pub(crate) value: T,
    bytes: Bytes,
}

impl<T> JsonBody<T> {
    /// The canonical form; computed only when a request needs it (one with an Idempotency-Key).
    pub(crate) fn canonical(&self) -> String {
        // The bytes deserialized into `T`, so they are JSON.
        serde_json::from_slice::<serde_json::Value>(&self.bytes)
            .map(|json| json.to_string())
            .unwrap_or_default()
    }
}

/// `application/json` or any `+json` type, with any parameters (`charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|essence| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else if stalled(&rejection) {
                ApiError::BodyTimeout
            } else {
                ApiError::MalformedBody(rejection.body_text())
            }
        })?;
        // Straight into `T`: its derived deserializer refuses duplicated and unknown keys, which
        // a detour through a JSON map would silently merge.
        let value: T =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedBody(e.to_string()))?;
        Ok(Self { value, bytes })
    }
}

/// Whether reading the body failed because the client stopped sending it (the body timeout of
/// `ApiBuilder::build`).
fn stalled(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A path segment that must be a UUID (an order or delivery id): 400 with problem details
/// otherwise, never axum's plain-text rejection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdPath(pub(crate) uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = || ApiError::BadParameter(FieldError::new("id", "must be a UUID"));
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| bad())?;
        uuid::Uuid::parse_str(&id).map(Self).map_err(|_| bad())
    }
}

/// Query parameters, refused with problem details (400) when they do not fit `T`: a wrong
/// type, a value out of its enum, a parameter given twice.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Self).map_err(|e| {
            // serde names the parameter in backticks (unknown, duplicate or missing field).
            let message = e.to_string();
            let field = message.split('`').nth(1).unwrap_or("query").to_owned();
            ApiError::BadParameter(FieldError::new(field, message))
        })
    }
}

/// A page's cursor (`after`, an order id) and size (`limit`, 1–200, default 50), as list
/// endpoints take them.
///
/// # Errors
/// [`ApiError::BadParameter`] naming the parameter.
pub(crate) fn page(
    after: Option<&str>,
    limit: Option<&str>,
) -> Result<(Option<ordership_domain::OrderId>, u32), ApiError> {
    let bad = |field: &str, message: &str| ApiError::BadParameter(FieldError::new(field, message));
    let after = after
        .map(|a| {
            a.parse()
                .map_err(|_| bad("after", "must be a cursor from a previous page"))
        })
        .transpose()?;
    let limit = match limit {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=200).contains(l))
            .ok_or_else(|| bad("limit", "must be a whole number between 1 and 200"))?,
    };
    Ok((after, limit))
}

/// The name of the header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The client's `Idempotency-Key` for the operation `scope`, if it sent one.
///
/// # Errors
/// [`ApiError::BadIdempotencyKey`] unless 1–255 visible ASCII characters.
pub(crate) fn idempotency(
    headers: &HeaderMap,
    scope: &str,
    canonical_body: impl FnOnce() -> String,
) -> Result<Option<IdempotentRequest>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadIdempotencyKey("it must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey(
            "it must be 1 to 255 visible ASCII characters",
        ));
    }
    let mut digest = Sha256::new();
    digest.update(scope.as_bytes());
    digest.update(b"\n");
    digest.update(canonical_body().as_bytes());
    Ok(Some(IdempotentRequest {
        scope: scope.to_owned(),
        key: key.to_owned(),
        fingerprint: format!("{:x}", digest.finalize()),
    }))
}
