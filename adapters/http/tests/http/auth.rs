//! Who may do what: every endpoint × anonymous, another customer, the owner, a courier and an
//! operator; tokens that are not valid here; browsers.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ordership_http::auth::{DEV_AUDIENCE, DEV_ISSUER, DevKey, Scope};
use serde_json::{Value, json};

use crate::app::{Options, TestApp, order_body, post};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    OtherCustomer,
    Owner,
    Courier,
    Admin,
}

const ROLES: [Role; 5] = [
    Role::Anonymous,
    Role::OtherCustomer,
    Role::Owner,
    Role::Courier,
    Role::Admin,
];

fn token(app: &TestApp, role: Role) -> Option<String> {
    match role {
        Role::Anonymous => None,
        Role::OtherCustomer => Some(app.token("c-7", &[Scope::Orders])),
        Role::Owner => Some(app.token("c-42", &[Scope::Orders])),
        Role::Courier => Some(app.token("courier-1", &[Scope::Courier])),
        Role::Admin => Some(app.token("ops-1", &[Scope::Admin])),
    }
}

fn with_token(mut request: Request<Body>, token: Option<&str>) -> Request<Body> {
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("header");
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    request
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn post_empty(uri: &str) -> Request<Body> {
    Request::post(uri).body(Body::empty()).expect("request")
}

/// What each role gets from each endpoint: the status, and for 401/403 a problem document.
#[tokio::test]
async fn every_endpoint_answers_each_role_as_its_scopes_allow() {
    use Role::{Admin, Anonymous, Courier, OtherCustomer, Owner};
    let app = TestApp::new();
    // c-42's order, confirmed, with its delivery.
    let order = app.place("KR").await;
    let id = order["id"].as_str().expect("id").to_owned();
    let order = app.wait_for_status(&id, "confirmed").await;
    let delivery = order["delivery_id"].as_str().expect("delivery").to_owned();

    type Case = (
        &'static str,
        fn(&str, &str) -> Request<Body>,
        [(Role, u16); 5],
    );
    let cases: [Case; 10] = [
        (
            "GET /orders/{id}/events",
            |o, _| get(&format!("/orders/{o}/events")),
            [
                (Anonymous, 401),
                (OtherCustomer, 404),
                (Owner, 200),
                (Courier, 403),
                (Admin, 200),
            ],
        ),
        (
            "GET /sagas",
            |_, _| get("/sagas"),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 403),
                (Admin, 200),
            ],
        ),
        (
            "GET /sagas/{id}",
            |o, _| get(&format!("/sagas/{o}")),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 403),
                (Admin, 200),
            ],
        ),
        (
            "POST /orders",
            |_, _| post("/orders", &order_body("KR"), None),
            [
                (Anonymous, 401),
                (OtherCustomer, 201),
                (Owner, 201),
                (Courier, 403),
                (Admin, 403),
            ],
        ),
        (
            "GET /orders/{id}",
            |o, _| get(&format!("/orders/{o}")),
            [
                (Anonymous, 401),
                (OtherCustomer, 404),
                (Owner, 200),
                (Courier, 403),
                (Admin, 200),
            ],
        ),
        (
            "GET /orders",
            |_, _| get("/orders"),
            [
                (Anonymous, 401),
                (OtherCustomer, 200),
                (Owner, 200),
                (Courier, 403),
                (Admin, 200),
            ],
        ),
        (
            "GET /deliveries/{id}",
            |_, d| get(&format!("/deliveries/{d}")),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 200),
                (Admin, 200),
            ],
        ),
        (
            "GET /deliveries?order_id",
            |o, _| get(&format!("/deliveries?order_id={o}")),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 200),
                (Admin, 200),
            ],
        ),
        // Ship and deliver are tried by every role; the first allowed one moves the delivery,
        // the next allowed one finds it moved (409): authorised either way.
        (
            "POST /deliveries/{id}/ship",
            |_, d| post_empty(&format!("/deliveries/{d}/ship")),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 200),
                (Admin, 409),
            ],
        ),
        (
            "POST /deliveries/{id}/deliver",
            |_, d| post_empty(&format!("/deliveries/{d}/deliver")),
            [
                (Anonymous, 401),
                (OtherCustomer, 403),
                (Owner, 403),
                (Courier, 200),
                (Admin, 409),
            ],
        ),
    ];
    // Once the order is delivered, cancelling is too late for the owner and an operator alike.
    let late: Case = (
        "POST /orders/{id}/cancel",
        |o, _| post_empty(&format!("/orders/{o}/cancel")),
        [
            (Anonymous, 401),
            (OtherCustomer, 404),
            (Owner, 409),
            (Courier, 403),
            (Admin, 409),
        ],
    );
    let mut failures = Vec::new();
    for (name, request, expected) in cases.into_iter().chain([late]) {
        if name == late.0 {
            app.wait_for_status(&id, "delivered").await;
        }
        assert_eq!(
            expected.map(|(role, _)| role),
            ROLES,
            "{name}: every role, once"
        );
        for (role, status) in expected {
            let token = token(&app, role);
            let reply = app
                .send_as_is(with_token(request(&id, &delivery), token.as_deref()))
                .await;
            if reply.status.as_u16() != status {
                failures.push(format!(
                    "{name} as {role:?}: {} (expected {status}): {}",
                    reply.status,
                    reply.text()
                ));
                continue;
            }
            match status {
                401 => {
                    reply.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
                    assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{name}");
                }
                403 => {
                    reply.problem(StatusCode::FORBIDDEN, "forbidden");
                }
                _ => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_customer_lists_only_their_own_orders_and_an_operator_everyones() {
    let app = TestApp::new();
    let owner = app.token("c-42", &[Scope::Orders]);
    let other = app.token("c-7", &[Scope::Orders]);
    let mine = app.place("KR").await;
    let theirs = app
        .send(with_token(
            post("/orders", &order_body("JP"), None),
            Some(&other),
        ))
        .await
        .json();
    assert_eq!(mine["customer_id"], "c-42");
    assert_eq!(
        theirs["customer_id"], "c-7",
        "the customer is the token's subject"
    );
    let ids = |page: Value| -> Vec<Value> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["id"].clone())
            .collect()
    };
    let as_owner = app
        .send(with_token(get("/orders"), Some(&owner)))
        .await
        .json();
    assert_eq!(ids(as_owner), [mine["id"].clone()]);
    let as_other = app
        .send(with_token(get("/orders"), Some(&other)))
        .await
        .json();
    assert_eq!(ids(as_other), [theirs["id"].clone()]);
    let admin = app.token("ops-1", &[Scope::Admin]);
    let as_admin = app
        .send(with_token(get("/orders"), Some(&admin)))
        .await
        .json();
    assert_eq!(ids(as_admin), [mine["id"].clone(), theirs["id"].clone()]);
}

#[tokio::test]
async fn a_customer_id_in_the_body_is_refused() {
    let app = TestApp::new();
    let mut body = order_body("KR");
    body["customer_id"] = "c-1".into();
    let reply = app.post("/orders", &body).await;
    reply.problem(StatusCode::BAD_REQUEST, "malformed-body");
}

#[tokio::test]
async fn another_customers_idempotency_key_does_not_replay_their_order() {
    let app = TestApp::new();
    let other = app.token("c-7", &[Scope::Orders]);
    let first = app
        .send(post("/orders", &order_body("KR"), Some("shared-key")))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app
        .send(with_token(
            post("/orders", &order_body("KR"), Some("shared-key")),
            Some(&other),
        ))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text());
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_ne!(first.json()["id"], second.json()["id"]);
    assert_eq!(second.json()["customer_id"], "c-7");
}

