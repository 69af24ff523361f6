//! The idempotency key store's contract.

use chrono::Duration;
use ordership_domain::ports::{Claim, StoredResponse};

use super::{OrderStore, t0};

/// A claimed key is seen by later claims with its fingerprint and, once completed, its response.
pub async fn idempotency_keys_remember_fingerprint_and_response(store: &OrderStore) {
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.idempotency_keys()
            .claim("POST /orders", "k1", "fp", t0())
            .await
            .expect("claim"),
        Claim::Claimed
    );
    assert_eq!(
        tx.idempotency_keys()
            .claim("POST /other", "k1", "fp", t0())
            .await
            .expect("claim"),
        Claim::Claimed,
        "scopes are separate"
    );
    let response = StoredResponse {
        status: 201,
        body: b"{\"id\":1}".to_vec(),
    };
    tx.idempotency_keys()
        .complete("POST /orders", "k1", &response)
        .await
        .expect("complete");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    match tx
        .idempotency_keys()
        .claim("POST /orders", "k1", "other", t0())
        .await
        .expect("claim")
    {
        Claim::Existing(record) => {
            assert_eq!(record.fingerprint, "fp");
            assert_eq!(record.response, Some(response));
            assert_eq!(record.created_at, t0());
        }
        Claim::Claimed => panic!("a used key was claimed again"),
    }
    match tx
        .idempotency_keys()
        .claim("POST /other", "k1", "fp", t0())
        .await
        .expect("claim")
    {
        Claim::Existing(record) => assert_eq!(record.response, None, "claimed, not completed"),
        Claim::Claimed => panic!("a used key was claimed again"),
    }
    assert_eq!(tx.idempotency_keys().purge(t0()).await.expect("purge"), 0);
    assert_eq!(
        tx.idempotency_keys()
            .purge(t0() + Duration::hours(25))
            .await
            .expect("purge"),
        2
    );
}
