//! The instance's Prometheus metrics: one `prometheus-client` registry per instance, held by
//! the app (two instances in one process count separately), rendered by `/metrics` in the
//! OpenMetrics text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::AppError;

const SECONDS: [f64; 13] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const SIZES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A client event and how it ended (`ok` or the error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
    outcome: &'static str,
}

/// A server event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BroadcastLabels {
    event: &'static str,
}

/// A dependency: `database` (Postgres) or `redis`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

/// Every metric of an instance, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    events_in: Family<EventLabels, Counter>,
    broadcasts: Family<BroadcastLabels, Counter>,
    dependency_errors: Family<DependencyLabels, Counter>,
    /// `message.new` deliveries to this instance's sockets.
    pub deliveries: Counter,
    /// Sockets connected to this instance and counted in presence (shutdown waits for zero).
    pub sockets: Gauge,
    /// Deliveries dropped for slow consumers, with their rate-limited warning.
    pub drops: Drops,
    /// Messages per group-commit transaction.
    pub batch_size: Histogram,
    /// Duration of a group-commit transaction.
    pub commit_seconds: Histogram,
    /// From a `message.send` arriving to its ack.
    pub send_seconds: Histogram,
    /// Sends (and changes to messages) over the rate limit held for their turn.
    pub sends_held: Counter,
    /// Uploads whose bytes were checked and stored, and their bytes.
    pub uploads_stored: Counter,
    pub upload_bytes: Counter,
    /// What retention removed (this instance's passes).
    pub retention_messages: Counter,
    pub retention_uploads: Counter,
    /// The process's resident memory and CPU time (sampled by [`crate::ops`]).
    pub resident_bytes: Gauge,
    pub cpu_seconds: Counter<f64, AtomicU64>,
    /// 1 while this instance drains (or sheds sockets to rebalance), else 0.
    pub draining: Gauge,
    /// Sockets moved to other instances by a drain or a rebalance.
    pub sockets_moved: Counter,
    /// The weight (percent) this instance last reported to HAProxy's agent check.
    pub agent_weight: Gauge,
    /// Messages stored per channel by this instance since the last stats period (not exported:
    /// channel names are unbounded labels; the cluster page reads them).
    pub channel_messages: ChannelCounts,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            events_in: Family::default(),
            broadcasts: Family::default(),
            dependency_errors: Family::default(),
            deliveries: Counter::default(),
            sockets: Gauge::default(),
            drops: Drops::default(),
            batch_size: Histogram::new(SIZES),
            commit_seconds: Histogram::new(SECONDS),
            send_seconds: Histogram::new(SECONDS),
            sends_held: Counter::default(),
            uploads_stored: Counter::default(),
            upload_bytes: Counter::default(),
            retention_messages: Counter::default(),
            retention_uploads: Counter::default(),
            resident_bytes: Gauge::default(),
            cpu_seconds: Counter::default(),
            draining: Gauge::default(),
            sockets_moved: Counter::default(),
            agent_weight: Gauge::default(),
            channel_messages: ChannelCounts::default(),
        };
        let r = &mut m.registry;
        r.register(
            "banter_sockets",
            "Sockets connected to this instance and counted in presence",
            m.sockets.clone(),
        );
        r.register(
            "banter_deliveries_dropped",
            "Deliveries dropped because a socket's send buffer (or the Redis subscription's) was full; clients resync by seq",
            m.drops.counter.clone(),
        );
        r.register(
            "banter_events_in",
            "Client events handled, by event and outcome",
            m.events_in.clone(),
        );
        r.register(
            "banter_broadcasts",
            "Server events broadcast to rooms, by event",
            m.broadcasts.clone(),
        );
        r.register(
            "banter_message_deliveries",
            "message.new events handed to this instance's sockets",
            m.deliveries.clone(),
        );
        r.register(
            "banter_dependency_errors",
            "Client requests and events that failed because Postgres (database) or Redis did",
            m.dependency_errors.clone(),
        );
        for dependency in ["database", "redis"] {
            // Exported at zero from the start, so that a rate over them is defined.
            let _ = m
                .dependency_errors
                .get_or_create(&DependencyLabels { dependency });
        }
        r.register(
            "banter_commit_batch_size",
            "Messages stored per group-commit transaction",
            m.batch_size.clone(),
        );
        r.register(
            "banter_commit_seconds",
            "Duration of a group-commit transaction",
            m.commit_seconds.clone(),
        );
        r.register(
            "banter_send_ack_seconds",
            "From a message.send arriving to its ack",
            m.send_seconds.clone(),
        );
        r.register(
            "banter_sends_held",
            "Sends and changes to messages over the rate limit held for their turn (RATE_LIMIT_HOLD_SECS)",
            m.sends_held.clone(),
        );
        r.register(
            "banter_uploads_stored",
            "Uploaded files checked and stored",
            m.uploads_stored.clone(),
        );
        r.register(
            "banter_upload_bytes",
            "Bytes of uploaded files checked and stored",
            m.upload_bytes.clone(),
        );
        r.register(
            "banter_retention_removed_messages",
            "Messages removed by retention passes of this instance",
            m.retention_messages.clone(),
        );
        r.register(
            "banter_retention_removed_uploads",
            "Stored files removed by retention passes of this instance (expired or never sent)",
            m.retention_uploads.clone(),
        );
        r.register(
            "banter_process_resident_memory_bytes",
            "Resident memory of the process",
            m.resident_bytes.clone(),
        );
        r.register(
            "banter_process_cpu_seconds",
            "CPU time of the process (user and system)",
            m.cpu_seconds.clone(),
        );
        r.register(
            "banter_draining",
            "1 while this instance takes no new sessions and moves its sockets away",
            m.draining.clone(),
        );
        r.register(
            "banter_sockets_moved",
            "Sockets moved to other instances by a drain or a rebalance",
            m.sockets_moved.clone(),
        );
        r.register(
            "banter_agent_weight",
            "The weight (percent) last reported to HAProxy's agent check",
            m.agent_weight.clone(),
        );
        m
    }

    /// Counts a handled client event by its outcome, and the dependency behind a failure.
    pub fn event_in<T>(&self, event: &'static str, outcome: &Result<T, AppError>) {
        let outcome = match outcome {
            Ok(_) => "ok",
            Err(e) => {
                self.failed(e);
                e.code.as_str()
            }
        };
        self.events_in
            .get_or_create(&EventLabels { event, outcome })
            .inc();
    }

    /// Counts the dependency behind an error answered to a client, if any.
    pub fn failed(&self, error: &AppError) {
        if let Some(dependency) = error.dependency {
            self.dependency_errors
                .get_or_create(&DependencyLabels { dependency })
                .inc();
        }
    }

    pub fn broadcast(&self, event: &'static str) {
        self.broadcasts
            .get_or_create(&BroadcastLabels { event })
            .inc();
    }

    /// The OpenMetrics text exposition of everything above.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "metrics could not be rendered");
        }
        out
    }
}

