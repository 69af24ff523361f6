//! Fair use at the edge: per-customer quotas on placing orders and on joining waiting rooms
//! (429 with `Retry-After` and the `RateLimit-Policy` / `RateLimit` fields of the IETF draft
//! "RateLimit header fields for HTTP", draft-ietf-httpapi-ratelimit-headers), and load shedding
//! of new orders (503 with `Retry-After`) while the service is behind. Each is off unless
//! configured.
//!
//! A quota's store that fails lets the request through (logged and counted): a limiter exists to
//! keep one customer from crowding out the rest, not to stop everyone when Redis blinks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ordership_application::LoadShedder;
use ordership_domain::ports::RateLimiter;
use ordership_domain::rate_limit::{RateDecision, RateLimitPolicy};

use crate::metrics::{Family, MetricSource};
use crate::problem::ApiError;

/// `RateLimit-Policy`: the quota and its window.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of the quota and when it is whole again.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The quotas and the shedder the API applies.
#[derive(Clone, Default)]
pub struct FairUse {
    limiter: Option<Arc<dyn RateLimiter>>,
    orders: Option<RateLimitPolicy>,
    joins: Option<RateLimitPolicy>,
    joins_per_address: Option<RateLimitPolicy>,
    trust_forwarded_for: bool,
    shedder: Option<Arc<LoadShedder>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    orders_limited: AtomicU64,
    joins_limited: AtomicU64,
    address_joins_limited: AtomicU64,
    limiter_failures: AtomicU64,
}

/// Which quota a request draws from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Quota {
    /// `POST /orders`, per customer.
    Orders,
    /// `POST /waiting-rooms/{room}/entries`, per customer.
    Joins,
    /// `POST /waiting-rooms/{room}/entries`, per source address.
    AddressJoins,
}

/// The address a request came from: the connection's peer, which the server adds to every
/// request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl std::fmt::Debug for FairUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairUse")
            .field("orders", &self.orders)
            .field("joins", &self.joins)
            .field("shedding", &self.shedder.is_some())
            .finish_non_exhaustive()
    }
}

/// The two fields of an answer under a quota.
pub(crate) type QuotaFields = [(HeaderName, HeaderValue); 2];

/// Whole seconds, rounded up: a client that waits this long is not refused for being early.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn fields(policy: &RateLimitPolicy, decision: &RateDecision) -> QuotaFields {
    let name = policy.name();
    let value = |text: String| {
        // Names are [a-z0-9-] and the rest digits: always a valid field value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    [
        (
            RATE_LIMIT_POLICY,
            value(format!(
                "\"{name}\";q={};w={}",
                policy.quota(),
                seconds_up(policy.window())
            )),
        ),
        (
            RATE_LIMIT,
            value(format!(
                "\"{name}\";r={};t={}",
                decision.remaining,
                seconds_up(decision.reset)
            )),
        ),
    ]
}

impl FairUse {
    /// Quotas kept in `limiter`; none applies until set with [`FairUse::limit_orders`] or
    /// [`FairUse::limit_joins`].
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Each customer may place at most this many orders per window.
    #[must_use]
    pub fn limit_orders(mut self, policy: RateLimitPolicy) -> Self {
        self.orders = Some(policy);
        self
    }

    /// Each customer may join waiting rooms at most this many times per window.
    #[must_use]
    pub fn limit_joins(mut self, policy: RateLimitPolicy) -> Self {
        self.joins = Some(policy);
        self
    }

    /// Each source address may join waiting rooms at most this many times per window, whichever
    /// customers it joins as (one script with many accounts).
    #[must_use]
    pub fn limit_joins_per_address(mut self, policy: RateLimitPolicy) -> Self {
        self.joins_per_address = Some(policy);
        self
    }

    /// The source address is the last one of `X-Forwarded-For` (the one the proxy in front of
    /// the service added), not the connection's peer. Only behind a proxy that sets it: a client
    /// that talks to the service directly could name any address.
    #[must_use]
    pub fn trust_forwarded_for(mut self) -> Self {
        self.trust_forwarded_for = true;
        self
    }

