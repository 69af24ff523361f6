//! The schedule: at each step the seed picks what happens next — a client's request, a message
//! handed to a consumer, a relay's round, the sweeper, time passing, an operator's cancel, a
//! crash, a rebalance, a clock jump — among what can happen now. After the clients are done
//! and a share of steps more, the faults stop, every process comes back with a true clock, and
//! the system runs until nothing is left to do; then the oracle judges.

use std::sync::Arc;

use ordership_application::ShutdownTrigger;
use ordership_domain::planted::{Bug, plant};

use crate::clients::Clients;
use crate::faults::{FaultRates, Shared};
use crate::oracle;
use crate::steps::{self, Side};
use crate::time::{Dice, WorldTime};
use crate::trace::Trace;
use crate::world::World;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Orders the clients place.
    pub orders: usize,
    /// Whether faults strike (off: the schedule's interleavings only).
    pub faults: bool,
    /// A known bug to plant (test builds with the feature `planted-bugs`).
    pub bug: Option<Bug>,
    /// Keep the trace's lines (`--trace`).
    pub trace: bool,
    /// Whether a third of the clients buy through the flash sale's waiting room (off: the
    /// schedules of the runs before the sale joined them).
    pub sale: bool,
}

impl Options {
    /// A run of 50 orders with faults.
    #[must_use]
    pub const fn seed(seed: u64) -> Self {
        Self {
            seed,
            orders: 50,
            faults: true,
            bug: None,
            trace: false,
            sale: true,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub trace_hash: String,
    /// Steps and faults the trace recorded.
    pub steps: u64,
    pub faults: u64,
    /// Simulated time the run took, and how much of it the system needed to quiesce once
    /// the faults stopped (milliseconds).
    pub simulated_ms: i64,
    pub quiesce_ms: i64,
    /// The oracle's findings: empty when every guarantee held.
    pub violations: Vec<String>,
    /// The trace's lines, when kept.
    pub trace: Vec<String>,
}

impl Report {
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The longest the system may take to quiesce once the faults stopped (simulated).
pub const QUIESCENCE_BOUND_MS: i64 = 10 * 60 * 1000;

/// Runs one seed on a runtime of its own (one thread, paused time) and judges it.
#[must_use]
pub fn run(options: &Options) -> Report {
    let failed = |why: String| Report {
        seed: options.seed,
        trace_hash: String::new(),
        steps: 0,
        faults: 0,
        simulated_ms: 0,
        quiesce_ms: 0,
        violations: vec![why],
        trace: Vec::new(),
    };
    if options.bug.is_some() && !ordership_domain::planted::AVAILABLE {
        return failed("this build cannot plant bugs (feature planted-bugs)".to_owned());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(format!("no runtime: {e}")),
    };
    plant(options.bug);
    // The simulated processes' own logs are not the run's output (its trace is): silenced.
    let report =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::new(), || {
            runtime.block_on(simulate(options))
        });
    plant(None);
    report
}

async fn simulate(options: &Options) -> Report {
    let shared = Shared {
        dice: Arc::new(Dice::new(options.seed)),
        trace: Arc::new(Trace::new(options.trace)),
        world: Arc::new(WorldTime::default()),
        rates: FaultRates::DEFAULT,
    };
    let trace = Arc::clone(&shared.trace);
    let mut world = World::new(shared.clone(), options.sale);
    let dice = Arc::clone(&shared.dice);
    let mut clients = Clients::new(options.orders, options.sale, |n| dice.below(n));
    // Never triggered: consumers are stopped by dropping them, as a killed process's are.
    let (_trigger, stop) = ShutdownTrigger::new();

    if options.sale
        && let Err(e) = world.open_sale(options.orders).await
    {
        return Report {
            seed: options.seed,
            trace_hash: trace.hash(),
            steps: 0,
            faults: 0,
            simulated_ms: 0,
            quiesce_ms: 0,
            violations: vec![format!("the sale did not open: {e}")],
            trace: trace.lines(),
        };
    }
    world.set_faults(options.faults);
    let least = options.orders * 12;
    let most = options.orders * 60;
    let mut taken = 0;
    while taken < most && !(taken >= least && clients.all_sent()) {
        taken += 1;
        shared
            .world
            .advance(i64::try_from(dice.below(5_000)).unwrap_or_default());
        world.restart_due();
        schedule_step(&mut world, &mut clients, &stop, options.faults).await;
    }

    let faults_stopped = shared.world.micros();
    world.set_faults(false);
    trace.step(faults_stopped, format_args!("faults stop"));
    for side in [Side::Order, Side::Delivery] {
        if !world.is_up(side) {
            world.crash(side, 0);
        }
    }
    world.order.host.clock.jump_to_skew(0);
    world.delivery.host.clock.jump_to_skew(0);
    world.restart_due();
    let quiesced = quiesce(&mut world, &mut clients, &stop).await;
    let quiesce_ms = (shared.world.micros() - faults_stopped) / 1000;

    let mut violations = oracle::check(&world, &clients, options.sale).await;
    if !quiesced {
        violations.push(format!(
            "liveness: work was left {} s after the faults stopped",
            QUIESCENCE_BOUND_MS / 1000
        ));
    }
    Report {
        seed: options.seed,
        trace_hash: trace.hash(),
        steps: trace.steps(),
        faults: trace.faults(),
        simulated_ms: shared.world.micros() / 1000,
        quiesce_ms,
        violations,
        trace: trace.lines(),
    }
}

/// What the seed may pick at one step (each with its weight).
#[derive(Debug, Clone, Copy)]
enum Pick {
    NewRequest,
    AskAgain,
    Deliver,
    Relay(Side),
    CommitOffsets,
    Sweep,
    TimePasses,
    OperatorCancel,
    DoubleClick,
    Crash(Side),
    Rebalance,
    ClockJump,
    Buyer,
    Tick,
}

async fn schedule_step(
    world: &mut World,
    clients: &mut Clients,
    stop: &ordership_application::Shutdown,
    faults: bool,
) {
    let dice = Arc::clone(&world.shared.dice);
    let waiting = world.broker.waiting();
    let order_up = world.is_up(Side::Order);
    let delivery_up = world.is_up(Side::Delivery);
    let placed = clients.placed();
    let buying = clients.buying();
    let picks: [(Pick, u64, bool); 16] = [
        (
            Pick::NewRequest,
            4,
            order_up && !clients.all_sent() && clients.has_new(),
        ),
        (Pick::AskAgain, 2, order_up && !clients.again.is_empty()),
        (Pick::Deliver, 10, !waiting.is_empty()),
        (Pick::Relay(Side::Order), 3, order_up),
        (Pick::Relay(Side::Delivery), 3, delivery_up),
        (Pick::CommitOffsets, 2, true),
        (Pick::Sweep, 1, order_up),
        (Pick::TimePasses, 1, true),
        (Pick::OperatorCancel, 1, order_up && !placed.is_empty()),
        (Pick::DoubleClick, 1, order_up && !placed.is_empty()),
        (Pick::Crash(Side::Order), 1, faults && order_up),
        (Pick::Crash(Side::Delivery), 1, faults && delivery_up),
        (Pick::Rebalance, 1, faults),
        (Pick::ClockJump, 1, faults),
        (Pick::Buyer, 4, order_up && !buying.is_empty()),
        (Pick::Tick, 2, order_up),
    ];
    let weights: Vec<u64> = picks
        .iter()
        .map(|&(_, w, can)| if can { w } else { 0 })
        .collect();
    let Some(index) = dice.weighted(&weights) else {
        return;
    };
    let pick = picks[index].0;
    match pick {
        Pick::NewRequest => {
            if let Some(n) = clients.take_new() {
                if clients.requests[n].buyer.is_some() {
                    steps::buy(world, clients, n).await;
                } else {
                    steps::place(world, clients, n).await;
                }
            }
        }
        Pick::AskAgain => {
            let at = usize::try_from(dice.below(clients.again.len() as u64)).unwrap_or_default();
            let n = clients.again.swap_remove(at);
            steps::place(world, clients, n).await;
        }
        Pick::Deliver => {
            let at = usize::try_from(dice.below(waiting.len() as u64)).unwrap_or_default();
            let (group, partition) = &waiting[at];
            world.deliver(group, *partition, stop).await;
        }
        Pick::Relay(side) => world.relay(side).await,
        Pick::CommitOffsets => {
            let group = if dice.chance(0.5) {
                ordership_application::saga::CONSUMER
            } else {
                ordership_application::deliveries::CONSUMER
            };
            world.broker.commit(group);
        }
        Pick::Sweep => world.sweep().await,
        Pick::Buyer => {
            let at = usize::try_from(dice.below(buying.len() as u64)).unwrap_or_default();
            steps::buy(world, clients, buying[at]).await;
        }
        Pick::Tick => world.tick().await,
        Pick::TimePasses => {
            let by = 200_000 + i64::try_from(dice.below(4_000_000)).unwrap_or_default();
            world.shared.world.advance(by);
        }
        Pick::OperatorCancel => {
            let at = usize::try_from(dice.below(placed.len() as u64)).unwrap_or_default();
            world.cancel(placed[at]).await;
        }
        Pick::DoubleClick => {
            let answered = clients.answered();
            let at = usize::try_from(dice.below(answered.len() as u64)).unwrap_or_default();
            if let Some(&n) = answered.get(at) {
                steps::place(world, clients, n).await;
            }
        }
        Pick::Crash(side) => {
            world
                .process(side)
                .fault(format_args!("killed between steps"));
            let delay = 200_000 + i64::try_from(dice.below(2_800_000)).unwrap_or_default();
            world.crash(side, delay);
        }
        Pick::Rebalance => {
            let group = if dice.chance(0.5) {
                ordership_application::saga::CONSUMER
            } else {
                ordership_application::deliveries::CONSUMER
            };
            // A revoked partition's stored offsets may or may not be committed on the way out.
            if dice.chance(0.5) {
                world.broker.commit(group);
            }
            world.broker.rewind(group);
            world
                .process(Side::Order)
                .fault(format_args!("rebalance of {group}"));
        }
        Pick::ClockJump => {
            let side = if dice.chance(0.5) {
                Side::Order
            } else {
                Side::Delivery
            };
            let skew = i64::try_from(dice.below(60_000_000)).unwrap_or_default() - 30_000_000;
            let host = match side {
                Side::Order => &world.order.host,
                Side::Delivery => &world.delivery.host,
            };
            host.clock.jump_to_skew(skew);
            host.process
                .fault(format_args!("clock jumps to {skew} µs off"));
        }
    }
}

/// Runs without faults until nothing is left to do (`true`), or the bound passes (`false`).
async fn quiesce(
    world: &mut World,
    clients: &mut Clients,
    stop: &ordership_application::Shutdown,
) -> bool {
    let start = world.shared.world.micros();
    while world.shared.world.micros() - start <= QUIESCENCE_BOUND_MS * 1000 {
        let mut busy = false;
        while let Some(n) = clients.again.pop() {
            steps::place(world, clients, n).await;
            busy = true;
        }
        while let Some(n) = clients.take_new() {
            if clients.requests[n].buyer.is_none() {
                steps::place(world, clients, n).await;
            }
            busy = true;
        }
        world.tick().await;
        let sold_out = world.sold_out().await;
        for n in clients.buying() {
            if !(sold_out
                && clients.requests[n]
                    .buyer
                    .as_ref()
                    .is_some_and(|b| b.sold_out))
            {
                steps::buy(world, clients, n).await;
                busy = true;
            }
        }
        for side in [Side::Order, Side::Delivery] {
            world.relay(side).await;
        }
        for (group, partition) in world.broker.waiting() {
            world.deliver(&group, partition, stop).await;
            busy = true;
        }
        world.broker.commit(ordership_application::saga::CONSUMER);
        world
            .broker
            .commit(ordership_application::deliveries::CONSUMER);
        world.sweep().await;
        if !busy && oracle::settled(world).await {
            return true;
        }
        world.shared.world.advance(500_000);
    }
    false
}