/// Deliveries dropped for slow consumers: counted, and logged at most once per [`WARN_EVERY`].
#[derive(Clone, Default)]
pub struct Drops {
    counter: Counter,
    last_warning: WarnLimit,
}

impl Drops {
    /// Deliveries dropped since the instance started.
    pub fn total(&self) -> u64 {
        self.counter.get()
    }

    /// Counts `n` dropped deliveries (also whole events the bus could not hold, one per event).
    pub fn count(&self, n: usize) {
        let total = self.counter.inc_by(n as u64) + n as u64;
        self.last_warning.run(|| {
            tracing::warn!(
                dropped_now = n,
                dropped_total = total,
                "deliveries dropped (full send buffers of slow sockets or of the Redis subscription); clients resync by seq"
            )
        });
    }
}

/// Messages stored per channel, taken (and reset) once per stats period. Holds at most
/// [`ChannelCounts::MAX`] channels a period; a busier period counts the first ones seen.
#[derive(Default)]
pub struct ChannelCounts(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl ChannelCounts {
    pub const MAX: usize = 10_000;

    /// Counts one message stored in each of `channels` (a batch's, under one lock).
    pub fn add<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut m) = self.0.lock() {
            for channel in channels {
                if let Some(count) = m.get_mut(channel) {
                    *count += 1;
                } else if m.len() < Self::MAX {
                    m.insert(channel.to_owned(), 1);
                }
            }
        }
    }

    /// The counts since the last call.
    pub fn take(&self) -> std::collections::HashMap<String, u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// How often one repeating warning may be logged.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// When a repeating warning was last logged (seconds since the epoch): warnings about one
/// failure that repeats per event are logged at a bounded rate.
#[derive(Clone, Default)]
pub struct WarnLimit(Arc<AtomicU64>);

impl WarnLimit {
    /// Runs `log` unless it ran less than [`WARN_EVERY`] ago.
    pub fn run(&self, log: impl FnOnce()) {
        let now = crate::clock::now_ms() / 1000;
        let prev = self.0.load(Ordering::Relaxed);
        if now >= prev + WARN_EVERY.as_secs()
            && self
                .0
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log();
        }
    }
}
