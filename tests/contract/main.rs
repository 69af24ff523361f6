//! The contract suites: the storage contract against every storage adapter (memory, PostgreSQL),
//! the transport contract against every transport (the in-process bus, Kafka).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

/// The suite's Redis Cluster (`REDIS_CLUSTER_NODES`, comma-separated; `scripts/test.sh` starts a
/// local one of 3 masters and 3 replicas), admissions told once on a replica.
async fn suite_cluster() -> ordership_redis::Redis {
    let nodes: Vec<String> = std::env::var("REDIS_CLUSTER_NODES")
        .expect("REDIS_CLUSTER_NODES names the cluster's nodes (scripts/test.sh starts one)")
        .split(',')
        .map(str::to_owned)
        .collect();
    ordership_redis::connect_cluster(
        &nodes,
        &ordership_redis::Tls::default(),
        ordership_redis::Durability::on(1),
    )
    .await
    .unwrap_or_else(|e| panic!("Redis Cluster at {nodes:?}: {e:?}"))
}

mod memory {
    use ordership_memory::MemoryStore;
    use ordership_tests::contract::{DeliveryStore, OrderStore};

    async fn order_store() -> Box<OrderStore> {
        Box::new(MemoryStore::new())
    }

    async fn delivery_store() -> Box<DeliveryStore> {
        Box::new(MemoryStore::new())
    }

    ordership_tests::contract_tests!(order_store(), delivery_store());
}

/// The admission queue contract on the in-memory queue.
mod memory_admission {
    use std::sync::Arc;

    use ordership_domain::ports::WaitingRoomQueue;
    use ordership_memory::{MemoryWaitingRoomQueue, SystemClock};

    async fn queue() -> Arc<dyn WaitingRoomQueue> {
        Arc::new(MemoryWaitingRoomQueue::new(Arc::new(SystemClock)))
    }

    ordership_tests::waiting_room_queue_contract_tests!(queue());

    async fn rooms() -> ordership_tests::rooms::RoomsAndOrders {
        let store = ordership_memory::MemoryStore::new();
        ordership_tests::rooms::RoomsAndOrders {
            rooms: Arc::new(store.clone()),
            orders: Arc::new(store),
        }
    }

    ordership_tests::room_store_contract_tests!(rooms());
}

/// The waiting-room store on PostgreSQL.
mod postgres_rooms {
    use std::sync::Arc;

    use ordership_postgres::testing::fresh_database;
    use ordership_postgres::{PgOrderStore, PgWaitingRoomStore};
    use ordership_tests::rooms::RoomsAndOrders;

    async fn rooms() -> RoomsAndOrders {
        let pool = fresh_database().await;
        RoomsAndOrders {
            rooms: Arc::new(PgWaitingRoomStore::new(pool.clone())),
            orders: Arc::new(PgOrderStore::new(pool)),
        }
    }

    ordership_tests::room_store_contract_tests!(rooms());
}

/// The admission queue contract on a standalone Redis (`REDIS_URL`, default the local one).
mod redis_admission {
    use std::sync::Arc;

    use ordership_domain::ports::WaitingRoomQueue;

