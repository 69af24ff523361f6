//! The waiting rooms' endpoints: a buyer joins, watches their place (polling or Server-Sent
//! Events), leaves; anyone reads a room's figures; an operator configures rooms. A browser that
//! asks for HTML at a room's URL gets the waiting page.

mod buyers;
mod config;
pub(crate) mod events;
mod tokens;

pub(crate) use buyers::{__path_join, __path_leave, __path_my_entry, join, leave, my_entry};
pub(crate) use config::{
    __path_delete_room, __path_get_room, __path_put_room, delete_room, get_room, put_room,
};
pub(crate) use events::{__path_my_events, my_events};
pub use tokens::SignedTokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// The event streams this instance may keep open, apart from the orders' own.
    pub(crate) streams: Arc<StreamSlots>,
}

/// A cap on open waiting-room event streams.
#[derive(Debug)]
pub(crate) struct StreamSlots {
    open: AtomicUsize,
    cap: usize,
}

/// One open stream's place; given back when the stream ends.
#[derive(Debug)]
pub(crate) struct StreamSlot(Arc<StreamSlots>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StreamSlots {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            cap: cap.max(1),
        }
    }

    /// A place for one more stream, or `None` when every place is taken.
    pub(crate) fn take(self: &Arc<Self>) -> Option<StreamSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.cap).then_some(open + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
    }
}

pub(crate) fn routes(rooms: Rooms) -> Router {
    Router::new()
        .route(
            "/waiting-rooms/{room}",
            get(get_room).put(put_room).delete(delete_room),
        )
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
