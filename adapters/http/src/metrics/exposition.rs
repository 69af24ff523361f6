//! The Prometheus text exposition format: metric families, their samples, and how they render.

use std::fmt::Write as _;

use async_trait::async_trait;
use ordership_application::monitoring::HistogramSnapshot;

pub(crate) type Labels = Vec<(&'static str, String)>;

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The samples of a family: plain values, or histograms.
#[derive(Debug, Clone)]
pub enum Samples {
    Values(Vec<(Labels, f64)>),
    Histograms(Vec<(Labels, HistogramSnapshot)>),
}

/// One metric family computed by a [`MetricSource`].
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Samples,
}

impl Family {
    #[must_use]
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Counter,
            samples: Samples::Values(samples),
        }
    }

    #[must_use]
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, f64)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Gauge,
            samples: Samples::Values(samples),
        }
    }

    #[must_use]
    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        samples: Vec<(Labels, HistogramSnapshot)>,
    ) -> Self {
        Self {
            name,
            help,
            kind: Kind::Histogram,
            samples: Samples::Histograms(samples),
        }
    }

    /// Appends the family in the text exposition format.
    pub(crate) fn render(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        match &self.samples {
            Samples::Values(samples) => {
                for (l, v) in samples {
                    let _ = writeln!(out, "{}{} {v}", self.name, labels(l));
                }
            }
            Samples::Histograms(samples) => {
                for (l, h) in samples {
                    let bounds = h
                        .buckets
                        .iter()
                        .map(|(bound, n)| (bound.to_string(), *n))
                        .chain([("+Inf".to_owned(), h.count)]);
                    for (le, n) in bounds {
                        let mut with_le = l.clone();
                        with_le.push(("le", le));
                        let _ = writeln!(out, "{}_bucket{} {n}", self.name, labels(&with_le));
                    }
                    let _ = writeln!(out, "{}_sum{} {}", self.name, labels(l), h.sum_seconds);
                    let _ = writeln!(out, "{}_count{} {}", self.name, labels(l), h.count);
                }
            }
        }
    }
}

/// Computes metric families at scrape time.
#[async_trait]
pub trait MetricSource: Send + Sync {
    async fn collect(&self) -> Vec<Family>;
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}
