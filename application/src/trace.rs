//! Trace context across the saga's processes, without the application knowing OpenTelemetry.
//!
//! A message carries the W3C `traceparent` of the span that wrote it; a consumer's handling span
//! continues it, and a relay's publish span links to the contexts of its batch. What a context
//! *is* belongs to the tracing backend the binary installs once at start ([`install`]); the
//! application and the driving adapters only ask through these functions — the same global
//! arrangement OpenTelemetry's own propagators use. With nothing installed, [`current`] is `None`
//! and messages carry a context derived from their saga.

use std::sync::OnceLock;

/// What a tracing backend offers the application.
pub trait TraceContext: Send + Sync {
    /// The `traceparent` of the current span, when traces are recorded.
    fn current(&self) -> Option<String>;
    /// Makes `span`, not yet entered, a child of the context in `traceparent`.
    fn continue_from(&self, span: &tracing::Span, traceparent: &str);
    /// Links `span` to the context in `traceparent`.
    fn link(&self, span: &tracing::Span, traceparent: &str);
}

static BACKEND: OnceLock<Box<dyn TraceContext>> = OnceLock::new();

/// Installs the tracing backend; the first call wins (a second one is ignored and says so).
pub fn install(backend: Box<dyn TraceContext>) -> bool {
    BACKEND.set(backend).is_ok()
}

/// The `traceparent` of the current span, when a backend records traces.
#[must_use]
pub fn current() -> Option<String> {
    BACKEND.get().and_then(|backend| backend.current())
}

/// Makes `span` a child of `traceparent` (from a message or a request), when a backend records
/// traces.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let (Some(backend), Some(traceparent)) = (BACKEND.get(), traceparent) {
        backend.continue_from(span, traceparent);
    }
}

/// Links `span` to `traceparent`, when a backend records traces.
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if let (Some(backend), Some(traceparent)) = (BACKEND.get(), traceparent) {
        backend.link(span, traceparent);
    }
}
