use axum::http::StatusCode;
use serde_json::json;

use crate::app::TestApp;

async fn confirmed_delivery(app: &TestApp) -> (String, String) {
    let id = app.place("KR").await["id"].as_str().expect("id").to_owned();
    let order = app.wait_for_status(&id, "confirmed").await;
    (
        id,
        order["delivery_id"].as_str().expect("delivery").to_owned(),
    )
}

#[tokio::test]
async fn a_delivery_is_found_by_id_and_by_order() {
    let app = TestApp::new();
    let (order_id, delivery_id) = confirmed_delivery(&app).await;
    let delivery = app.get(&format!("/deliveries/{delivery_id}")).await.json();
    assert_eq!(delivery["order_id"], order_id.as_str());
    assert_eq!(delivery["status"], "scheduled");
    assert!(delivery["eta"].is_string());
    let found = app
        .get(&format!("/deliveries?order_id={order_id}"))
        .await
        .json();
    assert_eq!(found["items"][0]["id"], delivery_id.as_str());
    let none = app
        .get("/deliveries?order_id=01890a5d-ac96-774b-bcce-b302099a8057")
        .await
        .json();
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn shipping_and_delivering_move_the_order_along() {
    let app = TestApp::new();
    let (order_id, delivery_id) = confirmed_delivery(&app).await;
    let shipped = app
        .post(&format!("/deliveries/{delivery_id}/ship"), &json!({}))
        .await;
    assert_eq!(shipped.json()["status"], "shipped");
    app.wait_for_status(&order_id, "shipped").await;
    let delivered = app
        .post(&format!("/deliveries/{delivery_id}/deliver"), &json!({}))
        .await;
    assert_eq!(delivered.json()["status"], "delivered");
    let order = app.wait_for_status(&order_id, "delivered").await;
    assert_eq!(order["version"], 4);
}

#[tokio::test]
async fn invalid_delivery_transitions_are_conflicts() {
    let app = TestApp::new();
    let (_, delivery_id) = confirmed_delivery(&app).await;
    app.post(&format!("/deliveries/{delivery_id}/deliver"), &json!({}))
        .await
        .problem(StatusCode::CONFLICT, "conflict");
    app.post(&format!("/deliveries/{delivery_id}/ship"), &json!({}))
        .await;
    app.post(&format!("/deliveries/{delivery_id}/ship"), &json!({}))
        .await
        .problem(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn unknown_deliveries_and_bad_order_ids_are_reported() {
    let app = TestApp::new();
    app.get("/deliveries/01890a5d-ac96-774b-bcce-b302099a8057")
        .await
        .problem(StatusCode::NOT_FOUND, "not-found");
    app.post("/deliveries/nope/ship", &json!({}))
        .await
        .problem(StatusCode::BAD_REQUEST, "bad-parameter");
    for query in ["?order_id=nope", "?order_id=", ""] {
        let p = app
            .get(&format!("/deliveries{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST, "bad-parameter");
        assert_eq!(p["errors"][0]["field"], "order_id", "{query}");
    }
}
