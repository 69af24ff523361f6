//! The steps a schedule is made of. Each runs real application code to its end, or until the
//! process it runs in dies (a fault at a port call): what the process was doing is then dropped,
//! as a killed process's would be, and it comes back after a simulated delay.

use std::future::Future;

use ordership_application::Shutdown;
use ordership_domain::planted::{self, Bug};

use crate::broker::Parking;
use crate::clients::{self, Clients};
use crate::faults::Process;
use crate::world::World;

/// Which process a step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Order,
    Delivery,
}

impl World {
    #[must_use]
    pub fn process(&self, side: Side) -> &Process {
        match side {
            Side::Order => &self.order.host.process,
            Side::Delivery => &self.delivery.host.process,
        }
    }

    #[must_use]
    pub fn is_up(&self, side: Side) -> bool {
        match side {
            Side::Order => self.order.host.down_until.is_none(),
            Side::Delivery => self.delivery.host.down_until.is_none(),
        }
    }

    fn step(&self, what: std::fmt::Arguments<'_>) {
        self.shared.trace.step(self.shared.world.micros(), what);
    }

    /// `side`'s process died: its consumers' uncommitted progress is gone, and it comes back
    /// after a delay drawn from the seed (or at once, `delay` 0).
    pub fn crash(&mut self, side: Side, delay: i64) {
        let back = self.shared.world.micros() + delay;
        let (host, group) = match side {
            Side::Order => (&mut self.order.host, ordership_application::saga::CONSUMER),
            Side::Delivery => (
                &mut self.delivery.host,
                ordership_application::deliveries::CONSUMER,
            ),
        };
        host.down_until = Some(back);
        let name = host.process.name;
        self.broker.rewind(group);
        self.step(format_args!("{name} is down until {back}"));
    }

    /// Restarts every process whose time to come back has come.
    pub fn restart_due(&mut self) {
        let now = self.shared.world.micros();
        if self.order.host.down_until.is_some_and(|t| t <= now) {
            self.order.restart(&self.shared);
            self.step(format_args!("order-service restarted"));
        }
        if self.delivery.host.down_until.is_some_and(|t| t <= now) {
            self.delivery.restart(&self.shared);
            self.step(format_args!("delivery-service restarted"));
        }
    }

    /// How long a dead process stays down (0.2–3 s).
    fn downtime(&self) -> i64 {
        200_000 + i64::try_from(self.shared.dice.below(2_800_000)).unwrap_or_default()
    }

    /// Runs `work` in `side`'s process: `None` if the process died meanwhile (then marked down).
    async fn guarded<T>(&mut self, side: Side, work: impl Future<Output = T>) -> Option<T> {
        let process = self.process_arc(side);
        let outcome = guard(&process, work).await;
        if outcome.is_none() {
            self.died(side);
        }
        outcome
    }

    /// Hands the next message of `group`'s `partition` to its consumer.
    pub async fn deliver(&mut self, group: &str, partition: usize, stop: &Shutdown) {
        let Some((offset, message)) = self.broker.next(group, partition) else {
            return;
        };
        self.step(format_args!(
            "{group} gets {partition}@{offset}: {} {} of {}",
            message.message_type, message.id, message.key
        ));
        let side = if group == ordership_application::deliveries::CONSUMER {
            Side::Delivery
        } else {
            Side::Order
        };
        let early = planted::active(Bug::OffsetBeforeEffect);
        if early {
            self.broker.store(group, partition, offset, true);
        }
        let consumer = match side {
            Side::Order => self.order.replies.clone(),
            Side::Delivery => self.delivery.commands.clone(),
        };
        let (broker, process) = (std::sync::Arc::clone(&self.broker), self.process_arc(side));
        let mut stop = stop.clone();
        let handled = self
            .guarded(side, async {
                let parking = Parking {
                    broker: &broker,
                    group,
                    message: &message,
                };
                let done = consumer.process(Ok(&message), &mut stop, &parking).await;
                if done && process.strikes(process.rates().crash_in_handling) {
                    return process
                        .die("after handling, before storing the offset")
                        .await;
                }
                done
            })
            .await;
        if handled == Some(true) && !early {
            self.broker.store(group, partition, offset, false);
        }
    }