    async fn queue() -> Arc<dyn WaitingRoomQueue> {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let queue = ordership_redis::connect(
            &url,
            &ordership_redis::Tls::default(),
            ordership_redis::Durability::NONE,
        )
        .unwrap_or_else(|e| panic!("Redis URL {url}: {e:?}"))
        .queue;
        queue
            .ping()
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} (scripts/test.sh starts one): {e:?}"));
        queue
    }

    ordership_tests::waiting_room_queue_contract_tests!(queue());

    /// Asked to tell an admission only once it is on a replica, a Redis without replicas tells
    /// none (the buyer asks again: unavailable), and tells a waiting buyer where they stand.
    #[tokio::test]
    async fn an_admission_is_not_told_before_it_is_on_the_replicas_asked_for() {
        use std::time::Duration;

        use ordership_domain::CustomerId;
        use ordership_domain::ports::{QueueError, QueueRules};
        use ordership_domain::waiting_room::{EntryStatus, Rate};

        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let queue = ordership_redis::connect(
            &url,
            &ordership_redis::Tls::default(),
            ordership_redis::Durability::on(1),
        )
        .unwrap_or_else(|e| panic!("Redis URL {url}: {e:?}"))
        .queue;
        let room = ordership_tests::waiting_room::fresh_room();
        let rules = QueueRules {
            rate: Rate::new(1, Duration::from_secs(60)).expect("rate"),
            heartbeat_timeout: Duration::from_secs(30),
            admitting: true,
            draw_seed: 1,
            admission_validity: Duration::from_secs(300),
            holding_limit: None,
        };
        let first = CustomerId::parse("first").expect("buyer");
        let second = CustomerId::parse("second").expect("buyer");
        let told = queue.join(&room, &first, None, &rules).await;
        assert!(
            matches!(told, Err(QueueError::Unavailable(_))),
            "admitted, but on no replica: {told:?}"
        );
        let told = queue.status(&room, &first, &rules).await;
        assert!(matches!(told, Err(QueueError::Unavailable(_))), "{told:?}");
        let waiting = queue.join(&room, &second, None, &rules).await;
        assert!(
            matches!(waiting, Ok(EntryStatus::Waiting { position: 1, .. })),
            "{waiting:?}"
        );
    }
}

/// The admission queue contract on a Redis Cluster (`REDIS_CLUSTER_NODES`, comma-separated;
/// `scripts/test.sh` starts a local one of 3 masters and 3 replicas).
mod redis_cluster_admission {
    use std::sync::Arc;

    use ordership_domain::ports::WaitingRoomQueue;

    async fn queue() -> Arc<dyn WaitingRoomQueue> {
        crate::suite_cluster().await.queue
    }

    ordership_tests::waiting_room_queue_contract_tests!(queue());
}

/// The admission queue contract on a Redis Cluster that speaks TLS only, to clients, on its bus
/// and for replication (`REDIS_CLUSTER_TLS_NODES`; `scripts/test.sh` starts it with the test CA
/// of `ORDERSHIP_TEST_TLS_DIR`): every slot, every node, verified, with a client certificate.
mod redis_cluster_tls_admission {
    use std::path::PathBuf;
    use std::sync::Arc;

    use ordership_domain::ports::WaitingRoomQueue;

    async fn queue() -> Arc<dyn WaitingRoomQueue> {
        let nodes = ordership_tests::waiting_room::tls_cluster_nodes();
        let dir = PathBuf::from(
            std::env::var("ORDERSHIP_TEST_TLS_DIR")
                .expect("ORDERSHIP_TEST_TLS_DIR holds the test CA (scripts/test.sh makes it)"),
        );
        let tls = ordership_redis::Tls {
            ca: Some(dir.join("ca.pem")),
            client_certificate: Some((dir.join("client.pem"), dir.join("client-key.pem"))),
        };
        ordership_redis::connect_cluster(&nodes, &tls, ordership_redis::Durability::on(1))
            .await
            .unwrap_or_else(|e| panic!("Redis Cluster over TLS at {nodes:?}: {e:?}"))
            .queue
    }

    ordership_tests::waiting_room_queue_contract_tests!(queue());
}

mod postgres {
    use ordership_postgres::testing::fresh_database;
    use ordership_postgres::{PgDeliveryStore, PgOrderStore};
    use ordership_tests::contract::{DeliveryStore, OrderStore};

    async fn order_store() -> Box<OrderStore> {
        Box::new(PgOrderStore::new(fresh_database().await))
    }

    async fn delivery_store() -> Box<DeliveryStore> {
        Box::new(PgDeliveryStore::new(fresh_database().await))
    }

