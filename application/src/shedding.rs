//! Load shedding: when the order service falls behind — its outbox backlog or its consumer lag
//! past a configured threshold — new orders are refused (the HTTP API answers 503 with
//! `Retry-After`) until it has caught up, while reads and the sagas already running go on. A
//! refused order costs the client a retry; an accepted one the system cannot carry costs every
//! order's latency.
//!
//! Pressure is sampled, not computed per request: [`LoadShedder::observe`] is fed by a
//! background pass ([`sample`]), and a request reads one atomic.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use ordership_domain::ports::{OrderTransaction, StoreError, UnitOfWork};

/// When to shed. A threshold left unset is never the reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShedThresholds {
    /// Messages waiting in the order service's outbox.
    pub outbox_backlog: Option<u64>,
    /// Messages its consumers have not read yet (every partition, summed).
    pub consumer_lag: Option<u64>,
}

impl ShedThresholds {
    /// Whether any threshold is set.
    #[must_use]
    pub const fn any(&self) -> bool {
        self.outbox_backlog.is_some() || self.consumer_lag.is_some()
    }
}

/// The figures shedding is decided on, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub outbox_backlog: u64,
    /// `None` where the transport has no such figure (the in-process bus).
    pub consumer_lag: Option<u64>,
}

/// Why new orders are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    OutboxBacklog,
    ConsumerLag,
}

impl ShedReason {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OutboxBacklog => "outbox_backlog",
            Self::ConsumerLag => "consumer_lag",
        }
    }
}

const CALM: u8 = 0;
const BACKLOG: u8 = 1;
const LAG: u8 = 2;

/// Whether new orders are refused now, and how many were.
#[derive(Debug, Default)]
pub struct LoadShedder {
    thresholds: ShedThresholds,
    state: AtomicU8,
    refused: AtomicU64,
}

impl LoadShedder {
    #[must_use]
    pub fn new(thresholds: ShedThresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// Decides from a new reading. Shedding starts above a threshold and stops at or below 80 %
    /// of it, so a figure hovering at the threshold does not flip the service every sample. A
    /// change is logged.
    pub fn observe(&self, pressure: Pressure) {
        let was = self.state.load(Ordering::Relaxed);
        let over = |figure: Option<u64>, threshold: Option<u64>, reason: u8| {
            let (Some(figure), Some(threshold)) = (figure, threshold) else {
                return false;
            };
            if was == reason {
                figure.saturating_mul(5) > threshold.saturating_mul(4)
            } else {
                figure > threshold
            }
        };
        let now = if over(
            Some(pressure.outbox_backlog),
            self.thresholds.outbox_backlog,
            BACKLOG,
        ) {
            BACKLOG
        } else if over(pressure.consumer_lag, self.thresholds.consumer_lag, LAG) {
            LAG
        } else {
            CALM
        };
        if now == was {
            return;
        }
        self.state.store(now, Ordering::Relaxed);
        match Self::reason_of(now) {
            Some(reason) => tracing::warn!(
                reason = reason.as_str(),
                outbox_backlog = pressure.outbox_backlog,
                consumer_lag = pressure.consumer_lag,
                thresholds = ?self.thresholds,
                "shedding load: new orders are refused (503) until the service catches up"
            ),
            None => tracing::info!(
                outbox_backlog = pressure.outbox_backlog,
                consumer_lag = pressure.consumer_lag,
                "caught up: new orders are accepted again"
            ),
        }
    }

    const fn reason_of(state: u8) -> Option<ShedReason> {
        match state {
            BACKLOG => Some(ShedReason::OutboxBacklog),
            LAG => Some(ShedReason::ConsumerLag),
            _ => None,
        }
    }

    /// Why new orders are refused now, if they are.
    #[must_use]
    pub fn shedding(&self) -> Option<ShedReason> {
        Self::reason_of(self.state.load(Ordering::Relaxed))
    }

    /// For a new order: the reason to refuse it (counted), or `None` to accept it.
    #[must_use]
    pub fn refuse(&self) -> Option<ShedReason> {
        let reason = self.shedding();
        if reason.is_some() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        reason
    }

    /// New orders refused so far.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One sample: the order service's outbox backlog from its store, and the consumer lag `lag`
/// reports, fed to `shedder`.
///
/// # Errors
/// The store's failure (the shedder keeps its last decision).
pub async fn sample(
    shedder: &LoadShedder,
    store: &dyn UnitOfWork<dyn OrderTransaction>,
    lag: impl FnOnce() -> Option<u64>,
) -> Result<(), StoreError> {
    let stats = crate::monitoring::outbox_stats(store).await?;
    shedder.observe(Pressure {
        outbox_backlog: stats.pending,
        consumer_lag: lag(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(n: u64) -> Pressure {
        Pressure {
            outbox_backlog: n,
            consumer_lag: None,
        }
    }

    #[test]
    fn sheds_above_a_threshold_and_stops_at_eighty_percent_of_it() {
        let shedder = LoadShedder::new(ShedThresholds {
            outbox_backlog: Some(100),
            consumer_lag: Some(1_000),
        });
        shedder.observe(backlog(100));
        assert_eq!(shedder.refuse(), None, "at the threshold: not above it");
        shedder.observe(backlog(101));
        assert_eq!(shedder.refuse(), Some(ShedReason::OutboxBacklog));
        shedder.observe(backlog(81));
        assert_eq!(shedder.shedding(), Some(ShedReason::OutboxBacklog));
        shedder.observe(backlog(80));
        assert_eq!(shedder.shedding(), None);
        shedder.observe(Pressure {
            outbox_backlog: 0,
            consumer_lag: Some(1_001),
        });
        assert_eq!(shedder.refuse(), Some(ShedReason::ConsumerLag));
        assert_eq!(shedder.refused(), 2);
    }

    #[test]
    fn without_thresholds_nothing_is_shed() {
        let shedder = LoadShedder::new(ShedThresholds::default());
        shedder.observe(Pressure {
            outbox_backlog: u64::MAX,
            consumer_lag: Some(u64::MAX),
        });
        assert_eq!(shedder.refuse(), None);
    }
}
