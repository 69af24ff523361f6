//! The answers many operations share, as reusable responses of the OpenAPI document: each is a
//! problem+json body under one description (and, for 503, its `Retry-After`). The types exist
//! for the document only; handlers answer with [`ApiError`](crate::ApiError).
#![allow(
    dead_code,
    reason = "document types: only their OpenAPI responses are used"
)]

use utoipa::ToResponse;

use crate::problem::Problem;

/// A dependency (storage, or a waiting room's queue) is unavailable, or the request timed out.
#[derive(ToResponse)]
#[response(
    description = "Storage or the waiting-room queue unavailable, or the request timed out: try again after Retry-After",
    content_type = "application/problem+json",
    headers(("Retry-After" = String, description = "Seconds to wait"))
)]
pub(crate) struct Unavailable(Problem);

/// The caller's quota is used up. The fields follow the IETF draft "RateLimit header fields for
/// HTTP" (draft-ietf-httpapi-ratelimit-headers); answers within the quota carry them too.
#[derive(ToResponse)]
#[response(
    description = "Too many requests: the customer's quota (a token bucket per customer, shared by every instance through Redis when Redis is configured) is used up; try again after Retry-After. Off unless configured",
    content_type = "application/problem+json",
    headers(("Retry-After" = String, description = "Seconds until one more request is allowed"),
        ("RateLimit-Policy" = String, description = "The quota, as in the IETF draft draft-ietf-httpapi-ratelimit-headers: `\"orders\";q=20;w=60` — 20 requests per 60 seconds"),
        ("RateLimit" = String, description = "What is left, as in the same draft: `\"orders\";r=0;t=3` — 0 left, the whole quota back in 3 seconds"))
)]
pub(crate) struct RateLimited(Problem);

/// An id in the path that is not a UUID.
#[derive(ToResponse)]
#[response(
    description = "The id is not a UUID",
    content_type = "application/problem+json"
)]
pub(crate) struct NotUuid(Problem);

/// A room id in the path that is not one.
#[derive(ToResponse)]
#[response(
    description = "Malformed room id",
    content_type = "application/problem+json"
)]
pub(crate) struct BadRoomId(Problem);

/// A body sent as something other than JSON.
#[derive(ToResponse)]
#[response(
    description = "Body not sent as application/json",
    content_type = "application/problem+json"
)]
pub(crate) struct NotJson(Problem);

/// A room that does not exist.
#[derive(ToResponse)]
#[response(
    description = "No such waiting room",
    content_type = "application/problem+json"
)]
pub(crate) struct NoSuchRoom(Problem);
