//! A buyer's place as Server-Sent Events: the entry at once, then every change, until admitted,
//! expired or gone.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use ordership_application::{Entry, WaitingRoomError};
use ordership_domain::CustomerId;
use ordership_domain::waiting_room::RoomId;
use serde::Serialize;

use super::{RoomPath, Rooms, StreamSlot};
use crate::auth::Caller;
use crate::dto::EntryResponse;
use crate::problem::{ApiError, Problem};
use crate::responses::BadRoomId;

/// How often an open event stream asks the queue (each ask is the buyer's heartbeat): as often
/// as the entry says to ask again (a quarter of the expected wait, within the heartbeat
/// timeout), at least every [`SLOWEST`] and at most every [`FASTEST`]; and at once when the rooms
/// change as buyers see them (sold out, back on sale, paused). A deep queue of thousands of
/// streams asks a few times a second each second, not once per stream per second.
const FASTEST: Duration = Duration::from_secs(1);
const SLOWEST: Duration = Duration::from_secs(5);

/// When to ask the queue again after `result`.
fn pace(result: &Result<Entry, WaitingRoomError>) -> Duration {
    match result {
        Ok(Entry::Waiting { poll_after, .. } | Entry::SoldOut { poll_after, .. }) => {
            (*poll_after).clamp(FASTEST, SLOWEST)
        }
        _ => FASTEST,
    }
}

fn event(name: &str, body: &impl Serialize) -> Event {
    // These plain structs always serialize.
    Event::default()
        .event(name)
        .data(serde_json::to_string(body).unwrap_or_default())
}

/// What the event stream has to say next, and whether it is the last word.
fn event_of(room: &RoomId, result: &Result<Entry, WaitingRoomError>) -> (Event, bool) {
    let data = |name: &str, body: &EntryResponse| event(name, body);
    let problem = |name: &str, e: ApiError| event(name, &e.problem());
    match result {
        Ok(entry @ Entry::Waiting { .. }) => {
            (data("position", &EntryResponse::new(room, entry)), false)
        }
        Ok(entry @ Entry::Admitted { .. }) => {
            (data("admitted", &EntryResponse::new(room, entry)), true)
        }
        Ok(entry @ Entry::Expired { .. }) => {
            (data("expired", &EntryResponse::new(room, entry)), true)
        }
        // Not the last word: units that cancelled orders give back reopen the queue.
        Ok(entry @ Entry::SoldOut { .. }) => {
            (data("sold_out", &EntryResponse::new(room, entry)), false)
        }
        Err(WaitingRoomError::NotInRoom) => (
            problem("left", ApiError::from(WaitingRoomError::NotInRoom)),
            true,
        ),
        Err(WaitingRoomError::QueueUnavailable(_) | WaitingRoomError::StoreUnavailable(_)) => (
            problem("unavailable", ApiError::WaitingRoomUnavailable(None)),
            false,
        ),
        Err(
            e @ (WaitingRoomError::NotFound
            | WaitingRoomError::Closed
            | WaitingRoomError::AlreadyOrdered
            | WaitingRoomError::StockBelowSold
            | WaitingRoomError::Unexpected(_)),
        ) => {
            tracing::warn!(error = %e, "waiting-room event stream ended");
            (
                problem("error", ApiError::Internal(e.to_string().into())),
                true,
            )
        }
    }
}

/// Your place in a waiting room as Server-Sent Events, until you are admitted.
///
/// Events: `position` (the entry, when it changes), `sold_out` (every unit is held by an order;
/// positions follow again if units come back), then one of `admitted` (the entry with its
/// admission token), `expired`, `left` (not in the room any more); `unavailable` while the queue
/// cannot be reached. Comments keep the connection alive. An open stream is the buyer's
/// heartbeat. Read it with `fetch` and the `Authorization` header (no cookies are used).
#[utoipa::path(
    get, path = "/waiting-rooms/{room}/entries/me/events", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, response = BadRoomId),
        (status = 404, description = "No such room, or not in it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue is unavailable, or this instance keeps as many waiting-room streams open as it may (`waiting-room-streams-full`; poll `GET …/entries/me` meanwhile)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn my_events(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let buyer = caller.customer()?;
    let slot = rooms
        .streams
        .take()
        .ok_or(ApiError::WaitingRoomStreamsFull)?;
    // Errors before the stream starts are plain problem answers.
    let first = rooms.rooms.status(&room, &buyer).await?;
    let stream = entry_events(rooms, room, buyer, first, slot);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

struct StreamState {
    /// Held while the stream is open.
    _slot: StreamSlot,
    rooms: Rooms,
    room: RoomId,
    buyer: CustomerId,
    next: Option<Result<Entry, WaitingRoomError>>,
    last: Option<EntryResponse>,
    /// How long to wait before asking the queue again.
    pause: Duration,
    /// Changes of the rooms, as this instance reads them.
    changes: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

impl StreamState {
    /// Waits until it is time to ask the queue again; whether the service is stopping.
    async fn wait(&mut self) -> bool {
        let changed = async {
            if self.changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let paused = async {
            match &mut self.rooms.shutdown.clone() {
                Some(shutdown) => shutdown.pause(self.pause).await,
                None => {
                    tokio::time::sleep(self.pause).await;
                    false
                }
            }
        };
        tokio::select! {
            stopping = paused => stopping,
            () = changed => false,
        }
    }
}

fn entry_events(
    rooms: Rooms,
    room: RoomId,
    buyer: CustomerId,
    first: Entry,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = rooms.rooms.room_changes();
    let state = StreamState {
        _slot: slot,
        rooms,
        room,
        buyer,
        next: Some(Ok(first)),
        last: None,
        pause: FASTEST,
        changes,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let result = match s.next.take() {
                Some(result) => result,
                None => {
                    if s.wait().await {
                        return None;
                    }
                    s.rooms.rooms.status(&s.room, &s.buyer).await
                }
            };
            s.pause = pace(&result);
            // Positions, and "sold out", are sent when they change.
            if let Ok(entry @ (Entry::Waiting { .. } | Entry::SoldOut { .. })) = &result {
                let shown = EntryResponse::new(&s.room, entry);
                if s.last.as_ref() == Some(&shown) {
                    continue;
                }
                s.last = Some(shown);
            }
            let (event, last) = event_of(&s.room, &result);
            s.done = last;
            return Some((Ok(event), s));
        }
    })
}
