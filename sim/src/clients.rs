//! The people around the system: HTTP clients placing orders with an `Idempotency-Key` (asking
//! again with the same key when an answer does not come or is an error, double-clicking), and
//! operators cancelling orders at random moments. What each request was answered is kept for the
//! oracle: every answer to one key must be the same.

use ordership_application::IdempotentRequest;
use ordership_application::orders::{
    OrderAccess, OrderService, OrderView, Outcome, PlaceOrderError,
};
use ordership_application::waiting_room::{
    Entry, GateRefusal, WaitingRoomError, WaitingRoomService,
};
use ordership_domain::ports::StoredResponse;
use ordership_domain::{CustomerId, OrderId, PlaceOrder, ShippingAddress, parse_order_line};

/// Countries orders go to: served ones (scheduled, up to the daily capacity) and one that is not
/// (rejected: the saga compensates).
const COUNTRIES: [&str; 4] = ["KR", "JP", "DE", "BR"];

/// A buyer of the flash sale's SKU: where it stands in the waiting room.
#[derive(Debug, Clone, Default)]
pub struct Buyer {
    /// In the room (joined, not dropped or left since).
    pub joined: bool,
    /// The queue token of the last join: it puts the buyer back at its ticket.
    pub pass: Option<String>,
    /// The admission token, once admitted (until used up or expired).
    pub admission: Option<String>,
    /// The sale was sold out at the buyer's last look.
    pub sold_out: bool,
}

/// One client's order: its key, and every answer it got.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: String,
    pub customer: String,
    country: &'static str,
    /// A buyer of the flash sale: it orders once admitted.
    pub buyer: Option<Buyer>,
    /// The bodies of the answers (the first request's response, stored or replayed).
    pub answers: Vec<Vec<u8>>,
    /// Refusals that are not worth asking again (a bug if any).
    pub refusals: Vec<String>,
    pub order: Option<OrderId>,
}

/// The clients' requests and what is left to do.
#[derive(Debug, Default)]
pub struct Clients {
    pub requests: Vec<Request>,
    /// Requests not sent yet: the next is `sent`.
    sent: usize,
    /// Requests to send again (no answer, an error, a double click).
    pub again: Vec<usize>,
}

/// How a client's answer is rendered: the order's id and status at placing, as the HTTP
/// adapter's 201 would carry them.
fn render(view: &OrderView) -> StoredResponse {
    StoredResponse {
        status: 201,
        body: format!("{} {}", view.order.id(), view.order.status()).into_bytes(),
    }
}

impl Clients {
    /// `orders` clients, each with an order to place, countries chosen by `pick`; with the
    /// `sale`, a third of them (drawn too) buy the flash sale's SKU.
    #[must_use]
    pub fn new(orders: usize, sale: bool, mut pick: impl FnMut(u64) -> u64) -> Self {
        let requests = (0..orders)
            .map(|n| Request {
                key: format!("key-{n}"),
                customer: format!("c-{n}"),
                country: COUNTRIES
                    [usize::try_from(pick(COUNTRIES.len() as u64)).unwrap_or_default()],
                buyer: (sale && pick(3) == 0).then(Buyer::default),
                answers: Vec::new(),
                refusals: Vec::new(),
                order: None,
            })
            .collect();
        Self {
            requests,
            ..Self::default()
        }
    }

    /// The next request sent for the first time, if any is left.
    pub fn take_new(&mut self) -> Option<usize> {
        (self.sent < self.requests.len()).then(|| {
            self.sent += 1;
            self.sent - 1
        })
    }

    #[must_use]
    pub fn all_sent(&self) -> bool {
        self.sent == self.requests.len() && self.again.is_empty()
    }

    /// Whether a request is left that was never sent.
    #[must_use]
    pub fn has_new(&self) -> bool {
        self.sent < self.requests.len()
    }

    /// Requests answered at least once (a client may click again).
    #[must_use]
    pub fn answered(&self) -> Vec<usize> {
        (0..self.requests.len())
            .filter(|&n| !self.requests[n].answers.is_empty())
            .collect()
    }

    /// Orders the clients know were placed.
    #[must_use]
    pub fn placed(&self) -> Vec<OrderId> {
        self.requests.iter().filter_map(|r| r.order).collect()
    }

    /// Buyers sent on their way who have no answer to an order yet (those waiting for a
    /// re-send of their order are in [`Self::again`]).
    #[must_use]
    pub fn buying(&self) -> Vec<usize> {
        (0..self.sent)
            .filter(|&n| {
                let request = &self.requests[n];
                request.buyer.is_some() && request.answers.is_empty() && !self.again.contains(&n)
            })
            .collect()
    }
}

