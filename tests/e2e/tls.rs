//! TLS to PostgreSQL (the pool and the CDC relay's replication connection) and to Redis, with the
//! server's certificate verified and a client certificate presented. `scripts/test.sh` makes a
//! throwaway CA (`scripts/tls.sh`), turns `ssl` on in the test PostgreSQL server and starts a
//! Redis on a TLS port and a Redis Cluster that speaks only TLS: `ORDERSHIP_TEST_TLS_DIR` holds
//! the files, `REDIS_TLS_URL` names that Redis, `REDIS_CLUSTER_TLS_NODES` that cluster (the
//! queue contract runs on it in tests/contract). Without them these tests fail; they never skip.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ordership_postgres::testing::fresh_database_url;
use serde_json::Value;
use sqlx::PgPool;

use crate::binary::{command, http, order, start, terminate};

/// A file of the test CA's directory.
fn tls_file(name: &str) -> String {
    let dir = std::env::var("ORDERSHIP_TEST_TLS_DIR").unwrap_or_else(|_| {
        panic!("ORDERSHIP_TEST_TLS_DIR is not set: these tests need the TLS setup of scripts/test.sh (scripts/tls.sh)")
    });
    let path = PathBuf::from(dir).join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path.to_string_lossy().into_owned()
}

/// `url` with the host the server certificate names, full verification against `ca` and the
/// test client certificate.
fn over_tls(url: &str, ca: &str) -> String {
    let url = url.replacen("@127.0.0.1:", "@localhost:", 1);
    format!(
        "{url}?sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        tls_file("client.pem"),
        tls_file("client-key.pem")
    )
}

async fn one(pool: &PgPool, sql: &str, database: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(database)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_verified_tls_with_a_client_certificate_the_pool_and_the_cdc_relay_work() {
    let plain = fresh_database_url().await;
    let database = plain.rsplit('/').next().expect("a name").to_owned();
    let url = over_tls(&plain, &tls_file("ca.pem"));
    let process = start(&["all", "--database-url", &url, "--relay-mode", "cdc"]).await;

    let (status, body) = http(&process.addr, "POST", "/orders", Some(&order("KR", 1))).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let placed: Value = serde_json::from_slice(&body).expect("json");
    let path = format!("/orders/{}", placed["id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(&process.addr, "GET", &path, None).await;
        let order: Value = serde_json::from_slice(&body).expect("json");
        if order["saga"]["state"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order did not settle: {order}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server's view: the relay's replication connection and the pool's sessions are
    // encrypted, and each presented the client certificate.
    let server = PgPool::connect(&plain).await.expect("database");
    let encrypted = |backend: &'static str| {
        format!(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.backend_type = '{backend}' AND s.ssl \
             AND s.client_dn = '/CN=ordership-client'"
        )
    };
    assert!(
        one(&server, &encrypted("walsender"), &database).await >= 2,
        "both CDC relays stream over TLS"
    );
    assert!(
        one(&server, &encrypted("client backend"), &database).await >= 1,
        "the pool connects over TLS"
    );
    let plain_sessions = "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = $1 AND NOT s.ssl AND a.pid <> pg_backend_pid() \
         AND a.backend_type IN ('walsender', 'client backend')";
    assert_eq!(
        one(&server, plain_sessions, &database).await,
        0,
        "nothing of the service's connects in plain text"
    );
    server.close().await;
    terminate(process).await;
    ordership_postgres::testing::drop_replication_slots(&plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_server_whose_certificate_another_ca_signed_is_refused_with_a_clear_error() {
    let plain = fresh_database_url().await;
    let url = over_tls(&plain, &tls_file("other-ca.pem"));
    let output = command()
        .args(["migrate", "--database-url", &url])
        .output()
        .await
        .expect("ordership runs");
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "connected anyway: {log}");
    assert!(
        log.contains("certificate") && log.contains("UnknownIssuer"),
        "the error says the server's certificate is not trusted: {log}"
    );
}

/// `error`, with its causes, says the server's certificate was not trusted.
fn assert_says_the_certificate_is_untrusted(error: &(dyn std::error::Error + 'static)) {
    let chain = std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains("certificate") || chain.contains("UnknownIssuer"),
        "the error says why: {chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_answers_with_the_right_ca_and_refuses_another() {
    let url = std::env::var("REDIS_TLS_URL").unwrap_or_else(|_| {
        panic!("REDIS_TLS_URL is not set: this test needs the Redis on a TLS port that scripts/test.sh starts")
    });
    let trusted = ordership_redis::Tls {
        ca: Some(tls_file("ca.pem").into()),
        client_certificate: Some((
            tls_file("client.pem").into(),
            tls_file("client-key.pem").into(),
        )),
    };
    let queue = ordership_redis::connect(&url, &trusted, ordership_redis::Durability::NONE)
        .expect("a client")
        .queue;
    queue.ping().await.expect("Redis answers over TLS");

    let untrusted = ordership_redis::Tls {
        ca: Some(tls_file("other-ca.pem").into()),
        ..trusted
    };
    let queue = ordership_redis::connect(&url, &untrusted, ordership_redis::Durability::NONE)
        .expect("a client")
        .queue;
    let error = queue
        .ping()
        .await
        .expect_err("a server signed by another CA is refused");
    assert_says_the_certificate_is_untrusted(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_over_tls_signed_by_another_ca_is_refused_with_a_clear_error() {
    let nodes = ordership_tests::waiting_room::tls_cluster_nodes();
    let untrusted = ordership_redis::Tls {
        ca: Some(tls_file("other-ca.pem").into()),
        client_certificate: None,
    };
    let Err(error) =
        ordership_redis::connect_cluster(&nodes, &untrusted, ordership_redis::Durability::on(1))
            .await
    else {
        panic!("a cluster whose certificates another CA signed is refused");
    };
    assert_says_the_certificate_is_untrusted(&error);
}

/// The output of `ordership delivery-service` started with these Kafka settings, which must stop
/// it before it serves.
async fn refused_kafka_settings(settings: &[&str]) -> String {
    let database = fresh_database_url().await;
    let mut args = vec![
        "delivery-service",
        "--database-url",
        &database,
        "--kafka-brokers",
        "127.0.0.1:1",
        "--http-addr",
        "127.0.0.1:0",
    ];
    for setting in settings {
        args.extend(["--kafka-config", setting]);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command().args(&args).output())
        .await
        .expect("it stops by itself")
        .expect("ordership runs");
    let log = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started anyway: {log}");
    log
}

/// Tansu 0.6.0 cannot serve TLS (its `--cert` and `--key` exclude each other), so what is shown
/// here is that TLS settings reach librdkafka, which is built with OpenSSL and checks them, and
/// that the settings the guarantees rest on cannot be passed through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tls_settings_reach_librdkafka_and_the_guarantees_cannot_be_overridden() {
    let log = refused_kafka_settings(&[
        "security.protocol=SSL",
        "ssl.ca.location=/nonexistent/ca.pem",
    ])
    .await;
    assert!(
        log.contains("ssl.ca.location"),
        "librdkafka read the CA setting and refused the missing file: {log}"
    );
    let log = refused_kafka_settings(&["acks=1"]).await;
    assert!(
        log.contains("\"acks\" is ordership's own and cannot be overridden"),
        "{log}"
    );
}
