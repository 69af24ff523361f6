//! An order's states as Server-Sent Events: its state at once, then every step as it commits on
//! any instance, until its saga has ended. Each event's id is the state's sequence number, so
//! `Last-Event-ID` resumes without losing a step.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures::Stream;
use ordership_application::{Following, OrderUpdate};
use ordership_domain::OrderId;
use serde::Serialize;
use utoipa::ToSchema;

use super::Orders;
use crate::auth::Caller;
use crate::dto::SagaDto;
use crate::extract::IdPath;
use crate::problem::{ApiError, Problem};
use crate::responses::{NotUuid, Unavailable};

/// How long a stream waits for a change before it reads the order again anyway.
const RECHECK: Duration = Duration::from_secs(30);

/// One state of an order, as an event stream sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderUpdateEvent {
    pub order_id: uuid::Uuid,
    /// The state's sequence number (also the event's id): grows with every step of the order.
    pub seq: u64,
    /// When the order reached this state.
    pub at: DateTime<Utc>,
    /// `pending`, `confirmed`, `shipped`, `delivered` or `cancelled`.
    #[schema(example = "confirmed")]
    pub status: String,
    pub cancellation_reason: Option<String>,
    pub saga: Option<SagaDto>,
    /// The saga has ended (completed, compensated or failed): the last event of the stream.
    pub settled: bool,
}

impl From<&OrderUpdate> for OrderUpdateEvent {
    fn from(u: &OrderUpdate) -> Self {
        Self {
            order_id: *u.order_id.as_uuid(),
            seq: u.seq,
            at: u.at,
            status: u.status.as_str().to_owned(),
            cancellation_reason: u.cancellation.as_ref().map(ToString::to_string),
            saga: u.saga.as_ref().map(|s| SagaDto {
                state: s.state.as_str().to_owned(),
                attempts: s.attempts,
                failure_reason: s.failure_reason.clone(),
            }),
            settled: u.settled(),
        }
    }
}

/// Follow an order as Server-Sent Events.
///
/// Events: `order` (the order's state: status, saga state, cancellation reason), first the
/// state it is in, then each step as it commits — on any instance of the service — until the
/// saga has ended (`settled: true`, the last event); `error` (a problem document) if the order
/// cannot be read any more. Each event's `id` is the state's sequence number: reconnect with
/// `Last-Event-ID` to get every step after it. Comments keep the connection alive. A caller
/// follows a bounded number of orders at once (429 beyond it), an instance too (503).
#[utoipa::path(
    get, path = "/orders/{id}/events", tag = "orders",
    security(("bearer" = ["orders"]), ("bearer" = ["admin"])),
    params(("id" = uuid::Uuid, Path, description = "Order id", format = Uuid),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received (a decimal sequence number): resume after it. As event sources resend whatever id they last saw, an id this server never sent is ignored and the stream starts from the current state")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, response = NotUuid),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller follows as many orders as they may (`too-many-followed`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn order_events(
    caller: Caller,
    State(orders): State<Orders>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let access = caller.order_access()?;
    // An id this server never sent is ignored: the stream starts from the current state.
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let following = orders
        .updates
        .follow(OrderId::from_uuid(id), &access, caller.subject())?;
    // Errors before the stream starts are plain problem answers.
    let first = following.updates_after(last).await?;
    let stream = updates(following, first.into(), last);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

fn event_of(update: &OrderUpdate) -> Event {
    // A plain struct always serializes.
    Event::default()
        .event("order")
        .id(update.seq.to_string())
        .data(serde_json::to_string(&OrderUpdateEvent::from(update)).unwrap_or_default())
}

struct StreamState {
    following: Following,
    pending: VecDeque<OrderUpdate>,
    last: Option<u64>,
    settled: bool,
    done: bool,
}

fn updates(
    following: Following,
    pending: VecDeque<OrderUpdate>,
    last: Option<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = StreamState {
        following,
        pending,
        last,
        settled: false,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(update) = s.pending.pop_front() {
                s.last = Some(update.seq);
                s.settled = update.settled();
                return Some((Ok(event_of(&update)), s));
            }
            // Everything read is sent: the stream ends once the saga has.
            if s.done || s.settled {
                return None;
            }
            let deadline = tokio::time::Instant::now() + RECHECK;
            if !s.following.changed_before(deadline).await && s.following.stopping() {
                return None;
            }
            match s.following.updates_after(s.last).await {
                Ok(updates) => s.pending.extend(updates),
                Err(e) => {
                    s.done = true;
                    let problem = ApiError::from(e).problem();
                    let event = Event::default()
                        .event("error")
                        .data(serde_json::to_string(&problem).unwrap_or_default());
                    return Some((Ok(event), s));
                }
            }
        }
    })
}
