//! Prometheus metrics: request counts by route and status, queue depth, batch sizes, tokens,
//! and latency histograms (request, queue wait, inference), in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A histogram with fixed upper bounds (cumulative on output, as Prometheus wants).
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
const TOKENS: &[f64] = &[
    16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
];

/// Every metric the server keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_seconds: Histogram,
    queue_seconds: Histogram,
    inference_seconds: Histogram,
    batch_inputs: Histogram,
    batch_tokens: Histogram,
    tokens: AtomicU64,
    inputs: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            request_seconds: Histogram::new(SECONDS),
            queue_seconds: Histogram::new(SECONDS),
            inference_seconds: Histogram::new(SECONDS),
            batch_inputs: Histogram::new(SIZES),
            batch_tokens: Histogram::new(TOKENS),
            tokens: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
        }
    }

    /// One finished request on `route` with `status`, after `elapsed`.
    pub(crate) fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route.to_string(), status)).or_insert(0) += 1;
        }
        self.request_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn observe_queue_time(&self, waited: Duration) {
        self.queue_seconds.observe(waited.as_secs_f64());
    }

    pub(crate) fn observe_inference(&self, took: Duration) {
        self.inference_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_batch(&self, inputs: usize, tokens: usize) {
        self.batch_inputs.observe(inputs as f64);
        self.batch_tokens.observe(tokens as f64);
        self.inputs.fetch_add(inputs as u64, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// The text exposition of every metric, with the current `queue_depth` and the requests
    /// `in_flight`.
    pub(crate) fn render(&self, queue_depth: usize, in_flight: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP sbert_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE sbert_requests_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((route, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "sbert_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let gauges = [
            (
                "sbert_queue_depth",
                "Requests waiting for the batching thread.",
                queue_depth,
            ),
            (
                "sbert_requests_in_flight",
                "Requests accepted and not yet answered.",
                in_flight,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let counters = [
            (
                "sbert_embedded_inputs_total",
                "Inputs embedded.",
                &self.inputs,
            ),
            (
                "sbert_embedded_tokens_total",
                "Tokens embedded.",
                &self.tokens,
            ),
        ];
        for (name, help, v) in counters {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        self.request_seconds.render(
            &mut out,
            "sbert_request_duration_seconds",
            "Time from a request's arrival to its answer.",
        );
        self.queue_seconds.render(
            &mut out,
            "sbert_queue_duration_seconds",
            "Time a request waited for its batch.",
        );
        self.inference_seconds.render(
            &mut out,
            "sbert_inference_duration_seconds",
            "Encoder time per batch.",
        );
        self.batch_inputs
            .render(&mut out, "sbert_batch_size", "Inputs per encoder batch.");
        self.batch_tokens
            .render(&mut out, "sbert_batch_tokens", "Tokens per encoder batch.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let m = Metrics::new();
        m.observe_request("/embed", 200, Duration::from_millis(3));
        m.observe_request("/embed", 200, Duration::from_millis(30));
        m.observe_request("/embed", 429, Duration::from_micros(10));
        m.observe_batch(8, 100);
        let text = m.render(2, 1);
        assert!(
            text.contains("sbert_requests_total{route=\"/embed\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("sbert_requests_total{route=\"/embed\",status=\"429\"} 1"));
        assert!(
            text.contains("sbert_request_duration_seconds_bucket{le=\"0.005\"} 2"),
            "{text}"
        );
        assert!(text.contains("sbert_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("sbert_batch_size_bucket{le=\"8\"} 1"));
        assert!(
            text.contains("sbert_queue_depth 2") && text.contains("sbert_requests_in_flight 1")
        );
        assert!(text.contains("sbert_embedded_tokens_total 100"));
    }
}
