//! A buyer in a room: joins, asks where they stand, leaves; the answers carry signed tokens.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ordership_domain::CustomerId;
use ordership_domain::ports::{Admission, BoxError, QueuePass};
use ordership_domain::waiting_room::{EntryStatus, Phase, RoomId, WaitingRoom, estimated_wait};

use super::{Entry, WaitingRoomError, WaitingRoomService};

/// When a waiting buyer should ask again: a quarter of their expected wait, at least a second,
/// and never so late that silence would drop them.
fn poll_after(room: &WaitingRoom, wait: Duration) -> Duration {
    let latest = (room.heartbeat_timeout() / 3).max(Duration::from_secs(1));
    (wait / 4).clamp(Duration::from_secs(1), latest)
}

/// Which tokens an answer carries: an admitted buyer always gets their admission token.
#[derive(Debug, Clone, Copy)]
enum Signed {
    WithQueueToken,
    AdmissionOnly,
}

fn time_of(ms: u64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(i64::try_from(ms).ok()?).single()
}

impl WaitingRoomService {
    /// Puts `buyer` in the room's queue, or finds them there; admitted at once when nobody has
    /// to wait. `queue_token` (from an earlier answer) puts a buyer the queue lost back at their
    /// ticket.
    ///
    /// # Errors
    /// `NotFound`, `Closed`, `AlreadyOrdered`, `QueueUnavailable`, or the
    /// store's failure.
    #[tracing::instrument(name = "waiting_room.join", skip_all, fields(room = %id))]
    pub async fn join(
        &self,
        id: &RoomId,
        buyer: &CustomerId,
        queue_token: Option<&str>,
    ) -> Result<Entry, WaitingRoomError> {
        let room = self.room(id).await?;
        let now = self.0.clock.now();
        if room.phase(now) == Phase::Closed {
            return Err(WaitingRoomError::Closed);
        }
        // A token that is not this buyer's for this room (forged, another buyer's, signed with a
        // key since rotated) counts for nothing: the buyer joins as anyone would.
        let returning = queue_token.and_then(|token| {
            let pass = self.0.tokens.verify_queue_pass(token).ok();
            let pass = pass.filter(|pass| &pass.room == id && &pass.buyer == buyer);
            if pass.is_none() {
                tracing::debug!(room = %id, "a queue token that is not this buyer's was ignored");
            }
            pass.map(|pass| pass.ticket)
        });
        let status = self.observe(
            self.0
                .queue
                .join(id, buyer, returning, &self.rules(&room, now))
                .await,
        )?;
        // Once per buyer and room, even when the queue forgot them: the orders remember. Asked
        // only when the answer is an admission, the one a buyer who ordered could use, so a
        // join that waits costs the database nothing (orders enforce it anyway: one per buyer
        // and room, under a unique index).
        if matches!(status, EntryStatus::Admitted { .. })
            && self
                .0
                .orders
                .begin_read_only()
                .await?
                .orders()
                .ordered_in_room(id, buyer)
                .await?
        {
            return Err(WaitingRoomError::AlreadyOrdered);
        }
        self.0.counters.joins.fetch_add(1, Ordering::Relaxed);
        if matches!(status, EntryStatus::Admitted { .. }) && returning.is_none() {
            self.0
                .counters
                .admitted_on_joining
                .fetch_add(1, Ordering::Relaxed);
        }
        self.entry(&room, buyer, status, now, Signed::WithQueueToken)
    }

    /// Where `buyer` stands; a heartbeat. No queue token: the buyer has it from joining, and
    /// status calls are the hot path of a waiting room.
    ///
    /// # Errors
    /// `NotFound`, `NotInRoom`, `QueueUnavailable`, or the store's failure.
    pub async fn status(&self, id: &RoomId, buyer: &CustomerId) -> Result<Entry, WaitingRoomError> {
        let room = self.room(id).await?;
        let now = self.0.clock.now();
        let status = self
            .observe(
                self.0
                    .queue
                    .status(id, buyer, &self.rules(&room, now))
                    .await,
            )?
            .ok_or(WaitingRoomError::NotInRoom)?;
        self.entry(&room, buyer, status, now, Signed::AdmissionOnly)
    }

