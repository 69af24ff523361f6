//! The ticker: admissions at each room's rate, by every instance at once.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ordership_domain::waiting_room::{Phase, RoomId, WaitingRoom};

use super::{WaitingRoomError, WaitingRoomService};
use crate::shutdown::Shutdown;

impl WaitingRoomService {
    /// One round of admissions: every admitting room's queue is ticked once. Any number of
    /// instances may do this at once; the queue keeps each room to its rate.
    ///
    /// # Errors
    /// The first failure; the other rooms are still ticked.
    pub async fn tick(&self) -> Result<usize, WaitingRoomError> {
        let rooms = self.rooms().await?;
        self.tick_rooms(&rooms, self.0.clock.now()).await
    }

    async fn tick_rooms(
        &self,
        rooms: &BTreeMap<RoomId, WaitingRoom>,
        now: DateTime<Utc>,
    ) -> Result<usize, WaitingRoomError> {
        let mut admitted = 0;
        let mut first_error = None;
        for (room, rules) in rooms
            .values()
            .map(|room| (room, self.rules(room, now)))
            .filter(|(_, rules)| rules.admitting)
        {
            match self.observe(self.0.queue.tick(room.id(), &rules).await) {
                Ok(buyers) => admitted += buyers.len(),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.0
            .counters
            .admitted_by_tick
            .fetch_add(admitted as u64, Ordering::Relaxed);
        if let Err(e) = self.expire_closed(rooms, now).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(admitted), Err)
    }

    /// Sets the queues of rooms that closed to expire after the key TTL, once per room and
    /// process; a room that opens again is forgotten here (its queue keeps itself again when it
    /// is joined or ticked).
    async fn expire_closed(
        &self,
        rooms: &BTreeMap<RoomId, WaitingRoom>,
        now: DateTime<Utc>,
    ) -> Result<(), WaitingRoomError> {
        let due: Vec<RoomId> = {
            let mut expiring = self
                .0
                .expiring
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            expiring.retain(|id| rooms.get(id).is_some_and(|r| r.phase(now) == Phase::Closed));
            rooms
                .values()
                .filter(|room| room.phase(now) == Phase::Closed && !expiring.contains(room.id()))
                .map(|room| room.id().clone())
                .collect()
        };
        for id in due {
            self.observe(self.0.queue.expire(&id, self.key_ttl()).await)?;
            self.0
                .expiring
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
        }
        Ok(())
    }

    /// Ticks until `shutdown`, one round every [`tick_period`]. Failures are logged (once per
    /// outage, by the queue's state) and the loop goes on.
    pub async fn run_ticker(self, mut shutdown: Shutdown) {
        loop {
            let now = self.0.clock.now();
            let period = match self.rooms().await {
                Ok(rooms) => {
                    if let Err(e) = self.tick_rooms(&rooms, now).await
                        && !matches!(e, WaitingRoomError::QueueUnavailable(_))
                    {
                        tracing::warn!(error = %e, "waiting-room tick failed");
                    }
                    tick_period(&rooms, now)
                }
                // Logged where the rooms are read.
                Err(_) => MAX_TICK_PERIOD,
            };
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

const MAX_TICK_PERIOD: Duration = Duration::from_secs(1);

/// How long to wait between ticks: a tenth of the shortest admitting interval, between 50 ms
/// and 1 s, so a window's admissions go out early in the window.
fn tick_period(rooms: &BTreeMap<RoomId, WaitingRoom>, now: DateTime<Utc>) -> Duration {
    rooms
        .values()
        .filter(|room| room.admits(now))
        .map(|room| room.rate().interval() / 10)
        .min()
        .unwrap_or(MAX_TICK_PERIOD)
        .clamp(Duration::from_millis(50), MAX_TICK_PERIOD)
}