    ordership_tests::contract_tests!(order_store(), delivery_store());
}

/// The transport contract on the in-process bus.
mod bus {
    use std::sync::Arc;

    use async_trait::async_trait;
    use ordership_application::ConsumerStats;
    use ordership_domain::ports::{MessageHandler, MessagePublisher};
    use ordership_memory::{BusConfig, InProcessBus};
    use ordership_tests::fixtures::wait_until;
    use ordership_tests::transport::{TransportUnderTest, policy};

    struct Bus(InProcessBus);

    #[async_trait]
    impl TransportUnderTest for Bus {
        async fn topic(&self, name: &str) -> String {
            format!("test.{name}.{}", uuid::Uuid::now_v7().simple())
        }

        fn publisher(&self) -> Arc<dyn MessagePublisher> {
            Arc::new(self.0.clone())
        }

        async fn consume(
            &self,
            topic: &str,
            handler: Arc<dyn MessageHandler>,
        ) -> Arc<ConsumerStats> {
            self.0.subscribe(topic, "contract", &handler);
            Arc::clone(self.0.consumer_stats())
        }

        async fn dead_letters(
            &self,
            topic: &str,
            count: usize,
        ) -> Vec<(serde_json::Value, String)> {
            let of_topic = || {
                self.0
                    .dead_letters()
                    .into_iter()
                    .filter(|d| d.message.topic == topic)
                    .map(|d| (d.message.payload, d.reason))
                    .collect::<Vec<_>>()
            };
            wait_until("messages are dead-lettered", || of_topic().len() >= count).await;
            of_topic()
        }

        async fn stop(&self) {
            self.0.close().await;
        }
    }

    async fn bus() -> Box<dyn TransportUnderTest> {
        Box::new(Bus(InProcessBus::new(BusConfig {
            retry: policy(),
            ..BusConfig::default()
        })))
    }

    ordership_tests::transport_contract_tests!(bus());
}

/// The transport contract on Kafka: the cluster in `KAFKA_BROKERS` (`scripts/test.sh` starts a
/// dev broker; any real cluster works too). Each test has topics and groups of its own.
mod kafka {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use async_trait::async_trait;
    use ordership_application::{ConsumerStats, ShutdownTrigger};
    use ordership_domain::ports::{MessageHandler, MessagePublisher};
    use ordership_domain::topics;
    use ordership_kafka::{ConsumerConfig, KafkaPublisher, ProducerConfig, consume, ensure_topics};
    use ordership_tests::fixtures::PATIENCE;
    use ordership_tests::transport::{TransportUnderTest, policy};
    use tokio::task::JoinHandle;

