//! The waiting rooms' endpoints: a buyer joins, watches their place (polling or Server-Sent
//! Events), leaves; anyone reads a room's figures; an operator configures rooms. A browser that
//! asks for HTML at a room's URL gets the waiting page.

mod buyers;
mod config;
pub(crate) mod events;
mod tokens;

pub(crate) use buyers::{__path_join, __path_leave, __path_my_entry, join, leave, my_entry};
pub(crate) use config::{__path_get_room, __path_put_room, get_room, put_room};
pub(crate) use events::{__path_my_events, my_events};
pub use tokens::SignedTokens;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::routing::get;
use ordership_application::{Shutdown, WaitingRoomService};
use ordership_domain::ValidationError;
use ordership_domain::waiting_room::RoomId;

use crate::problem::{ApiError, FieldError};

/// The header a returning buyer sends their queue token in.
pub const QUEUE_TOKEN: &str = "queue-token";

/// The waiting page: one self-contained file (no CDN, no cookies).
const PAGE: &str = include_str!("page.html");

#[derive(Clone)]
pub(crate) struct Rooms {
    pub(crate) rooms: WaitingRoomService,
    /// Ends the event streams when the process stops.
    pub(crate) shutdown: Option<Shutdown>,
}

pub(crate) fn routes(rooms: Rooms) -> Router {
    Router::new()
        .route("/waiting-rooms/{room}", get(get_room).put(put_room))
        .route("/waiting-rooms/{room}/entries", axum::routing::post(join))
        .route(
            "/waiting-rooms/{room}/entries/me",
            get(my_entry).delete(leave),
        )
        .route("/waiting-rooms/{room}/entries/me/events", get(my_events))
        .with_state(rooms)
}

/// A room id in the path: 400 with problem details when malformed.
#[derive(Debug, Clone)]
pub(crate) struct RoomPath(RoomId);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: ValidationError| ApiError::BadParameter(FieldError::from(e));
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadParameter(FieldError::new("room", "missing")))?;
        RoomId::parse(&id).map(Self).map_err(bad)
    }
}
