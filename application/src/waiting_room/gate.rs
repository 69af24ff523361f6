//! The order gate: an order for a gated product needs the buyer's admission.

use std::sync::atomic::Ordering;

use ordership_domain::ports::TokenError;
use ordership_domain::{AdmissionRef, Money, PlaceOrder, Sku};

use super::WaitingRoomService;

/// Why the order gate refused an order for a gated SKU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    /// No admission token, one not signed by us, another buyer's, or another room's.
    #[error("{0}")]
    Required(&'static str),
    #[error("the admission has expired")]
    Expired,
    /// Line `line` (from 0) is of a gated SKU at another price than its room sells it at.
    #[error("{} is sold at {} {} (minor units) in this sale", .sku.as_str(), .price.amount(), .price.currency())]
    Price { line: usize, sku: Sku, price: Money },
    /// No admission, and none can be had now: the queue is down. Retryable.
    #[error("the waiting room is unavailable")]
    Unavailable,
    /// The rooms could not be read; retryable.
    #[error("the waiting rooms cannot be read")]
    RoomsUnavailable,
}

impl GateRefusal {
    /// A short, stable name (metrics label).
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Required(_) => "required",
            Self::Expired => "expired",
            Self::Price { .. } => "price",
            Self::Unavailable | Self::RoomsUnavailable => "unavailable",
        }
    }
}

impl WaitingRoomService {
    /// The order gate: whether `command` may be placed, and with which admission. An order with
    /// no SKU of a gating room passes as is. One with gated SKUs needs an admission token of
    /// the same customer, of a room that gates every one of them (one sale per order); the
    /// admission asks for the units of those lines from the room's stock.
    ///
    /// # Errors
    /// [`GateRefusal`].
    pub async fn gate(
        &self,
        command: &PlaceOrder,
        token: Option<&str>,
    ) -> Result<Option<AdmissionRef>, GateRefusal> {
        let rooms = self
            .rooms()
            .await
            .map_err(|_| self.refused(GateRefusal::RoomsUnavailable))?;
        let now = self.0.clock.now();
        let mut gated: Vec<&Sku> = Vec::new();
        // At most 100 lines of at most 10,000 units: no overflow.
        let mut units = 0_u32;
        for (index, line) in command.lines().iter().enumerate() {
            let sku = line.sku();
            let mut gating = rooms
                .values()
                .filter(|room| room.gates(sku, now))
                .peekable();
            if gating.peek().is_none() {
                continue;
            }
            // The shop's price, not the buyer's: checked before any token, so a wrong price is
            // told as such.
            if let Some(room) = gating.find(|room| !room.sells_at(line.unit_price())) {
                let price = room.unit_price().unwrap_or_else(|| line.unit_price());
                return Err(self.refused(GateRefusal::Price {
                    line: index,
                    sku: sku.clone(),
                    price,
                }));
            }
            gated.push(sku);
            units = units.saturating_add(line.quantity().get());
        }
        if gated.is_empty() {
            return Ok(None);
        }
        let Some(token) = token else {
            return Err(self.refused(if self.queue_up() {
                GateRefusal::Required("this product is sold through a waiting room: join it first")
            } else {
                GateRefusal::Unavailable
            }));
        };
        let admission = match self.0.tokens.verify_admission(token, now) {
            Ok(admission) => admission,
            Err(TokenError::Expired) => return Err(self.refused(GateRefusal::Expired)),
            Err(TokenError::Invalid) => {
                return Err(self.refused(GateRefusal::Required("the admission token is not valid")));
            }
        };
        if &admission.buyer != command.customer_id() {
            return Err(self.refused(GateRefusal::Required(
                "the admission token was issued to another buyer",
            )));
        }
        let covers = rooms
            .get(&admission.room)
            .is_some_and(|room| gated.iter().all(|sku| room.gates(sku, now)));
        if !covers {
            return Err(self.refused(GateRefusal::Required(
                "the admission token is not for the waiting room of these products \
                 (order the products of different flash sales separately)",
            )));
        }
        Ok(Some(AdmissionRef {
            room: admission.room,
            id: admission.id,
            units,
        }))
    }

    fn refused(&self, refusal: GateRefusal) -> GateRefusal {
        let c = &self.0.counters;
        match refusal {
            GateRefusal::Required(_) => &c.refused_required,
            GateRefusal::Expired => &c.refused_expired,
            GateRefusal::Price { .. } => &c.refused_price,
            GateRefusal::Unavailable | GateRefusal::RoomsUnavailable => &c.refused_unavailable,
        }
        .fetch_add(1, Ordering::Relaxed);
        refusal
    }
}
