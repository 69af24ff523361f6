//! A buyer's event stream (`GET /waiting-rooms/{room}/entries/me/events`), read as
//! Server-Sent Events: one open connection per waiting buyer instead of a poll every second.

use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Uri};
use serde_json::Value;

use crate::load::HttpClient;

/// An open event stream.
pub(super) struct Events {
    body: Incoming,
    /// What arrived and is not yet a whole event.
    pending: String,
}

/// What opening a stream got: the stream, or the server's answer instead of one.
pub(super) enum Opened {
    Stream(Events),
    Refused(u16, Value),
}

/// One event: its name and its data (JSON; `null` when it is not).
pub(super) type Event = (String, Value);

/// Opens the stream at `uri` as the buyer with `token`, waiting at most `timeout` for the answer.
pub(super) async fn open(
    client: &HttpClient,
    uri: &Uri,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<Opened> {
    let request = Request::get(uri.clone())
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))?;
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .context("no answer to opening the event stream")??;
    let status = response.status().as_u16();
    if status == 200 {
        return Ok(Opened::Stream(Events {
            body: response.into_body(),
            pending: String::new(),
        }));
    }
    let bytes = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .context("no whole answer to opening the event stream")??
        .to_bytes();
    Ok(Opened::Refused(
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

impl Events {
    /// The next event, `None` once the server ended the stream. Comments (keep-alives) are
    /// skipped.
    pub(super) async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Ok(Some(event));
                }
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            if let Ok(data) = frame?.into_data() {
                self.pending.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

/// One event block: `event:` names it, `data:` lines carry it; a block of comments only is
/// nothing.
fn parse(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    if name.is_none() && data.is_none() {
        return None;
    }
    let data = data.map_or(Value::Null, |d| {
        serde_json::from_str(&d).unwrap_or(Value::Null)
    });
    Some((name.unwrap_or_else(|| "message".to_owned()), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_their_data_is_json_and_comments_are_nothing() {
        assert_eq!(
            parse("event: position\ndata: {\"position\":3}\n\n"),
            Some(("position".to_owned(), serde_json::json!({"position": 3})))
        );
        assert_eq!(parse(":\n\n"), None, "a keep-alive");
        assert_eq!(
            parse("data: 1\ndata: 2\n\n"),
            Some(("message".to_owned(), Value::Null)),
            "two data lines join with a newline: not one JSON value"
        );
    }
}