#[tokio::test]
async fn tokens_not_valid_here_are_refused_with_a_reason() {
    let app = TestApp::new();
    let stranger = DevKey::generate()
        .mint("c-42", &[Scope::Orders], Duration::from_secs(60))
        .expect("token");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |iss: &str, aud: &str, exp: u64| json!({ "iss": iss, "aud": aud, "sub": "c-42", "scope": "orders", "exp": exp });
    let cases = [
        ("Bearer not-a-jwt".to_owned(), "not valid here"),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l".to_owned(), "must be `Bearer <token>`"),
        ("Bearer ".to_owned(), "must be `Bearer <token>`"),
        (format!("Bearer {stranger}"), "key this service does not know"),
        // Past the 30 s leeway.
        (format!("Bearer {}", app.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now - 120))), "expired"),
        (format!("Bearer {}", app.sign(&claims("https://other.example", DEV_AUDIENCE, now + 60))), "someone else"),
        (format!("Bearer {}", app.sign(&claims(DEV_ISSUER, "another-api", now + 60))), "someone else"),
        (format!("Bearer {}", app.sign(&json!({ "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "scope": "orders", "exp": now + 60 }))), "not valid here"),
        // Unsigned ("alg": "none") with the header of a real key.
        (format!("Bearer {}", unsigned(&app.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now + 60)))), "not valid here"),
    ];
    for (authorization, reason) in cases {
        let request = Request::get("/orders")
            .header(header::AUTHORIZATION, &authorization)
            .body(Body::empty())
            .expect("request");
        let reply = app.send_as_is(request).await;
        let problem = reply.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(
            problem["detail"].as_str().expect("detail").contains(reason),
            "{authorization}: {problem}"
        );
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer"))
        );
    }
}

