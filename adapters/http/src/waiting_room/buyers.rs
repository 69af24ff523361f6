//! A buyer's endpoints: join a room, see where they stand, leave.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordership_application::Entry;
use ordership_domain::waiting_room::RoomId;

use super::{QUEUE_TOKEN, RoomPath, Rooms};
use crate::auth::Caller;
use crate::dto::EntryResponse;
use crate::fair_use::{ClientAddr, FairUse, Quota, with_fields};
use crate::problem::{ApiError, Problem};
use crate::responses::{BadRoomId, NoSuchRoom, RateLimited, Unavailable};

/// 202 with `Retry-After` while waiting, 200 with it when sold out, 200 otherwise.
fn entry_response(room: &RoomId, entry: &Entry) -> Response {
    let body = EntryResponse::new(room, entry);
    let (status, poll_after) = match entry {
        Entry::Waiting { poll_after, .. } => (StatusCode::ACCEPTED, Some(poll_after)),
        Entry::SoldOut { poll_after, .. } => (StatusCode::OK, Some(poll_after)),
        Entry::Admitted { .. } | Entry::Expired { .. } => (StatusCode::OK, None),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(poll_after) = poll_after
        && let Ok(value) = HeaderValue::from_str(&poll_after.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Join a flash sale's waiting room (or see where you stand in it).
///
/// One entry per buyer (the token's subject) and room: joining again changes nothing. A buyer
/// who need not wait — the room is open, nobody waits, the current window has admissions left —
/// is admitted at once (200, with an admission token); otherwise the answer is 202 with the
/// position, an estimated wait, when to ask again and a queue token. Joins are limited per
/// customer and per source address when so configured (429).
#[utoipa::path(
    post, path = "/waiting-rooms/{room}/entries", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$"),
        ("Queue-Token" = Option<String>, Header, description = "The queue token of an earlier answer: a buyer the queue lost is put back at that ticket (a token that is not this buyer's for this room is ignored)")),
    responses(
        (status = 200, description = "Admitted (or admitted before)", body = EntryResponse),
        (status = 202, description = "Waiting", body = EntryResponse,
            headers(("Retry-After" = String, description = "Seconds until the next status call"))),
        (status = 400, response = BadRoomId),
        (status = 404, response = NoSuchRoom),
        (status = 409, description = "The room is closed, or the buyer has ordered in this sale already", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn join(
    caller: Caller,
    State(rooms): State<Rooms>,
    Extension(fair_use): Extension<Arc<FairUse>>,
    peer: Option<Extension<ClientAddr>>,
    RoomPath(room): RoomPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let buyer = caller.customer()?;
    let address = fair_use.client_address(&headers, peer.map(|Extension(peer)| peer));
    let by_address = match address {
        Some(address) => {
            fair_use
                .take(Quota::AddressJoins, &address.to_string())
                .await?
        }
        None => None,
    };
    let quota = fair_use
        .take(Quota::Joins, buyer.as_str())
        .await?
        .or(by_address);
    let queue_token = headers.get(QUEUE_TOKEN).and_then(|v| v.to_str().ok());
    let entry = rooms.rooms.join(&room, &buyer, queue_token).await?;
    let mut response = entry_response(&room, &entry);
    with_fields(response.headers_mut(), quota);
    Ok(response)
}

/// Where you stand in a waiting room; each call is a heartbeat.
#[utoipa::path(
    get, path = "/waiting-rooms/{room}/entries/me", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 200, description = "Admitted, or admitted and expired", body = EntryResponse),
        (status = 202, description = "Waiting", body = EntryResponse,
            headers(("Retry-After" = String, description = "Seconds until the next status call"))),
        (status = 400, response = BadRoomId),
        (status = 404, description = "No such room, or not in it (never joined, left, or dropped after the heartbeat timeout)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn my_entry(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
) -> Result<Response, ApiError> {
    let buyer = caller.customer()?;
    let entry = rooms.rooms.status(&room, &buyer).await?;
    Ok(entry_response(&room, &entry))
}

/// Leave a waiting room.
#[utoipa::path(
    delete, path = "/waiting-rooms/{room}/entries/me", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, response = BadRoomId),
        (status = 404, description = "No such room, or not in it", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn leave(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
) -> Result<StatusCode, ApiError> {
    let buyer = caller.customer()?;
    rooms.rooms.leave(&room, &buyer).await?;
    Ok(StatusCode::NO_CONTENT)
}