/// Sends request `n`: what the client then knows, as a line for the trace.
pub async fn place(clients: &mut Clients, n: usize, service: &OrderService) -> String {
    let request = &clients.requests[n];
    let command = match command(request) {
        Ok(command) => command,
        Err(e) => return format!("invalid order {n}: {e}"),
    };
    let key = IdempotentRequest {
        scope: "POST /orders".to_owned(),
        key: request.key.clone(),
        fingerprint: format!("order {n}"),
    };
    let admission = request.buyer.as_ref().and_then(|b| b.admission.clone());
    let outcome = service
        .place_order(command, admission.as_deref(), Some(&key), &render)
        .await;
    let request = &mut clients.requests[n];
    if let (Some(buyer), Err(e)) = (request.buyer.as_mut(), &outcome)
        && let Some(line) = sale_refusal(buyer, e)
    {
        return format!("{} {line}", request.key);
    }
    match outcome {
        Ok(Outcome::Done(view)) => {
            request.order = Some(view.order.id());
            request.answers.push(render(&view).body);
            format!("{} placed {}", request.key, view.order.id())
        }
        Ok(Outcome::Replayed(stored)) => {
            request.answers.push(stored.body);
            format!("{} replayed", request.key)
        }
        Err(e @ (PlaceOrderError::Conflict | PlaceOrderError::Unavailable(_))) => {
            clients.again.push(n);
            format!("{} answered {e}: asks again later", clients.requests[n].key)
        }
        Err(e) => {
            request.refusals.push(e.to_string());
            format!("{} refused: {e}", request.key)
        }
    }
}

/// What a buyer makes of an order refused by the sale (`None`: not the sale's refusal).
fn sale_refusal(buyer: &mut Buyer, e: &PlaceOrderError) -> Option<String> {
    match e {
        PlaceOrderError::SoldOut { .. } => {
            buyer.admission = None;
            buyer.sold_out = true;
            Some("refused: sold out; waits for units to come back".to_owned())
        }
        PlaceOrderError::NotAdmitted(GateRefusal::Expired) => {
            buyer.admission = None;
            Some("refused: the admission expired; looks at the room again".to_owned())
        }
        PlaceOrderError::NotAdmitted(GateRefusal::Unavailable | GateRefusal::RoomsUnavailable) => {
            Some(format!("refused: {e}; tries again later"))
        }
        _ => None,
    }
}

fn command(request: &Request) -> Result<PlaceOrder, String> {
    let sku = if request.buyer.is_some() {
        crate::sale::SKU
    } else {
        "ABC-123"
    };
    let line = parse_order_line(0, sku, 1, 1250, "KRW").map_err(|e| e.to_string())?;
    let address = ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", request.country)
        .map_err(|e| e.to_string())?;
    let customer = CustomerId::parse(&request.customer).map_err(|e| e.to_string())?;
    PlaceOrder::new(customer, vec![line], address).map_err(|e| e.to_string())
}

/// An operator cancels `order`: the trace's line.
pub async fn cancel(service: &OrderService, order: OrderId) -> String {
    let render = |view: &OrderView| render(view);
    match service
        .cancel_order(order, &OrderAccess::All, None, &render)
        .await
    {
        Ok(_) => format!("operator cancelled {order}"),
        Err(e) => format!("operator could not cancel {order}: {e}"),
    }
}

/// One look of buyer `n` at the sale: join (again), or ask where it stands; what it then knows,
/// as a line for the trace. An admitted buyer orders instead (through [`place`]).
pub async fn look(clients: &mut Clients, n: usize, rooms: &WaitingRoomService) -> String {
    let request = &mut clients.requests[n];
    let key = request.key.clone();
    let (Some(buyer), Ok(customer), Some(room)) = (
        request.buyer.as_mut(),
        CustomerId::parse(&request.customer),
        crate::sale::room_id(),
    ) else {
        return format!("{key} is no buyer");
    };
    let answer = if buyer.joined {
        rooms.status(&room, &customer).await
    } else {
        rooms.join(&room, &customer, buyer.pass.as_deref()).await
    };
    match answer {
        Ok(entry) => {
            buyer.joined = true;
            buyer.sold_out = false;
            match entry {
                Entry::Waiting {
                    position,
                    queue_token,
                    ..
                } => {
                    buyer.pass = queue_token.or(buyer.pass.take());
                    format!("{key} waits at {position}")
                }
                Entry::Admitted { token, .. } => {
                    buyer.admission = Some(token);
                    format!("{key} is admitted")
                }
                Entry::Expired { .. } => {
                    buyer.admission = None;
                    match rooms.leave(&room, &customer).await {
                        Ok(()) | Err(WaitingRoomError::NotInRoom) => {
                            buyer.joined = false;
                            buyer.pass = None;
                            format!("{key}'s admission expired: leaves to join again")
                        }
                        Err(e) => format!("{key}'s admission expired, leaving failed: {e}"),
                    }
                }
                Entry::SoldOut { queue_token, .. } => {
                    buyer.pass = queue_token.or(buyer.pass.take());
                    buyer.sold_out = true;
                    format!("{key} sees the sale sold out")
                }
            }
        }
        Err(WaitingRoomError::NotInRoom) => {
            buyer.joined = false;
            format!("{key} is not in the room: joins again")
        }
        Err(
            e @ (WaitingRoomError::QueueUnavailable(_)
            | WaitingRoomError::StoreUnavailable(_)
            | WaitingRoomError::AlreadyOrdered),
        ) => format!("{key}: {e}; looks again later"),
        Err(e) => {
            request.refusals.push(e.to_string());
            format!("{key} refused by the room: {e}")
        }
    }
}