    fn brokers() -> String {
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
            panic!("KAFKA_BROKERS is not set: these tests need a Kafka-protocol broker (scripts/test.sh starts `ordership dev-broker`)")
        })
    }

    fn unique(name: &str) -> String {
        format!("test.{name}.{}", uuid::Uuid::now_v7().simple())
    }

    struct Kafka {
        publisher: KafkaPublisher,
        consumers: Mutex<Vec<(ShutdownTrigger, JoinHandle<()>)>>,
    }

    #[async_trait]
    impl TransportUnderTest for Kafka {
        async fn topic(&self, name: &str) -> String {
            let topic = unique(name);
            ensure_topics(
                &ordership_kafka::Connection::new(&brokers()),
                &[topic.clone(), topics::dead_letter(&topic)],
                4,
                PATIENCE,
            )
            .await
            .expect("topics created");
            topic
        }

        fn publisher(&self) -> Arc<dyn MessagePublisher> {
            Arc::new(self.publisher.clone())
        }

        async fn consume(
            &self,
            topic: &str,
            handler: Arc<dyn MessageHandler>,
        ) -> Arc<ConsumerStats> {
            let stats = Arc::new(ConsumerStats::default());
            let config = ConsumerConfig {
                retry: policy(),
                ..ConsumerConfig::new(&brokers(), &unique("group"), &[topic])
            };
            let (trigger, mut stop) = ShutdownTrigger::new();
            let counters = Arc::clone(&stats);
            let task = tokio::spawn(async move {
                consume(
                    config,
                    handler,
                    counters,
                    async move { stop.requested().await },
                )
                .await
                .expect("consumer runs");
            });
            self.consumers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((trigger, task));
            stats
        }

        async fn dead_letters(
            &self,
            topic: &str,
            count: usize,
        ) -> Vec<(serde_json::Value, String)> {
            ordership_kafka::testing::dead_letters(&brokers(), topic, count, PATIENCE)
                .await
                .expect("dead-lettered records")
                .into_iter()
                .map(|parked| {
                    let payload = serde_json::from_slice(&parked.payload).expect("a JSON payload");
                    (payload, parked.reason)
                })
                .collect()
        }

        async fn stop(&self) {
            let consumers = std::mem::take(
                &mut *self
                    .consumers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for (trigger, task) in consumers {
                trigger.trigger();
                tokio::time::timeout(Duration::from_secs(30), task)
                    .await
                    .expect("the consumer stops")
                    .expect("the consumer ran");
            }
        }
    }

    async fn kafka() -> Box<dyn TransportUnderTest> {
        Box::new(Kafka {
            publisher: KafkaPublisher::new(&ProducerConfig::new(&brokers())).expect("producer"),
            consumers: Mutex::default(),
        })
    }

    ordership_tests::transport_contract_tests!(kafka());
}

/// Per-customer quotas: the same bucket arithmetic in memory and on Redis, and on Redis one
/// bucket for every instance (two connections stand for two instances of the order service).
mod rate_limits {
    use std::sync::Arc;
    use std::time::Duration;

    use ordership_domain::ports::RateLimiter;
    use ordership_domain::rate_limit::RateLimitPolicy;

    /// Three takes of a 3-per-minute quota pass (on either instance), the fourth is refused for
    /// one interval (20 s), and another customer's bucket is untouched.
    async fn one_bucket_for_all(a: Arc<dyn RateLimiter>, b: Arc<dyn RateLimiter>) {
        let policy = RateLimitPolicy::new("orders", 3, Duration::from_secs(60)).expect("policy");
        let customer = format!("c-{}", uuid::Uuid::now_v7());
        let mut remaining = Vec::new();
        for limiter in [&a, &b, &a] {
            let decision = limiter.take(&policy, &customer).await.expect("take");
            assert!(decision.allowed);
            remaining.push(decision.remaining);
        }
        assert_eq!(remaining, [2, 1, 0]);
        let refused = b.take(&policy, &customer).await.expect("take");
        assert!(!refused.allowed, "the quota is one for every instance");
        let wait = refused.retry_after.expect("a wait");
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        let other = format!("{customer}-other");
        assert!(a.take(&policy, &other).await.expect("take").allowed);
    }

    #[tokio::test]
    async fn in_memory() {
        let limiter: Arc<dyn RateLimiter> = Arc::new(ordership_memory::MemoryRateLimiter::new(
            Arc::new(ordership_memory::SystemClock),
        ));
        one_bucket_for_all(Arc::clone(&limiter), limiter).await;
    }

    #[tokio::test]
    async fn on_redis_shared_by_two_instances() {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let connect = || {
            ordership_redis::connect(
                &url,
                &ordership_redis::Tls::default(),
                ordership_redis::Durability::NONE,
            )
            .unwrap_or_else(|e| panic!("Redis URL {url}: {e:?}"))
            .rate_limiter
        };
        one_bucket_for_all(connect(), connect()).await;
    }

    #[tokio::test]
    async fn on_a_redis_cluster_shared_by_two_instances() {
        one_bucket_for_all(
            crate::suite_cluster().await.rate_limiter,
            crate::suite_cluster().await.rate_limiter,
        )
        .await;
    }
}