    /// Where a request came from, as configured: `None` when it cannot be told.
    pub(crate) fn client_address(
        &self,
        headers: &HeaderMap,
        peer: Option<ClientAddr>,
    ) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            return headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|last| last.trim().parse().ok());
        }
        peer.map(|ClientAddr(addr)| addr.ip())
    }

    /// New orders are refused while `shedder` says so.
    #[must_use]
    pub fn shed_with(mut self, shedder: Arc<LoadShedder>) -> Self {
        self.shedder = Some(shedder);
        self
    }

    /// Whether anything is configured.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.shedder.is_some()
            || (self.limiter.is_some()
                && (self.orders.is_some()
                    || self.joins.is_some()
                    || self.joins_per_address.is_some()))
    }

    /// A new order while the service sheds load: refused.
    pub(crate) fn admit_new_order(&self) -> Result<(), ApiError> {
        match self.shedder.as_ref().and_then(|s| s.refuse()) {
            Some(reason) => Err(ApiError::Overloaded(reason.as_str())),
            None => Ok(()),
        }
    }

    /// Takes one of `caller`'s tokens of `quota` (a customer, or a source address): the fields
    /// to answer with, or 429.
    pub(crate) async fn take(
        &self,
        quota: Quota,
        caller: &str,
    ) -> Result<Option<QuotaFields>, ApiError> {
        let (policy, limited) = match quota {
            Quota::Orders => (&self.orders, &self.counts.orders_limited),
            Quota::Joins => (&self.joins, &self.counts.joins_limited),
            Quota::AddressJoins => (&self.joins_per_address, &self.counts.address_joins_limited),
        };
        let (Some(limiter), Some(policy)) = (&self.limiter, policy) else {
            return Ok(None);
        };
        match limiter.take(policy, caller).await {
            Ok(decision) if decision.allowed => Ok(Some(fields(policy, &decision))),
            Ok(decision) => {
                limited.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::RateLimited {
                    retry_after: seconds_up(decision.retry_after.unwrap_or(Duration::ZERO)).max(1),
                    fields: Box::new(fields(policy, &decision)),
                })
            }
            Err(e) => {
                self.counts.limiter_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, policy = policy.name(), "rate limiter unavailable: the request goes through");
                Ok(None)
            }
        }
    }
}

/// Adds a quota's fields to an answer.
pub(crate) fn with_fields(headers: &mut HeaderMap, fields: Option<QuotaFields>) {
    for (name, value) in fields.into_iter().flatten() {
        headers.insert(name, value);
    }
}

#[async_trait]
impl MetricSource for FairUse {
    async fn collect(&self) -> Vec<Family> {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
        let mut families = vec![
            Family::counter(
                "ordership_http_rate_limited_total",
                "Requests refused with 429 because a quota (a customer's, or a source address's) was used up, by quota.",
                vec![
                    (
                        vec![("quota", "orders".to_owned())],
                        load(&self.counts.orders_limited),
                    ),
                    (
                        vec![("quota", "joins".to_owned())],
                        load(&self.counts.joins_limited),
                    ),
                    (
                        vec![("quota", "joins_per_address".to_owned())],
                        load(&self.counts.address_joins_limited),
                    ),
                ],
            ),
            Family::counter(
                "ordership_rate_limiter_failures_total",
                "Requests let through because the quotas' store could not be reached.",
                vec![(Vec::new(), load(&self.counts.limiter_failures))],
            ),
        ];
        if let Some(shedder) = &self.shedder {
            let shedding = shedder.shedding();
            families.push(Family::gauge(
                "ordership_load_shedding",
                "1 while new orders are refused (503) because the service is behind, by reason.",
                ["outbox_backlog", "consumer_lag"]
                    .into_iter()
                    .map(|reason| {
                        let on = shedding.is_some_and(|s| s.as_str() == reason);
                        (vec![("reason", reason.to_owned())], f64::from(u8::from(on)))
                    })
                    .collect(),
            ));
            families.push(Family::counter(
                "ordership_orders_shed_total",
                "New orders refused with 503 while the service was shedding load.",
                vec![(Vec::new(), shedder.refused() as f64)],
            ));
        }
        families
    }
}
