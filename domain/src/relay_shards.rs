//! Outbox shards: how several relays publish one outbox in parallel without breaking per-key
//! order.
//!
//! An outbox is split into a fixed number of shards by a hash of each message's key, so all of
//! one key's messages are in one shard. A relay publishes a shard only while it holds that
//! shard's lock in the store (one publisher per shard at a time: per-key order holds), and relay
//! instances share the shards through leases: each says it is alive, renews its own leases, takes
//! free or expired ones up to its fair share among the live instances, and gives up those beyond
//! it, so a new instance gets work and the shards of an instance that died are taken over once
//! its leases expire. A lease only says who should
//! try; the lock is what keeps the order, so two instances that both believe they lease a shard
//! (a slow one whose lease ran out) still publish it one after the other.

use std::collections::BTreeSet;

/// One shard of an outbox: the messages whose key hash `h` gives `h % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    /// How many shards the outbox has now (it changes only by resharding).
    pub count: u32,
}

impl Shard {
    /// Whether a message whose key hashes to `key_hash` belongs to this shard.
    #[must_use]
    pub fn holds(self, key_hash: u32) -> bool {
        self.count > 0 && key_hash % self.count == self.index
    }
}

/// Several shards of one outbox, all counted by the same shard count: those a relay
/// transaction holds the rights of, or publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shards {
    /// How many shards the outbox has now (0 when none is held and it was not read).
    pub count: u32,
    /// Ascending.
    pub indexes: Vec<u32>,
}

impl Shards {
    /// Just `shard`.
    #[must_use]
    pub fn one(shard: Shard) -> Self {
        Self {
            count: shard.count,
            indexes: vec![shard.index],
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// Each shard on its own.
    pub fn each(&self) -> impl Iterator<Item = Shard> + '_ {
        self.indexes.iter().map(|&index| Shard {
            index,
            count: self.count,
        })
    }

    /// Whether a message whose key hashes to `key_hash` belongs to one of these shards.
    #[must_use]
    pub fn hold(&self, key_hash: u32) -> bool {
        self.each().any(|shard| shard.holds(key_hash))
    }
}

/// Which shards' relay rights a transaction asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WantedShards {
    /// Every shard the outbox has (a relay that is alone).
    Every,
    /// These indexes (those an instance leases); indexes the outbox no longer has are left out.
    Only(Vec<u32>),
}

/// A shard's lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLease {
    pub shard: u32,
    /// The relay instance leasing it; `None`: nobody ever did, or it was given up.
    pub owner: Option<String>,
    /// The lease has not expired.
    pub live: bool,
}

/// What a relay instance does with the leases at one renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Lease (again) for another term: the shards it keeps and those it takes, ascending.
    pub hold: Vec<u32>,
    /// Give up: held beyond its fair share, so that another instance can take them.
    pub release: Vec<u32>,
}