    fn process_arc(&self, side: Side) -> std::sync::Arc<Process> {
        std::sync::Arc::clone(match side {
            Side::Order => &self.order.host.process,
            Side::Delivery => &self.delivery.host.process,
        })
    }

    /// One round of `side`'s outbox relay.
    pub async fn relay(&mut self, side: Side) {
        let outcome = match side {
            Side::Order => {
                let relay = &self.order.relay;
                let process = self.process_arc(side);
                guard(&process, relay.relay_once()).await
            }
            Side::Delivery => {
                let relay = &self.delivery.relay;
                let process = self.process_arc(side);
                guard(&process, relay.relay_once()).await
            }
        };
        match outcome {
            Some(Ok(n)) => self.step(format_args!("{side:?} relay published {n}")),
            Some(Err(e)) => self.step(format_args!("{side:?} relay failed: {e}")),
            None => self.died(side),
        }
    }

    /// One pass of the saga's sweeper over overdue sagas.
    pub async fn sweep(&mut self) {
        let process = self.process_arc(Side::Order);
        match guard(&process, self.order.saga.sweep_overdue(50)).await {
            Some(Ok(report)) => self.step(format_args!("sweeper: {report:?}")),
            Some(Err(e)) => self.step(format_args!("sweeper failed: {e}")),
            None => self.died(Side::Order),
        }
    }

    /// An operator cancels `order`.
    pub async fn cancel(&mut self, order: ordership_domain::OrderId) {
        let process = self.process_arc(Side::Order);
        match guard(&process, clients::cancel(&self.order.orders, order)).await {
            Some(line) => self.step(format_args!("{line}")),
            None => self.died(Side::Order),
        }
    }

    /// One tick of the waiting room's ticker: the queue admits at the room's rate.
    pub async fn tick(&mut self) {
        let Some(rooms) = self.order.rooms.clone() else {
            return;
        };
        let process = self.process_arc(Side::Order);
        match guard(&process, rooms.tick()).await {
            Some(Ok(n)) => self.step(format_args!("ticker admitted {n}")),
            Some(Err(e)) => self.step(format_args!("ticker failed: {e}")),
            None => self.died(Side::Order),
        }
    }

    fn died(&mut self, side: Side) {
        let delay = self.downtime();
        self.crash(side, delay);
    }
}

/// `work` in `process`, or `None` once the process died.
async fn guard<T>(process: &Process, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = process.death() => None,
        value = work => Some(value),
    }
}

/// Sends request `n`; a client whose request got no answer (the process died) asks again later.
pub async fn place(world: &mut World, clients: &mut Clients, n: usize) {
    let service = world.order.orders.clone();
    let line = world
        .guarded(Side::Order, clients::place(clients, n, &service))
        .await;
    match line {
        Some(line) => world.step(format_args!("client {line}")),
        None => {
            clients.again.push(n);
            world.step(format_args!("client key-{n}: no answer, asks again later"));
        }
    }
}

/// Moves buyer `n` on: an admitted buyer orders, any other looks at the waiting room.
pub async fn buy(world: &mut World, clients: &mut Clients, n: usize) {
    let admitted = clients.requests[n]
        .buyer
        .as_ref()
        .is_some_and(|b| b.admission.is_some());
    if admitted {
        return place(world, clients, n).await;
    }
    let Some(rooms) = world.order.rooms.clone() else {
        return;
    };
    match world
        .guarded(Side::Order, clients::look(clients, n, &rooms))
        .await
    {
        Some(line) => world.step(format_args!("buyer {line}")),
        None => world.step(format_args!("buyer key-{n}: no answer")),
    }
}
