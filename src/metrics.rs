//! Prometheus metrics in atomics and small maps: cheap enough to leave on. Rendered by
//! `/metrics` (see `http::metrics`).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// A cumulative histogram with fixed bucket bounds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric of the process.
pub struct Metrics {
    /// Client events handled, by event and outcome (`ok` or the error code).
    events_in: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Server events broadcast, by event.
    broadcasts: Mutex<HashMap<&'static str, u64>>,
    /// `message.new` deliveries to this instance's sockets.
    pub deliveries: AtomicU64,
    /// Failed calls to a dependency, by dependency.
    dependency_errors: Mutex<HashMap<&'static str, u64>>,
    /// Messages per group-commit transaction.
    pub batch_size: Histogram,
    /// Duration of a group-commit transaction.
    pub commit_seconds: Histogram,
    /// From a `message.send` arriving to its ack.
    pub send_seconds: Histogram,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    events_in: Mutex::new(HashMap::new()),
    broadcasts: Mutex::new(HashMap::new()),
    deliveries: AtomicU64::new(0),
    dependency_errors: Mutex::new(HashMap::new()),
    batch_size: Histogram::new(SIZES),
    commit_seconds: Histogram::new(SECONDS),
    send_seconds: Histogram::new(SECONDS),
});

fn bump<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u64>>, key: K, n: u64) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_insert(0) += n;
    }
}

impl Metrics {
    pub fn event_in(&self, event: &'static str, outcome: &'static str) {
        bump(&self.events_in, (event, outcome), 1);
    }

    pub fn broadcast(&self, event: &'static str) {
        bump(&self.broadcasts, event, 1);
    }

    pub fn dependency_error(&self, dependency: &'static str) {
        bump(&self.dependency_errors, dependency, 1);
    }

    /// The Prometheus text exposition of everything above.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP banter_events_in_total Client events handled, by event and outcome.\n\
             # TYPE banter_events_in_total counter"
        );
        if let Ok(m) = self.events_in.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for ((event, outcome), n) in rows {
                let _ = writeln!(
                    out,
                    "banter_events_in_total{{event=\"{event}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP banter_broadcasts_total Server events broadcast to rooms, by event.\n\
             # TYPE banter_broadcasts_total counter"
        );
        if let Ok(m) = self.broadcasts.lock() {
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort();
            for (event, n) in rows {
                let _ = writeln!(out, "banter_broadcasts_total{{event=\"{event}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP banter_message_deliveries_total message.new events handed to this instance's sockets.\n\
             # TYPE banter_message_deliveries_total counter\n\
             banter_message_deliveries_total {}",
            self.deliveries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP banter_dependency_errors_total Failed calls to Postgres (database) or Redis.\n\
             # TYPE banter_dependency_errors_total counter"
        );
        for dependency in ["database", "redis"] {
            let n = self
                .dependency_errors
                .lock()
                .ok()
                .and_then(|m| m.get(dependency).copied())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "banter_dependency_errors_total{{dependency=\"{dependency}\"}} {n}"
            );
        }
        self.batch_size.render(
            out,
            "banter_commit_batch_size",
            "Messages stored per group-commit transaction.",
        );
        self.commit_seconds.render(
            out,
            "banter_commit_seconds",
            "Duration of a group-commit transaction.",
        );
        self.send_seconds.render(
            out,
            "banter_send_ack_seconds",
            "From a message.send arriving to its ack.",
        );
    }
}
