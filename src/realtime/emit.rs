//! Broadcasting server events to rooms on every instance, and what happens when that fails.
//!
//! - Events go to this instance's sockets directly and to the other instances through one Redis
//!   pub/sub channel (`<prefix>:events`); each instance delivers to its own sockets, so a drop
//!   anywhere is counted. `message.new` has its own ordered path (`fanout.rs`).
//! - Redis is down: the event still reaches this instance's sockets; the other instances'
//!   clients see a `seq` gap on their next message and fill it with `messages.sync`.
//! - A socket's send buffer is full (a slow consumer): socketioxide drops the packet for that
//!   socket only. Every such drop is counted and logged (at most one line per 10 s); the client
//!   detects the `seq` gap and syncs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::{BroadcastError, SocketError};

use crate::{Adapter, AppState};

/// Deliveries dropped because a socket's buffer was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// When the last drop warning was logged (seconds since the epoch).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Deliveries dropped for slow consumers since the process started.
pub fn dropped_deliveries() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Counts deliveries dropped (also whole events the bus could not hold, one per event).
pub fn count_drops(n: usize) {
    let total = DROPPED.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
    warn_limited(&LAST_WARNING, || {
        tracing::warn!(
            dropped_now = n,
            dropped_total = total,
            "deliveries dropped (full send buffers of slow sockets or of the Redis subscription); clients resync by seq"
        )
    });
}

fn report(result: Result<(), BroadcastError>, event: &str) {
    match result {
        Ok(()) => {}
        Err(BroadcastError::Socket(errors)) => {
            // A socket that closed meanwhile is not a drop; a full buffer is.
            let full = errors
                .iter()
                .filter(|e| matches!(e, SocketError::InternalChannelFull))
                .count();
            if full > 0 {
                count_drops(full);
            }
        }
        Err(e) => warn_limited(
            &LAST_RELAY_WARNING,
            || tracing::warn!(event, error = %e, "broadcast failed"),
        ),
    }
}

/// An event on its way to the other instances, which deliver it to their own sockets.
#[derive(Serialize)]
struct Relay<'a, T: ?Sized> {
    origin: &'a str,
    rooms: &'a [String],
    event: &'a str,
    data: &'a T,
}

/// A relayed event as received: the data stays raw JSON, serialized once by the sender.
#[derive(serde::Deserialize)]
struct RawRelay {
    origin: String,
    rooms: Vec<String>,
    event: String,
    data: Box<serde_json::value::RawValue>,
}

/// Sends `event` to the sockets in `rooms` on every instance (to every socket when `rooms` is
/// empty).
pub async fn broadcast<T: Serialize + ?Sized>(
    state: &AppState,
    rooms: Vec<String>,
    event: &'static str,
    payload: &T,
) {
    broadcast_from(state, None, rooms, event, payload).await;
}

/// Sends `event` to the sockets in `rooms` on every instance, the sending socket (if any)
/// excepted. This instance's sockets get it at once; the others' get it through Redis
/// (`<prefix>:events`), each instance delivering to its own sockets, so that every dropped
/// delivery is counted where it happens. If Redis cannot carry it, this instance's sockets
/// still get it.
pub async fn broadcast_from<T: Serialize + ?Sized>(
    state: &AppState,
    sender: Option<&SocketRef<Adapter>>,
    rooms: Vec<String>,
    event: &'static str,
    payload: &T,
) {
    crate::metrics::METRICS.broadcast(event);
    // This instance's sockets first: they need no round trip.
    match sender {
        Some(s) => {
            let op = if rooms.is_empty() {
                s.local().broadcast()
            } else {
                s.local().to(rooms.clone())
            };
            report(op.emit(event, payload).await, event);
        }
        None => broadcast_local(state, rooms.clone(), event, payload).await,
    }
    let relay = Relay {
        origin: state.presence.instance(),
        rooms: &rooms,
        event,
        data: payload,
    };
    match serde_json::to_vec(&relay) {
        Ok(body) => {
            let mut conn = state.redis.clone();
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(state.keys.events())
                .arg(body)
                .query_async(&mut conn)
                .await;
            if let Err(e) = published {
                warn_limited(
                    &LAST_RELAY_WARNING,
                    || tracing::warn!(event, error = %e, "Redis unavailable: events reach this instance's sockets only"),
                );
            }
        }
        Err(e) => tracing::warn!(event, error = %e, "event could not be serialized"),
    }
}

/// Delivers an event relayed by another instance to this instance's sockets.
pub async fn deliver_relayed(state: &AppState, payload: &[u8]) {
    let Ok(relay) = serde_json::from_slice::<RawRelay>(payload) else {
        warn_limited(&LAST_RELAY_WARNING, || {
            tracing::warn!("unreadable event on the relay channel")
        });
        return;
    };
    if relay.origin == state.presence.instance() {
        return;
    }
    broadcast_local(state, relay.rooms, &relay.event, &relay.data).await;
}

/// Sends `event` to this instance's sockets in `rooms` only (to all of them when `rooms` is
/// empty).
pub async fn broadcast_local<T: Serialize + ?Sized>(
    state: &AppState,
    rooms: Vec<String>,
    event: &str,
    payload: &T,
) {
    let Some(namespace) = state.namespace.get() else {
        return;
    };
    let local = namespace.clone().local();
    let op = if rooms.is_empty() {
        local
    } else {
        local.to(rooms)
    };
    report(op.emit(event, payload).await, event);
}

/// When the last relay warning was logged (seconds since the epoch).
static LAST_RELAY_WARNING: AtomicU64 = AtomicU64::new(0);

/// Runs `log` unless it ran less than [`WARN_EVERY`] ago (per `last`): warnings about one
/// failure that repeats per event are logged at a bounded rate.
pub fn warn_limited(last: &AtomicU64, log: impl FnOnce()) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prev = last.load(Ordering::Relaxed);
    if now >= prev + WARN_EVERY.as_secs()
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log();
    }
}
