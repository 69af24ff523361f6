//! Errors as RFC 9457 problem details (`application/problem+json`). Every error the API returns
//! goes through [`ApiError`]; server-side failures log their cause chain and never show it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordership_domain::{ValidationError, ValidationErrors};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `lines[0].quantity`.
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Identifies the kind of problem; stable, safe to branch on.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// For validation problems: every offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The detail of a 401 for a request that sent no token.
pub(crate) const NO_TOKEN: &str = "this needs a bearer token in the Authorization header";

/// Every error an endpoint can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this operation: {0}")]
    MalformedBody(String),
    #[error("the request body is larger than allowed")]
    BodyTooLarge,
    #[error("the request body is not JSON: send it with content-type application/json")]
    UnsupportedMediaType,
    /// Fields the schema refuses (400): every one of them, with its path.
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// Well-formed and admitted by the schema, but a business rule refuses it (422).
    #[error("the request breaks a business rule")]
    BusinessRule(Vec<FieldError>),
    #[error("{0}")]
    BadParameter(FieldError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the Idempotency-Key header is invalid: {0}")]
    BadIdempotencyKey(&'static str),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// No bearer token, or one that is not valid here (401, with `WWW-Authenticate`).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid token without the scope this needs (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// An order for a flash sale's product without a valid admission of its waiting room (403).
    #[error("{0}")]
    AdmissionRequired(&'static str),
    #[error("the admission has expired: leave the waiting room and join it again")]
    AdmissionExpired,
    #[error("this admission has bought its order already (one order per buyer and sale)")]
    AdmissionUsed,
    #[error("already ordered in this sale: one order per buyer and waiting room")]
    AlreadyOrdered,
    /// The sale's stock has fewer units left than the order asks for (409).
    #[error(
        "sold out: {left} units of this sale are left; units of cancelled orders come back to the queue"
    )]
    SoldOut { left: u32 },
    #[error("the waiting room is closed: its products are sold without a queue")]
    WaitingRoomClosed,
    /// The waiting room's queue cannot be reached (503, with `Retry-After`).
    #[error("the waiting room is unavailable; retry later")]
    WaitingRoomUnavailable(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("the request took too long")]
    Timeout,
    /// The client stopped sending its request body (408; the connection is closed).
    #[error("the request body stopped arriving; send the whole request again")]
    BodyTimeout,
    /// The caller follows as many orders as they may (429, with `Retry-After`).
    #[error("you follow as many orders as you may at once; close a stream or retry later")]
    TooManyFollowed,
    /// This instance follows as many orders as it may (503, with `Retry-After`).
    #[error("this server follows as many orders as it can; retry later")]
    FollowersFull,
    /// This instance keeps as many waiting-room streams open as it may (503, with `Retry-After`).
    #[error(
        "this server keeps as many waiting-room streams open as it can; poll your entry meanwhile"
    )]
    WaitingRoomStreamsFull,
    /// The customer's quota is used up (429, with `Retry-After` and the quota's fields).
    #[error("too many requests: your quota is used up for now; retry after the time given")]
    RateLimited {
        retry_after: u64,
        /// `RateLimit-Policy` and `RateLimit`.
        fields: Box<[(header::HeaderName, HeaderValue); 2]>,
    },
    /// The service is behind and sheds new orders (503, with `Retry-After`); the reason is
    /// `outbox_backlog` or `consumer_lag`.
    #[error("the service is catching up ({0}) and takes no new orders for a moment; retry later")]
    Overloaded(&'static str),
    #[error("a backing service is unavailable; retry later")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl FieldError {
    #[must_use]
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl From<ValidationError> for FieldError {
    fn from(e: ValidationError) -> Self {
        Self::new(e.field, e.message)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        Self::Validation(e.0.into_iter().map(FieldError::from).collect())
    }
}

impl ApiError {
    /// Status, `type` slug and title.
    const fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedBody(_) => (S::BAD_REQUEST, "malformed-body", "Malformed request body"),
            Self::BodyTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Validation(_) => (S::BAD_REQUEST, "validation-failed", "Validation failed"),
            Self::BusinessRule(_) => (
                S::UNPROCESSABLE_ENTITY,
                "business-rule",
                "A business rule refuses the request",
            ),
            Self::BadParameter(_) => (S::BAD_REQUEST, "bad-parameter", "Invalid parameter"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict with the current state"),
            Self::BadIdempotencyKey(_) => (
                S::BAD_REQUEST,
                "bad-idempotency-key",
                "Invalid Idempotency-Key",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with a different request",
            ),
            Self::Unauthenticated(_) => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Not allowed"),
            Self::AdmissionRequired(_) => {
                (S::FORBIDDEN, "admission-required", "Admission required")
            }
            Self::AdmissionExpired => (S::FORBIDDEN, "admission-expired", "Admission expired"),
            Self::AdmissionUsed => (S::CONFLICT, "admission-used", "Admission already used"),
            Self::AlreadyOrdered => (
                S::CONFLICT,
                "already-ordered",
                "Already ordered in this sale",
            ),
            Self::SoldOut { .. } => (S::CONFLICT, "sold-out", "Sold out"),
            Self::WaitingRoomClosed => (S::CONFLICT, "waiting-room-closed", "Waiting room closed"),
            Self::WaitingRoomUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "waiting-room-unavailable",
                "Waiting room unavailable",
            ),
            Self::NoRoute => (S::NOT_FOUND, "no-route", "No such resource"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Timeout => (S::SERVICE_UNAVAILABLE, "timeout", "Request timed out"),
            Self::BodyTimeout => (S::REQUEST_TIMEOUT, "body-timeout", "Request body timed out"),
            Self::TooManyFollowed => (
                S::TOO_MANY_REQUESTS,
                "too-many-followed",
                "Too many orders followed",
            ),
            Self::FollowersFull => (S::SERVICE_UNAVAILABLE, "followers-full", "Server busy"),
            Self::WaitingRoomStreamsFull => (
                S::SERVICE_UNAVAILABLE,
                "waiting-room-streams-full",
                "Server busy",
            ),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::Overloaded(_) => (S::SERVICE_UNAVAILABLE, "overloaded", "Shedding load"),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    /// The problem document for this error.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.kind();
        let errors = match self {
            Self::Validation(errors) | Self::BusinessRule(errors) => Some(errors.clone()),
            Self::BadParameter(e) => Some(vec![e.clone()]),
            _ => None,
        };
        Problem {
            kind: format!("https://ordership.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        match &self {
            Self::Internal(_) => tracing::error!(error = %cause_chain(&self), "request failed"),
            Self::Unavailable(_) | Self::WaitingRoomUnavailable(Some(_)) => {
                tracing::warn!(error = %cause_chain(&self), "request failed");
            }
            Self::Timeout => tracing::warn!("request timed out"),
            _ => {}
        }
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // RFC 6750: a missing token gets the bare challenge, a refused one says why.
        let challenge = match &self {
            Self::Unauthenticated(NO_TOKEN) => Some("Bearer"),
            Self::Unauthenticated(_) => Some(r#"Bearer error="invalid_token""#),
            Self::Forbidden(_) => Some(r#"Bearer error="insufficient_scope""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        let retry_after = match &self {
            Self::Unavailable(_) | Self::Timeout | Self::WaitingRoomUnavailable(_) => Some("1"),
            // Catching up takes seconds, not milliseconds.
            Self::Overloaded(_) => Some("2"),
            // Streams last: a place frees up when one ends.
            Self::TooManyFollowed | Self::FollowersFull | Self::WaitingRoomStreamsFull => Some("5"),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if let Self::RateLimited {
            retry_after,
            fields,
        } = &self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            for (name, value) in fields.iter() {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        if matches!(self, Self::BodyTimeout) {
            // RFC 9110 §15.5.9: the rest of the body may still come; this connection is done.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