#[tokio::test]
async fn public_endpoints_need_no_token() {
    let app = TestApp::new();
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/docs",
    ] {
        let reply = app.send_as_is(get(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_declares_the_bearer_scheme_and_its_answers() {
    let app = TestApp::new();
    let doc = app.send_as_is(get("/openapi.json")).await.json();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            // A waiting room's figures (and its page) are public.
            let public = path.starts_with("/health")
                || path == "/metrics"
                || (path == "/waiting-rooms/{room}" && method == "get");
            assert_eq!(
                operation.get("security").is_none(),
                public,
                "{method} {path}"
            );
            if !public {
                secured += 1;
                for status in ["401", "403"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert_eq!(secured, 19);
    assert_eq!(
        doc["paths"]["/orders"]["post"]["security"],
        serde_json::json!([{ "bearer": ["orders"] }])
    );
}

#[tokio::test]
async fn cors_is_closed_by_default_and_open_to_configured_origins_only() {
    let preflight = |origin: &str| {
        Request::options("/orders")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .expect("request")
    };
    let closed = TestApp::new();
    let reply = closed.send_as_is(preflight("https://evil.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);

    let open = TestApp::with(Options {
        cors_origins: &["https://shop.example"],
        ..Options::default()
    });
    let reply = open.send_as_is(preflight("https://shop.example")).await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(
        reply
            .header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    assert_eq!(reply.header("access-control-allow-credentials"), None);
    let reply = open.send_as_is(preflight("https://evil.example")).await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

/// A cross-site form can send `text/plain` and no `Authorization`: it gets 401 before anything
/// else is looked at.
#[tokio::test]
async fn a_cross_site_form_post_places_nothing() {
    let app = TestApp::new();
    let request = Request::post("/orders")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(order_body("KR").to_string()))
        .expect("request");
    app.send_as_is(request)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        app.order_store.row_counts().await.outbox,
        0,
        "nothing was placed"
    );
}

/// The token with its header's `alg` set to `none` and its signature removed.
fn unsigned(token: &str) -> String {
    let mut parts = token.split('.');
    let _header = parts.next().expect("header");
    let claims = parts.next().expect("claims");
    // {"alg":"none","typ":"JWT"}
    format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.")
}

/// An issuer that rotates its keys: the JWK Set is fetched again when a token names a key the
/// service does not hold, and no more than that (a forged kid does not make it fetch again).
#[tokio::test]
async fn keys_rotate_through_the_jwks_url_by_kid() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use ordership_http::auth::{Authenticator, KeyRing};

    let (old, new, forged) = (DevKey::generate(), DevKey::generate(), DevKey::generate());
    let published = Arc::new(Mutex::new(json!({ "keys": [old.jwk()] })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let issuer = {
        let (published, fetches) = (Arc::clone(&published), Arc::clone(&fetches));
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let set = published.lock().expect("lock").clone();
                async move { axum::Json(set) }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, issuer).await });

    let keys = KeyRing::from_jwks_url(&url)
        .await
        .expect("the set is fetched");
    let service = Authenticator::new(keys, DEV_ISSUER, DEV_AUDIENCE);
    let token = |key: &DevKey| {
        key.mint("c-42", &[Scope::Orders], Duration::from_secs(60))
            .expect("token")
    };
    assert!(service.verify(&token(&old)).await.is_ok());
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // The issuer publishes its next key and starts signing with it.
    published.lock().expect("lock")["keys"] = json!([old.jwk(), new.jwk()]);
    assert!(
        service.verify(&token(&new)).await.is_ok(),
        "the new kid made the service fetch the set"
    );
    assert!(
        service.verify(&token(&old)).await.is_ok(),
        "the old key still verifies"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A kid nobody published: refused, and the set is not fetched again for it.
    assert!(service.verify(&token(&forged)).await.is_err());
    assert!(service.verify(&token(&forged)).await.is_err());
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// A service configured with an issuer's JWK Set file refuses tokens of other issuers' keys and
/// of the right key for another audience.
#[tokio::test]
async fn a_jwks_file_verifies_its_issuers_tokens_only() {
    use ordership_http::auth::{Authenticator, KeyRing};

    let issuer = DevKey::generate();
    let file = std::env::temp_dir().join(format!("ordership-jwks-{}.json", std::process::id()));
    std::fs::write(&file, json!({ "keys": [issuer.jwk()] }).to_string()).expect("write");
    let keys = KeyRing::from_jwks_file(&file).expect("a JWK Set");
    std::fs::remove_file(&file).expect("remove");
    let service = Authenticator::new(keys, DEV_ISSUER, "orders-api");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |aud: &str| json!({ "iss": DEV_ISSUER, "aud": aud, "sub": "c-1", "scope": "orders admin", "exp": now + 60 });
    let caller = service
        .verify(&issuer.sign(&claims("orders-api")).expect("token"))
        .await
        .expect("valid");
    assert_eq!(caller.subject(), "c-1");
    assert!(caller.has(Scope::Orders) && caller.has(Scope::Admin) && !caller.has(Scope::Courier));
    assert!(
        service
            .verify(&issuer.sign(&claims("another-api")).expect("token"))
            .await
            .is_err()
    );
    let stranger = DevKey::generate()
        .sign(&claims("orders-api"))
        .expect("token");
    assert!(service.verify(&stranger).await.is_err());
    assert!(matches!(
        KeyRing::from_jwks(br#"{"keys": []}"#),
        Err(ordership_http::auth::KeyError::NoKeys)
    ));
    assert!(
        KeyRing::from_jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err(),
        "no shared secrets"
    );
}
