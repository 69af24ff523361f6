//! The OpenAPI document: the paths of each service this process serves, the bearer scheme with
//! its 401/403 answers, and the answers many operations share (problem+json bodies, `Retry-After`)
//! as reusable responses.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::orders::{events as order_events, read as order_reads};
use crate::problem::{self, PROBLEM_JSON, Problem};
use crate::responses::{BadRoomId, NoSuchRoom, NotJson, NotUuid, RateLimited, Unavailable};
use crate::{deliveries, ops, orders, sagas, waiting_room};

#[derive(OpenApi)]
#[openapi(
    info(title = "ordership", description = "Orders and deliveries kept consistent by an orchestrated saga, a transactional outbox and idempotent consumers."),
    paths(ops::live, ops::ready, ops::metrics),
    components(
        schemas(Problem, problem::FieldError),
        responses(Unavailable, NotUuid, BadRoomId, NotJson, NoSuchRoom, RateLimited)
    ),
    tags((name = "orders", description = "The order service"),
        (name = "deliveries", description = "The delivery service"),
        (name = "operations", description = "Health and metrics")),
)]
struct BaseDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        orders::place_order,
        order_reads::get_order,
        orders::list_orders,
        orders::cancel_order,
        order_events::order_events
    ),
    components(schemas(orders::StatusParam, order_events::OrderUpdateEvent))
)]
struct OrderDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        sagas::list_sagas,
        sagas::get_saga,
        sagas::retry_saga,
        sagas::compensate_saga
    ),
    components(schemas(sagas::SagaStateParam)),
    tags((name = "sagas", description = "Saga operations for operators: list by state and age, history, retry, force compensation"))
)]
struct SagaDoc;

#[derive(OpenApi)]
#[openapi(paths(
    deliveries::get_delivery,
    deliveries::find_deliveries,
    deliveries::ship,
    deliveries::deliver
))]
struct DeliveryDoc;

#[derive(OpenApi)]
#[openapi(
    paths(
        waiting_room::join,
        waiting_room::my_entry,
        waiting_room::my_events,
        waiting_room::leave,
        waiting_room::get_room,
        waiting_room::put_room,
        waiting_room::delete_room
    ),
    tags((name = "waiting rooms", description = "Flash-sale waiting rooms: buyers of a gated product queue, are admitted at the room's rate, and order with their admission token"))
)]
struct WaitingRoomDoc;

/// The bearer scheme, and its 401 and 403 answers on every operation that needs a token.
fn document_security(doc: &mut utoipa::openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `iss`, `aud`, `exp`, `sub` and a space-separated `scope`: \
                         `orders` (a customer, `sub` is the customer id), `courier`, `admin`. \
                         Each operation lists the scopes that may call it; any one is enough.",
                    ))
                    .build(),
            ),
        );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let unauthorized = problem(
        "No bearer token, or one not valid here (signature, expiry, issuer, audience, unknown key)",
    );
    let forbidden = problem("The token lacks the scope this operation needs");
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                let responses = &mut operation.responses.responses;
                responses.insert("401".into(), unauthorized.clone().into());
                responses.insert("403".into(), forbidden.clone().into());
            }
        }
    }
}

/// The document as JSON. utoipa 5.5 writes a link's `operationId` and `operationRef` in snake
/// case, which OpenAPI tools do not recognise; they are renamed here. The event stream's schema
/// is completed here too.
pub(crate) fn to_json(doc: &utoipa::openapi::OpenApi) -> String {
    let Ok(mut json) = serde_json::to_value(doc) else {
        return "{}".to_owned();
    };
    let links = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    document_event_stream(
        &mut json,
        "/waiting-rooms/{room}/entries/me/events",
        &[
            "position",
            "admitted",
            "expired",
            "left",
            "unavailable",
            "error",
        ],
        "EntryResponse",
    );
    document_event_stream(
        &mut json,
        "/orders/{id}/events",
        &["order", "error"],
        "OrderUpdateEvent",
    );
    json.to_string()
}

/// An event stream's schema: one event (`event`, an optional `id`, and JSON `data` of `schema`
/// or a problem), as tools read Server-Sent Events schemas. utoipa writes no `contentSchema`, so
/// it is set in the document's JSON.
fn document_event_stream(doc: &mut serde_json::Value, path: &str, events: &[&str], schema: &str) {
    let pointer = format!(
        "/paths/{}/get/responses/200/content/text~1event-stream",
        path.replace('~', "~0").replace('/', "~1")
    );
    let Some(content) = doc
        .pointer_mut(&pointer)
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    content.insert(
        "schema".to_owned(),
        serde_json::json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": { "type": "string", "enum": events },
                "id": { "type": "string" },
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "oneOf": [
                            { "$ref": format!("#/components/schemas/{schema}") },
                            { "$ref": "#/components/schemas/Problem" }
                        ]
                    }
                }
            }
        }),
    );
}

/// The document of the services that run.
pub(crate) fn document(
    orders: bool,
    deliveries: bool,
    waiting_rooms: bool,
) -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    if orders {
        doc.merge(OrderDoc::openapi());
        doc.merge(SagaDoc::openapi());
    }
    if deliveries {
        doc.merge(DeliveryDoc::openapi());
    }
    if waiting_rooms {
        doc.merge(WaitingRoomDoc::openapi());
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_security(&mut doc);
    doc
}