/// The fair share of `me` among the live relay instances (`alive`, and `me`): the shards are
/// divided as evenly as possible, the instances first by name getting one more where they do
/// not divide evenly, so every instance computes the same division. `me` keeps what it holds up
/// to its share (lowest shards first), releases the rest, and takes free or expired shards
/// (lowest first) until it has its share. Instances converge within two renewals of each.
#[must_use]
pub fn plan_leases(leases: &[ShardLease], alive: &[String], me: &str) -> LeasePlan {
    let mut instances: BTreeSet<&str> = alive.iter().map(String::as_str).collect();
    instances.insert(me);
    let shards = leases.len();
    let rank = instances.iter().position(|i| *i == me).unwrap_or_default();
    let share = shards / instances.len() + usize::from(rank < shards % instances.len());
    let mut mine: Vec<u32> = leases
        .iter()
        .filter(|l| l.owner.as_deref() == Some(me))
        .map(|l| l.shard)
        .collect();
    mine.sort_unstable();
    let release = mine.split_off(share.min(mine.len()));
    let mut free: Vec<u32> = leases
        .iter()
        .filter(|l| l.owner.is_none() || (!l.live && l.owner.as_deref() != Some(me)))
        .map(|l| l.shard)
        .collect();
    free.sort_unstable();
    let wanted = share - mine.len();
    let mut hold = mine;
    hold.extend(free.into_iter().take(wanted));
    hold.sort_unstable();
    LeasePlan { hold, release }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(owners: &[Option<(&str, bool)>]) -> Vec<ShardLease> {
        owners
            .iter()
            .enumerate()
            .map(|(shard, owner)| ShardLease {
                shard: u32::try_from(shard).expect("few shards"),
                owner: owner.map(|(name, _)| name.to_owned()),
                live: owner.is_some_and(|(_, live)| live),
            })
            .collect()
    }

    fn alive(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// Runs renewals round-robin, each instance alive from its first; returns who holds each
    /// shard after four rounds.
    fn settle(shards: usize, instances: &[&str]) -> Vec<Option<String>> {
        let mut table: Vec<Option<(&str, bool)>> = vec![None; shards];
        for _ in 0..4 {
            for me in instances {
                let plan = plan_leases(&leases(&table), &alive(instances), me);
                for shard in plan.release {
                    table[shard as usize] = None;
                }
                for shard in plan.hold {
                    table[shard as usize] = Some((*me, true));
                }
            }
        }
        table
            .into_iter()
            .map(|o| o.map(|(n, _)| n.to_owned()))
            .collect()
    }

    #[test]
    fn shards_hold_the_keys_of_each_of_them() {
        let shards = Shards {
            count: 4,
            indexes: vec![1, 3],
        };
        assert_eq!(
            (0..8).filter(|&h| shards.hold(h)).collect::<Vec<_>>(),
            [1, 3, 5, 7]
        );
        assert!(!Shards::default().hold(0), "no shard holds nothing");
        let one = Shards::one(Shard { index: 2, count: 4 });
        assert_eq!(
            one.each().collect::<Vec<_>>(),
            [Shard { index: 2, count: 4 }]
        );
    }

    #[test]
    fn one_instance_leases_every_shard() {
        let plan = plan_leases(&leases(&[None, None, None, None]), &[], "a");
        assert_eq!(plan.hold, vec![0, 1, 2, 3]);
        assert!(plan.release.is_empty());
    }

    #[test]
    fn instances_divide_the_shards_evenly_and_every_shard_is_held() {
        for (shards, instances) in [(4, 2), (4, 3), (8, 3), (4, 4), (2, 3), (16, 5)] {
            let names: Vec<String> = (0..instances).map(|i| format!("relay-{i}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let table = settle(shards, &names);
            let counts: Vec<usize> = names
                .iter()
                .map(|n| table.iter().filter(|o| o.as_deref() == Some(*n)).count())
                .collect();
            assert!(
                table.iter().all(Option::is_some),
                "{shards} shards, {instances} instances: every shard held: {table:?}"
            );
            let (min, max) = (counts.iter().min(), counts.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "{shards} shards, {instances} instances: {counts:?}"
            );
        }
    }

    #[test]
    fn a_newcomer_gets_its_share_as_the_others_give_theirs_up() {
        let all_a = leases(&[Some(("a", true)); 4]);
        // b has announced itself: a keeps two and gives two up...
        let a = plan_leases(&all_a, &alive(&["a", "b"]), "a");
        assert_eq!((a.hold, a.release), (vec![0, 1], vec![2, 3]));
        // ...which b, finding nothing free before, then takes.
        assert!(
            plan_leases(&all_a, &alive(&["a", "b"]), "b")
                .hold
                .is_empty()
        );
        let after = leases(&[Some(("a", true)), Some(("a", true)), None, None]);
        assert_eq!(
            plan_leases(&after, &alive(&["a", "b"]), "b").hold,
            vec![2, 3]
        );
    }

    #[test]
    fn the_shards_of_an_instance_whose_leases_expired_are_taken_over() {
        let table = leases(&[
            Some(("a", true)),
            Some(("a", true)),
            Some(("dead", false)),
            Some(("dead", false)),
        ]);
        let plan = plan_leases(&table, &alive(&["a"]), "a");
        assert_eq!(
            plan.hold,
            vec![0, 1, 2, 3],
            "the expired leases count for no one"
        );
        // While they are live, they are not taken.
        let live = leases(&[
            Some(("a", true)),
            Some(("a", true)),
            Some(("b", true)),
            Some(("b", true)),
        ]);
        assert_eq!(
            plan_leases(&live, &alive(&["a", "b"]), "a").hold,
            vec![0, 1]
        );
    }

    #[test]
    fn an_instance_renews_its_own_expired_lease_nobody_took() {
        let table = leases(&[Some(("a", false)), None]);
        assert_eq!(plan_leases(&table, &[], "a").hold, vec![0, 1]);
    }

    #[test]
    fn a_shard_holds_the_keys_that_hash_to_it() {
        let shard = Shard { index: 1, count: 4 };
        assert!(shard.holds(5));
        assert!(!shard.holds(4));
        assert!(!Shard { index: 0, count: 0 }.holds(0));
    }
}
