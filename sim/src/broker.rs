//! The simulated transport: a Kafka-like log in memory. Each topic has a few partitions, a
//! message goes to its key's partition (so one order's messages keep their order), and each
//! consumer group reads a partition from its position; what it handled is stored, and stored
//! offsets are committed now and then, as a Kafka client's auto-commit does. A crash or a
//! rebalance sends a group back to what it committed: redelivery.
//!
//! Its publisher fails as a broker does: refused before anything is written, a batch written in
//! part, a batch written whose acknowledgement is lost, the relay's process dying meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ordership_application::consumer::DeadLetterSink;
use ordership_domain::Message;
use ordership_domain::ports::{BoxError, MessagePublisher, PublishError};

use crate::faults::{Process, Shared};

/// Partitions of every topic.
pub const PARTITIONS: usize = 3;

/// A consumer group's place in its topic's partitions.
#[derive(Debug, Clone)]
struct Group {
    topic: String,
    /// Up to where the group handled (the next message to hand out).
    stored: Vec<usize>,
    /// What a new consumer of the group would start from.
    committed: Vec<usize>,
}

/// A message a group gave up on, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub group: String,
    pub message: Message,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Log {
    topics: BTreeMap<String, Vec<Vec<Message>>>,
    groups: BTreeMap<String, Group>,
    dead: Vec<DeadLetter>,
}

/// The log and its groups.
#[derive(Debug)]
pub struct Broker {
    log: Mutex<Log>,
    shared: Shared,
}

/// The partition of `key` (FNV-1a: the same on every machine).
#[must_use]
pub fn partition_of(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(hash % PARTITIONS as u64).unwrap_or_default()
}

impl Broker {
    #[must_use]
    pub fn new(shared: Shared) -> Self {
        Self {
            log: Mutex::new(Log::default()),
            shared,
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, message: &Message) {
        let partition = partition_of(&message.key);
        self.shared.trace.step(
            self.shared.world.micros(),
            format_args!(
                "broker appends {} {} of {} to {}/{partition}",
                message.message_type, message.id, message.key, message.topic
            ),
        );
        let mut log = self.log();
        let partitions = log
            .topics
            .entry(message.topic.clone())
            .or_insert_with(|| vec![Vec::new(); PARTITIONS]);
        partitions[partition].push(message.clone());
    }

    /// Starts `group` on `topic`, from the beginning.
    pub fn subscribe(&self, group: &str, topic: &str) {
        self.log().groups.insert(
            group.to_owned(),
            Group {
                topic: topic.to_owned(),
                stored: vec![0; PARTITIONS],
                committed: vec![0; PARTITIONS],
            },
        );
    }

    /// Every (group, partition) with a message to hand out, in a fixed order.
    #[must_use]
    pub fn waiting(&self) -> Vec<(String, usize)> {
        let log = self.log();
        let mut waiting = Vec::new();
        for (name, group) in &log.groups {
            let Some(partitions) = log.topics.get(&group.topic) else {
                continue;
            };
            for (p, messages) in partitions.iter().enumerate() {
                if group.stored[p] < messages.len() {
                    waiting.push((name.clone(), p));
                }
            }
        }
        waiting
    }

    /// The next message `group` gets from `partition`, with its offset.
    #[must_use]
    pub fn next(&self, group: &str, partition: usize) -> Option<(usize, Message)> {
        let log = self.log();
        let g = log.groups.get(group)?;
        let offset = g.stored[partition];
        let message = log.topics.get(&g.topic)?.get(partition)?.get(offset)?;
        Some((offset, message.clone()))
    }

    /// `group` handled `offset` of `partition` (or, with `commit`, also committed it at once).
    pub fn store(&self, group: &str, partition: usize, offset: usize, commit: bool) {
        if let Some(g) = self.log().groups.get_mut(group) {
            g.stored[partition] = offset + 1;
            if commit {
                g.committed[partition] = offset + 1;
            }
        }
    }

    /// Commits what `group` stored (a Kafka client's auto-commit).
    pub fn commit(&self, group: &str) {
        if let Some(g) = self.log().groups.get_mut(group) {
            g.committed.clone_from(&g.stored);
        }
    }

    /// `group`'s consumer is gone (a crash, a rebalance): the next one starts from what was
    /// committed.
    pub fn rewind(&self, group: &str) {
        if let Some(g) = self.log().groups.get_mut(group) {
            g.stored.clone_from(&g.committed);
        }
    }

    /// Every message of `topic`, partition by partition, in log order.
    #[must_use]
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.log()
            .topics
            .get(topic)
            .map(|partitions| partitions.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// What was dead-lettered.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.log().dead.clone()
    }
}

/// Where a group parks the message in hand.
#[derive(Debug)]
pub struct Parking<'a> {
    pub broker: &'a Broker,
    pub group: &'a str,
    pub message: &'a Message,
}

#[async_trait]
impl DeadLetterSink for Parking<'_> {
    async fn park(&self, reason: &str) -> Result<(), BoxError> {
        self.broker.log().dead.push(DeadLetter {
            group: self.group.to_owned(),
            message: self.message.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }
}

/// A process's producer.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub broker: Arc<Broker>,
    pub process: Arc<Process>,
}

fn unavailable(why: &str) -> PublishError {
    PublishError::Unavailable(format!("simulated: {why}").into())
}

#[async_trait]
impl MessagePublisher for Publisher {
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError> {
        let (process, rates) = (&self.process, *self.process.rates());
        let some = |n: usize| usize::try_from(self.broker.shared.dice.below(n as u64 + 1));
        if process.strikes(rates.crash_in_publish) {
            batch
                .iter()
                .take(some(batch.len()).unwrap_or_default())
                .for_each(|m| self.broker.append(m));
            return process.die("while publishing").await;
        }
        if process.strikes(rates.publish_unavailable) {
            process.fault(format_args!("publish refused: broker unavailable"));
            return Err(unavailable("broker unavailable"));
        }
        if process.strikes(rates.publish_partial) {
            let written = some(batch.len()).unwrap_or_default();
            batch
                .iter()
                .take(written)
                .for_each(|m| self.broker.append(m));
            process.fault(format_args!("publish wrote {written} of {}", batch.len()));
            return Err(unavailable("batch written in part"));
        }
        batch.iter().for_each(|m| self.broker.append(m));
        if process.strikes(rates.publish_ack_lost) {
            process.fault(format_args!("publish acknowledgement lost"));
            return Err(unavailable("acknowledgement lost"));
        }
        Ok(())
    }
}
