//! The people around the system: HTTP clients placing orders with an `Idempotency-Key` (asking
//! again with the same key when an answer does not come or is an error, double-clicking), and
//! operators cancelling orders at random moments. What each request was answered is kept for the
//! oracle: every answer to one key must be the same.

use ordership_application::IdempotentRequest;
use ordership_application::orders::{
    OrderAccess, OrderService, OrderView, Outcome, PlaceOrderError,
};
use ordership_domain::ports::StoredResponse;
use ordership_domain::{CustomerId, OrderId, PlaceOrder, ShippingAddress, parse_order_line};

/// Countries orders go to: served ones (scheduled, up to the daily capacity) and one that is not
/// (rejected: the saga compensates).
const COUNTRIES: [&str; 4] = ["KR", "JP", "DE", "BR"];

/// One client's order: its key, and every answer it got.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: String,
    pub customer: String,
    country: &'static str,
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
    /// `orders` clients, each with an order to place, countries chosen by `pick`.
    #[must_use]
    pub fn new(orders: usize, mut pick: impl FnMut(u64) -> u64) -> Self {
        let requests = (0..orders)
            .map(|n| Request {
                key: format!("key-{n}"),
                customer: format!("c-{n}"),
                country: COUNTRIES
                    [usize::try_from(pick(COUNTRIES.len() as u64)).unwrap_or_default()],
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
    let outcome = service
        .place_order(command, None, Some(&key), &render)
        .await;
    let request = &mut clients.requests[n];
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

fn command(request: &Request) -> Result<PlaceOrder, String> {
    let line = parse_order_line(0, "ABC-123", 1, 1250, "KRW").map_err(|e| e.to_string())?;
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
