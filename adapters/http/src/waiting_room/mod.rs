//! The waiting rooms' endpoints: a buyer joins, watches their place (polling or Server-Sent
//! Events), leaves; anyone reads a room's figures; an operator configures rooms. A browser that
//! asks for HTML at a room's URL gets the waiting page.

mod tokens;

pub use tokens::SignedTokens;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use futures::Stream;
use ordership_application::{Entry, RoomView, Shutdown, WaitingRoomError, WaitingRoomService};
use ordership_domain::waiting_room::{Phase, Rate, RoomId, RoomState, WaitingRoom, millis};
use ordership_domain::{CustomerId, Sku, ValidationError, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::dto::optional_integer;
use crate::extract::JsonBody;
use crate::problem::{ApiError, FieldError, Problem};

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

/// Where a buyer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EntryResponse {
    pub room: String,
    /// `waiting`, `admitted`, or `expired` (admitted, but not used in time).
    #[schema(example = "waiting")]
    pub status: String,
    /// The buyer's place in joining order.
    pub ticket: u64,
    /// Waiting: 1 is next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// Waiting: how many wait in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    /// Waiting: expected wait at the room's rate, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_ms: Option<u64>,
    /// Waiting: when to ask again, in milliseconds (also `Retry-After`, in seconds). Asking is
    /// the heartbeat: a buyer silent for the room's heartbeat timeout is dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_after_ms: Option<u64>,
    /// Waiting, in the answer to joining: send it back in the `Queue-Token` header when joining
    /// again, to be put back at this ticket if the queue lost you.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_token: Option<String>,
    /// Admitted: send it in the `Admission-Token` header of `POST /orders`; it buys one order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// Admitted: until when the admission token may be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl EntryResponse {
    fn new(room: &RoomId, entry: &Entry) -> Self {
        let mut response = Self {
            room: room.as_str().to_owned(),
            status: String::new(),
            ticket: 0,
            position: None,
            waiting: None,
            estimated_wait_ms: None,
            poll_after_ms: None,
            queue_token: None,
            admission_token: None,
            expires_at: None,
        };
        match entry {
            Entry::Waiting {
                ticket,
                position,
                waiting,
                estimated_wait,
                poll_after,
                queue_token,
            } => {
                response.status = "waiting".into();
                response.ticket = ticket.0;
                response.position = Some(*position);
                response.waiting = Some(*waiting);
                response.estimated_wait_ms = Some(millis(*estimated_wait));
                response.poll_after_ms = Some(millis(*poll_after));
                response.queue_token.clone_from(queue_token);
            }
            Entry::Admitted {
                ticket,
                admission,
                token,
            } => {
                response.status = "admitted".into();
                response.ticket = ticket.0;
                response.admission_token = Some(token.clone());
                response.expires_at = Some(admission.expires_at);
            }
            Entry::Expired { ticket } => {
                response.status = "expired".into();
                response.ticket = ticket.0;
            }
        }
        response
    }
}

