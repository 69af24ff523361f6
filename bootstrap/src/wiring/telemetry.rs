//! Logs and traces. Logs with `tracing`: human-readable by default, JSON lines for machines.
//! Traces with OpenTelemetry, exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and configured by the standard `OTEL_*`
//! variables (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` by default, or `http/json`;
//! `OTEL_SERVICE_NAME`; `OTEL_BSP_SCHEDULE_DELAY`…); off otherwise. The spans are the
//! application's `tracing` spans; the W3C Trace Context carries them across HTTP and messages
//! (`ordership_application::trace`).

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use ordership_application::trace::TraceContext;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::cli::LogFormat;

/// Keeps the trace exporter alive; dropping it flushes the spans not yet exported.
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "spans not exported at exit");
        }
    }
}

/// Whether the environment asks for traces.
fn traces_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP trace exporter cannot be built: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// W3C Trace Context between `tracing` spans and `traceparent` strings.
struct W3c(TraceContextPropagator);

impl W3c {
    fn extract(&self, traceparent: &str) -> opentelemetry::Context {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        self.0.extract(&carrier)
    }
}

impl TraceContext for W3c {
    fn current(&self) -> Option<String> {
        let mut carrier = HashMap::new();
        self.0
            .inject_context(&tracing::Span::current().context(), &mut carrier);
        carrier.remove("traceparent")
    }

    fn continue_from(&self, span: &tracing::Span, traceparent: &str) {
        let parent = self.extract(traceparent);
        if parent.span().span_context().is_valid() {
            // Fails only once the span has started, which the callers never let happen.
            let _ = span.set_parent(parent);
        }
    }

    fn link(&self, span: &tracing::Span, traceparent: &str) {
        span.add_link(self.extract(traceparent).span().span_context().clone());
    }
}

/// Installs the global subscriber: logs, and traces when the environment asks for them.
/// `RUST_LOG` overrides the default filter. Logs go to standard output, or to standard error for
/// commands whose output is their result (`load --json`). `service` names the process in traces
/// unless `OTEL_SERVICE_NAME` does.
#[must_use]
pub fn init(format: LogFormat, to_stderr: bool, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs = match format {
        LogFormat::Pretty => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let (provider, problem) = if traces_wanted() {
        match tracer_provider(service) {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("ordership")));
    // A second init (in tests) is harmless: the first subscriber stays.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if let Some(problem) = problem {
        tracing::warn!(%problem, "traces are not exported");
    }
    if installed && provider.is_some() {
        ordership_application::trace::install(Box::new(W3c(TraceContextPropagator::new())));
        tracing::info!(service, "exporting traces over OTLP/HTTP");
    }
    Telemetry { traces: provider }
}