    /// Takes `buyer` out of the room.
    ///
    /// # Errors
    /// `NotFound`, `NotInRoom`, `QueueUnavailable`, or the store's failure.
    pub async fn leave(&self, id: &RoomId, buyer: &CustomerId) -> Result<(), WaitingRoomError> {
        self.room(id).await?;
        if self.observe(self.0.queue.leave(id, buyer).await)? {
            Ok(())
        } else {
            Err(WaitingRoomError::NotInRoom)
        }
    }

    fn entry(
        &self,
        room: &WaitingRoom,
        buyer: &CustomerId,
        status: EntryStatus,
        now: DateTime<Utc>,
        signed: Signed,
    ) -> Result<Entry, WaitingRoomError> {
        let unexpected = |e: BoxError| WaitingRoomError::Unexpected(e);
        match status {
            EntryStatus::Waiting {
                ticket,
                position,
                waiting,
            } => {
                let queue_token = match signed {
                    Signed::WithQueueToken => {
                        let pass = QueuePass {
                            room: room.id().clone(),
                            buyer: buyer.clone(),
                            ticket,
                        };
                        Some(self.0.tokens.sign_queue_pass(&pass).map_err(unexpected)?)
                    }
                    Signed::AdmissionOnly => None,
                };
                if room.sold_out() {
                    return Ok(Entry::SoldOut {
                        ticket,
                        poll_after: poll_after(room, room.heartbeat_timeout()),
                        queue_token,
                    });
                }
                let wait = estimated_wait(room.rate(), position);
                Ok(Entry::Waiting {
                    ticket,
                    position,
                    waiting,
                    estimated_wait: wait,
                    poll_after: poll_after(room, wait),
                    queue_token,
                })
            }
            EntryStatus::Admitted {
                ticket,
                admitted_at_ms,
            } => {
                let admitted_at = time_of(admitted_at_ms).ok_or_else(|| {
                    WaitingRoomError::Unexpected(
                        format!("admission time {admitted_at_ms} ms is out of range").into(),
                    )
                })?;
                let validity = chrono::Duration::from_std(room.admission_validity())
                    .map_err(|e| unexpected(Box::new(e)))?;
                let expires_at = admitted_at + validity;
                if now >= expires_at {
                    return Ok(Entry::Expired { ticket });
                }
                let admission = Admission {
                    room: room.id().clone(),
                    buyer: buyer.clone(),
                    // The same for every answer about this admission.
                    id: format!("{}-{}-{admitted_at_ms}", room.id(), ticket.0),
                    expires_at,
                };
                let token = self
                    .0
                    .tokens
                    .sign_admission(&admission)
                    .map_err(unexpected)?;
                Ok(Entry::Admitted {
                    ticket,
                    admission,
                    token,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ordership_domain::Sku;
    use ordership_domain::waiting_room::{Rate, RoomState};

    use super::*;

    fn room(heartbeat: Duration) -> WaitingRoom {
        WaitingRoom::new(
            RoomId::parse("sale").expect("room"),
            BTreeSet::from([Sku::parse("HOT-1").expect("sku")]),
            Rate::default(),
            WaitingRoom::DEFAULT_ADMISSION_VALIDITY,
            heartbeat,
            RoomState::Open,
            None,
            None,
        )
        .expect("room")
    }

    #[test]
    fn buyers_ask_again_at_a_quarter_of_their_wait_within_the_heartbeat() {
        let patient = room(Duration::from_secs(30));
        assert_eq!(
            poll_after(&patient, Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            poll_after(&patient, Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            poll_after(&patient, Duration::from_secs(3_600)),
            Duration::from_secs(10),
            "a third of the heartbeat timeout at most"
        );
        let impatient = room(Duration::from_secs(1));
        assert_eq!(
            poll_after(&impatient, Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }
}