/// 202 with `Retry-After` while waiting, 200 otherwise.
fn entry_response(room: &RoomId, entry: &Entry) -> Response {
    let body = EntryResponse::new(room, entry);
    match entry {
        Entry::Waiting { poll_after, .. } => {
            let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
            let seconds = poll_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Entry::Admitted { .. } | Entry::Expired { .. } => axum::Json(body).into_response(),
    }
}

/// Join a flash sale's waiting room (or see where you stand in it).
///
/// One entry per buyer (the token's subject) and room: joining again changes nothing. A buyer
/// who need not wait — the room is open, nobody waits, the current window has admissions left —
/// is admitted at once (200, with an admission token); otherwise the answer is 202 with the
/// position, an estimated wait, when to ask again and a queue token.
#[utoipa::path(
    post, path = "/waiting-rooms/{room}/entries", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$"),
        ("Queue-Token" = Option<String>, Header, description = "The queue token of an earlier answer: a buyer the queue lost is put back at that ticket (a token that is not this buyer's for this room is ignored)")),
    responses(
        (status = 200, description = "Admitted (or admitted before)", body = EntryResponse),
        (status = 202, description = "Waiting", body = EntryResponse,
            headers(("Retry-After" = String, description = "Seconds until the next status call"))),
        (status = 400, description = "Malformed room id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such waiting room", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The room is closed, or the buyer has ordered in this sale already", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue or storage is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn join(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let buyer = caller.customer()?;
    let queue_token = headers.get(QUEUE_TOKEN).and_then(|v| v.to_str().ok());
    let entry = rooms.rooms.join(&room, &buyer, queue_token).await?;
    Ok(entry_response(&room, &entry))
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
        (status = 400, description = "Malformed room id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or not in it (never joined, left, or dropped after the heartbeat timeout)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue or storage is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
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
        (status = 400, description = "Malformed room id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or not in it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue or storage is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
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

/// How often an open event stream asks the queue (each ask is the buyer's heartbeat).
const STREAM_POLL: Duration = Duration::from_secs(1);

/// The event stream's schema in the OpenAPI document: one event (`event`, and JSON `data` of an
/// entry or a problem), as tools read Server-Sent Events schemas. utoipa writes no
/// `contentSchema`, so it is set in the document's JSON.
pub(crate) fn document_event_stream(doc: &mut serde_json::Value) {
    let path = "/waiting-rooms/{room}/entries/me/events";
    let Some(content) = doc
        .pointer_mut(&format!(
            "/paths/{}/get/responses/200/content/text~1event-stream",
            path.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    content.insert(
        "schema".to_owned(),
        serde_json::json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {
                    "type": "string",
                    "enum": ["position", "admitted", "expired", "left", "unavailable", "error"]
                },
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "oneOf": [
                            { "$ref": "#/components/schemas/EntryResponse" },
                            { "$ref": "#/components/schemas/Problem" }
                        ]
                    }
                }
            }
        }),
    );
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
/// Events: `position` (the entry, when it changes), then one of `admitted` (the entry with its
/// admission token), `expired`, `left` (not in the room any more); `unavailable` while the queue
/// cannot be reached. Comments keep the connection alive. An open stream is the buyer's
/// heartbeat. Read it with `fetch` and the `Authorization` header (no cookies are used).
#[utoipa::path(
    get, path = "/waiting-rooms/{room}/entries/me/events", tag = "waiting rooms",
    security(("bearer" = ["orders"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed room id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or not in it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The queue or storage is unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn my_events(
    caller: Caller,
    State(rooms): State<Rooms>,
    RoomPath(room): RoomPath,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let buyer = caller.customer()?;
    // Errors before the stream starts are plain problem answers.
    let first = rooms.rooms.status(&room, &buyer).await?;
    let stream = entry_events(rooms, room, buyer, first);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

struct StreamState {
    rooms: Rooms,
    room: RoomId,
    buyer: CustomerId,
    next: Option<Result<Entry, WaitingRoomError>>,
    last: Option<EntryResponse>,
    done: bool,
}

fn entry_events(
    rooms: Rooms,
    room: RoomId,
    buyer: CustomerId,
    first: Entry,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = StreamState {
        rooms,
        room,
        buyer,
        next: Some(Ok(first)),
        last: None,
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
                    let mut shutdown = s.rooms.shutdown.clone();
                    let stopping = match &mut shutdown {
                        Some(shutdown) => shutdown.pause(STREAM_POLL).await,
                        None => {
                            tokio::time::sleep(STREAM_POLL).await;
                            false
                        }
                    };
                    if stopping {
                        return None;
                    }
                    s.rooms.rooms.status(&s.room, &s.buyer).await
                }
            };
            // Positions are sent when they change.
            if let Ok(entry @ Entry::Waiting { .. }) = &result {
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

/// A SKU: 1–64 letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$", example = "FLASH-1")]
pub struct SkuName(String);

/// The state an operator sets: gating in all but `closed`; admitting only while `open` (and
/// within its times).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    Scheduled,
    Open,
    Paused,
    Closed,
}

impl From<StateName> for RoomState {
    fn from(state: StateName) -> Self {
        match state {
            StateName::Scheduled => Self::Scheduled,
            StateName::Open => Self::Open,
            StateName::Paused => Self::Paused,
            StateName::Closed => Self::Closed,
        }
    }
}

/// A waiting room's configuration, as an operator sends it. Every constraint on a field is in
/// this schema (a body it refuses is a 400); `closes_at` after `opens_at` is a rule of the room
/// as a whole (422).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomRequest {
    /// The SKUs the room gates: ordering them needs an admission.
    #[schema(min_items = 1, max_items = 100)]
    pub skus: Vec<SkuName>,
    /// Admissions per interval (default 10).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub admissions: Option<i64>,
    /// The interval, in milliseconds (default 5000); windows are aligned on the queue's clock.
    #[schema(minimum = 100, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub interval_ms: Option<i64>,
    /// How long an admission may be used, in milliseconds (default 300000).
    #[schema(minimum = 1000, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub admission_validity_ms: Option<i64>,
    /// How long a waiting buyer may be silent before being dropped, in milliseconds (default
    /// 30000).
    #[schema(minimum = 1000, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub heartbeat_timeout_ms: Option<i64>,
    pub state: StateName,
    /// Admits from then on (a scheduled or open room).
    pub opens_at: Option<DateTime<Utc>>,
    /// Closed from then on: its SKUs are sold without a queue.
    pub closes_at: Option<DateTime<Utc>>,
}

/// The request's name of a field the domain names otherwise.
fn request_field(e: ValidationError) -> FieldError {
    let field = match e.field.as_str() {
        "interval" => "interval_ms",
        "admission_validity" => "admission_validity_ms",
        "heartbeat_timeout" => "heartbeat_timeout_ms",
        other => other,
    };
    FieldError::new(field, e.message)
}

impl RoomRequest {
    fn into_room(self, id: RoomId) -> Result<WaitingRoom, ApiError> {
        let mut errors = Vec::new();
        if !(1..=100).contains(&self.skus.len()) {
            errors.push(FieldError::new("skus", "must name 1 to 100 SKUs"));
        }
        let mut skus = BTreeSet::new();
        for (i, sku) in self.skus.iter().enumerate() {
            match Sku::parse(&sku.0) {
                Ok(sku) => {
                    skus.insert(sku);
                }
                Err(e) => errors.push(FieldError::new(format!("skus[{i}]"), e.message)),
            }
        }
        // Out of range for the type is out of range for the field: 0 fails its check below.
        let ms = |v: Option<i64>, default: Duration| {
            v.map_or(default, |ms| {
                Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            })
        };
        let defaults = Rate::default();
        let admissions = self
            .admissions
            .map_or(defaults.admissions(), |n| u32::try_from(n).unwrap_or(0));
        let rate = Rate::new(admissions, ms(self.interval_ms, defaults.interval()))
            .map_err(|e| errors.extend(e.0.into_iter().map(request_field)))
            .ok();
        // Built with the default rate when the rate is wrong, so every other error is named too.
        let room = WaitingRoom::new(
            id,
            skus,
            rate.unwrap_or_default(),
            ms(
                self.admission_validity_ms,
                WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
            ),
            ms(
                self.heartbeat_timeout_ms,
                WaitingRoom::DEFAULT_HEARTBEAT_TIMEOUT,
            ),
            self.state.into(),
            self.opens_at,
            self.closes_at,
        );
        let mut business = Vec::new();
        if let Err(e) = &room {
            for error in &e.0 {
                match error.field.as_str() {
                    // A rule of the room as a whole, which no schema can state.
                    "closes_at" => business.push(request_field(error.clone())),
                    "skus" => {} // named above
                    _ => errors.push(request_field(error.clone())),
                }
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        if !business.is_empty() {
            return Err(ApiError::BusinessRule(business));
        }
        room.map_err(ValidationErrors::into)
    }
}

/// The queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueFigures {
    pub waiting: u64,
    /// Admitted since the queue began.
    pub admitted: u64,
    /// Admitted in the current window.
    pub admitted_in_window: u32,
}

/// A waiting room: its configuration, what it does now, and its queue's figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomResponse {
    pub id: String,
    pub skus: Vec<String>,
    pub admissions: u32,
    pub interval_ms: u64,
    pub admission_validity_ms: u64,
    pub heartbeat_timeout_ms: u64,
    /// As set by an operator.
    pub state: String,
    /// What it does now (the state with its times applied): `scheduled`, `open`, `paused` or
    /// `closed`.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// Left out while the queue cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueFigures>,
}

const fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Scheduled => "scheduled",
        Phase::Open => "open",
        Phase::Paused => "paused",
        Phase::Closed => "closed",
    }
}

impl From<&RoomView> for RoomResponse {
    fn from(view: &RoomView) -> Self {
        let room = &view.room;
        Self {
            id: room.id().as_str().to_owned(),
            skus: room.skus().iter().map(|s| s.as_str().to_owned()).collect(),
            admissions: room.rate().admissions(),
            interval_ms: millis(room.rate().interval()),
            admission_validity_ms: millis(room.admission_validity()),
            heartbeat_timeout_ms: millis(room.heartbeat_timeout()),
            state: room.state().as_str().to_owned(),
            phase: phase_name(view.phase).to_owned(),
            opens_at: room.opens_at(),
            closes_at: room.closes_at(),
            queue: view.queue.map(|q| QueueFigures {
                waiting: q.waiting,
                admitted: q.admitted,
                admitted_in_window: q.admitted_in_window,
            }),
        }
    }
}

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
        (status = 400, description = "Malformed room id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such waiting room", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
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
/// or state of a room with buyers waiting keeps their places.
#[utoipa::path(
    put, path = "/waiting-rooms/{room}", tag = "waiting rooms",
    security(("bearer" = ["admin"])),
    params(("room" = String, Path, description = "Waiting room id", pattern = "^[a-z0-9-]{1,64}$")),
    request_body(content = RoomRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The room as configured now", body = RoomResponse),
        (status = 400, description = "Malformed, or a field the schema refuses", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`closes_at` is not after `opens_at`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
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
