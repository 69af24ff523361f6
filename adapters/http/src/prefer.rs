//! `Prefer: wait=N` (RFC 7240): how long a client is willing to wait for an answer that may
//! change — a long poll of an order, or an order placed and answered once settled.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};

/// The longest wait honoured; a longer one is cut to this.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// The response header that says a preference was honoured.
pub(crate) const PREFERENCE_APPLIED: &str = "preference-applied";

/// The wait the client prefers, at most [`MAX_WAIT`]; `None` if it asked for none. Preferences
/// that are malformed or not understood are ignored, as RFC 7240 asks.
pub(crate) fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            // A preference may carry parameters after `;`: only the token and value matter.
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let seconds: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(Duration::from_secs(seconds).min(MAX_WAIT))
        })
}

/// `Preference-Applied: wait=N`.
pub(crate) fn wait_applied(wait: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("wait={}", wait.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("wait"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_of(values: &[&str]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("prefer", HeaderValue::from_str(v).expect("header"));
        }
        preferred_wait(&headers)
    }

    #[test]
    fn the_wait_is_read_among_other_preferences_and_capped() {
        assert_eq!(wait_of(&["wait=5"]), Some(Duration::from_secs(5)));
        assert_eq!(
            wait_of(&["return=minimal, Wait = 7"]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            wait_of(&["respond-async", "wait=3"]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(wait_of(&["wait=3600"]), Some(MAX_WAIT));
        assert_eq!(wait_of(&["wait=\"2\"; x=y"]), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_malformed_or_absent_wait_is_ignored() {
        assert_eq!(wait_of(&[]), None);
        assert_eq!(wait_of(&["wait=soon"]), None);
        assert_eq!(wait_of(&["wait=-1"]), None);
        assert_eq!(wait_of(&["waiting=3"]), None);
    }
}
