//! CloudEvents 1.0 in Kafka's binary content mode: the message's attributes travel as `ce_*`
//! headers, its JSON `data` as the record value, and the order id as the record key.

use chrono::{DateTime, Utc};
use ordership_domain::{Message, MessageId};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

pub(crate) const SPEC_VERSION: &str = "1.0";

/// The record headers of `message`.
pub fn headers(message: &Message) -> OwnedHeaders {
    let id = message.id.to_string();
    let time = message
        .occurred_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let correlation = message.correlation_id.to_string();
    let causation = message.causation_id.map(|c| c.to_string());
    let mut headers = OwnedHeaders::new_with_capacity(10)
        .insert(Header {
            key: "ce_specversion",
            value: Some(SPEC_VERSION),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(id.as_str()),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(message.message_type.as_str()),
        })
        .insert(Header {
            key: "ce_source",
            value: Some(message.source.as_str()),
        })
        .insert(Header {
            key: "ce_subject",
            value: Some(message.key.as_str()),
        })
        .insert(Header {
            key: "ce_time",
            value: Some(time.as_str()),
        })
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "correlation_id",
            value: Some(correlation.as_str()),
        });
    if let Some(causation) = &causation {
        headers = headers.insert(Header {
            key: "causation_id",
            value: Some(causation.as_str()),
        });
    }
    if let Some(traceparent) = &message.traceparent {
        headers = headers.insert(Header {
            key: "traceparent",
            value: Some(traceparent.as_str()),
        });
    }
    headers
}

/// Why a record is not an ordership message. Permanent: the record goes to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("header {0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error("unsupported CloudEvents specversion {0}")]
    SpecVersion(String),
    #[error("the value is not JSON: {0}")]
    Payload(String),
}

/// Decodes a record (topic, key, headers, value) into a message.
///
/// # Errors
/// Missing or malformed CloudEvents attributes, or a value that is not JSON.
pub fn decode(
    topic: &str,
    key: Option<&[u8]>,
    headers: Option<&impl Headers>,
    payload: Option<&[u8]>,
) -> Result<Message, DecodeError> {
    let header = |name: &'static str| -> Result<Option<String>, DecodeError> {
        let Some(headers) = headers else {
            return Ok(None);
        };
        for h in headers.iter() {
            if h.key == name {
                let value = h.value.unwrap_or_default();
                return String::from_utf8(value.to_vec())
                    .map(Some)
                    .map_err(|e| DecodeError::Invalid(name, e.to_string()));
            }
        }
        Ok(None)
    };
    let required = |name: &'static str| header(name)?.ok_or(DecodeError::Missing(name));
    let uuid = |name: &'static str, value: &str| {
        Uuid::parse_str(value).map_err(|e| DecodeError::Invalid(name, e.to_string()))
    };

    let spec = required("ce_specversion")?;
    if !spec.starts_with("1.") {
        return Err(DecodeError::SpecVersion(spec));
    }
    let id = required("ce_id")?;
    let time = required("ce_time")?;
    let occurred_at = DateTime::parse_from_rfc3339(&time)
        .map_err(|e| DecodeError::Invalid("ce_time", e.to_string()))?
        .with_timezone(&Utc);
    let correlation = required("correlation_id")?;
    let causation = header("causation_id")?;
    let key = match key {
        Some(k) => {
            String::from_utf8(k.to_vec()).map_err(|e| DecodeError::Invalid("key", e.to_string()))?
        }
        None => header("ce_subject")?.unwrap_or_default(),
    };
    let payload = serde_json::from_slice(payload.unwrap_or(b"null"))
        .map_err(|e| DecodeError::Payload(e.to_string()))?;
    Ok(Message {
        id: MessageId::from_uuid(uuid("ce_id", &id)?),
        topic: topic.to_owned(),
        key,
        message_type: required("ce_type")?,
        source: required("ce_source")?,
        payload,
        correlation_id: uuid("correlation_id", &correlation)?,
        causation_id: causation
            .map(|c| uuid("causation_id", &c).map(MessageId::from_uuid))
            .transpose()?,
        traceparent: header("traceparent")?,
        occurred_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_round_trip_through_record_headers() {
        let message = Message {
            id: MessageId::from_uuid(Uuid::now_v7()),
            topic: "ordership.delivery.commands".into(),
            key: "order-1".into(),
            message_type: "ordership.delivery.schedule.v1".into(),
            source: "/ordership/order-service".into(),
            payload: serde_json::json!({ "order_id": "x" }),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(MessageId::from_uuid(Uuid::now_v7())),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            occurred_at: Utc::now().trunc_subsecs(6),
        };
        let headers = headers(&message);
        let payload = serde_json::to_vec(&message.payload).expect("json");
        let decoded = decode(
            &message.topic,
            Some(message.key.as_bytes()),
            Some(&headers),
            Some(&payload),
        )
        .expect("decodes");
        assert_eq!(decoded, message);
    }

    #[test]
    fn a_record_without_cloudevents_headers_is_undecodable() {
        let none: Option<&OwnedHeaders> = None;
        assert!(matches!(
            decode("t", None, none, Some(b"{}")),
            Err(DecodeError::Missing("ce_specversion"))
        ));
    }

    use chrono::SubsecRound;
}
