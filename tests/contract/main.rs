//! The port contract suite, run against every storage adapter.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

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
