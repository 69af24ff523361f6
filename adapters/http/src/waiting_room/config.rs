//! A room's configuration: read by anyone (or the waiting page, for a browser), set by an
//! operator.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use ordership_application::WaitingRoomError;

use super::{PAGE, RoomPath, Rooms};
use crate::auth::Caller;
use crate::dto::{RoomRequest, RoomResponse};
use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::responses::{BadRoomId, NoSuchRoom, NotJson, Unavailable};

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The page for an unknown room.
fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>No such waiting room \
             — ordership</title><body><h1>No such waiting room</h1><p>Check the link you \
             followed.</p></body></html>",
        ),
    )
        .into_response()
}

/// A waiting room: its configuration and its queue's figures (public). A browser asking for
/// HTML gets the waiting page, which joins the room with the buyer's token.
#[utoipa::path(
    get, path = "/waiting-rooms/{room}", tag = "waiting rooms",
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 200, description = "The room (JSON), or the waiting page (when HTML is asked for)",
            content((RoomResponse = "application/json"), (String = "text/html"))),
        (status = 400, response = BadRoomId),
        (status = 404, response = NoSuchRoom),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get_room(
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !wants_html(&headers) {
        let view = rooms.rooms.view(&room).await?;
        return Ok(axum::Json(RoomResponse::from(&view)).into_response());
    }
    // The page needs the room to exist, not the queue's figures (it asks for those itself).
    match rooms.rooms.room(&room).await {
        Ok(_) => {
            let mut response = Html(PAGE).into_response();
            // The page runs its own script only, and talks to this origin only.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                ),
            );
            Ok(response)
        }
        Err(WaitingRoomError::NotFound) => Ok(not_found_page()),
        Err(e) => Err(e.into()),
    }
}

/// Create or change a waiting room (operators).
///
/// Takes effect here at once and on every other instance within a second. Changing the rate
/// or state of a room with buyers waiting keeps their places. `stock` sets the units on sale;
/// the units orders hold stay counted.
#[utoipa::path(
    put, path = "/waiting-rooms/{room}", tag = "waiting rooms",
    security(("bearer" = ["admin"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    request_body(content = RoomRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The room as configured now", body = RoomResponse),
        (status = 400, description = "Malformed, or a field the schema refuses", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`stock` is below the units orders hold already", body = Problem, content_type = "application/problem+json"),
        (status = 415, response = NotJson),
        (status = 422, description = "`closes_at` is not after `opens_at`", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn put_room(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
    body: JsonBody<RoomRequest>,
) -> Result<axum::Json<RoomResponse>, ApiError> {
    caller.admin()?;
    let config = body.value.into_room(room.clone())?;
    rooms.rooms.put(config).await?;
    let view = rooms.rooms.view(&room).await?;
    Ok(axum::Json(RoomResponse::from(&view)))
}

/// Delete a waiting room (operators).
///
/// Its queue is kept for the key TTL (`--waiting-room-key-ttl`, a day by default), then Redis
/// forgets it; the room and its stock go at once. Orders placed through it keep their
/// admissions. Its products are sold without a queue from then on.
#[utoipa::path(
    delete, path = "/waiting-rooms/{room}", tag = "waiting rooms",
    security(("bearer" = ["admin"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRoomId),
        (status = 404, response = NoSuchRoom),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete_room(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
) -> Result<StatusCode, ApiError> {
    caller.admin()?;
    rooms.rooms.delete(&room).await?;
    Ok(StatusCode::NO_CONTENT)
}
