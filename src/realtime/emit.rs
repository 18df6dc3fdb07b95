//! Broadcasting server events to rooms on every instance, and what happens when that fails.
//!
//! - The adapter bus (Redis) is down: the event still reaches this instance's sockets; the other
//!   instances' clients see a `seq` gap on their next message and fill it with `messages.sync`.
//! - A socket's send buffer is full (a slow consumer): socketioxide drops the packet for that
//!   socket only. Every such drop is counted and logged (at most one line per 10 s); the client
//!   detects the `seq` gap and syncs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::AppState;
use serde::Serialize;
use socketioxide::{BroadcastError, SocketError};

/// Deliveries dropped because a socket's buffer was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// When the last drop warning was logged (seconds since the epoch).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Deliveries dropped for slow consumers since the process started.
pub fn dropped_deliveries() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn count_drops(n: usize) {
    let total = DROPPED.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY.as_secs()
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            dropped_now = n,
            dropped_total = total,
            "deliveries dropped for slow sockets (full send buffers); clients resync by seq"
        );
    }
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
        Err(e) => tracing::warn!(event, error = %e, "broadcast failed"),
    }
}

/// Sends `event` to the sockets in `rooms` on every instance (to every socket when `rooms` is
/// empty). If the bus cannot carry it, this instance's sockets still get it.
pub async fn broadcast<T: Serialize + ?Sized>(
    state: &AppState,
    rooms: Vec<String>,
    event: &'static str,
    payload: &T,
) {
    let Some(namespace) = state.namespace.get() else {
        return;
    };
    crate::metrics::METRICS.broadcast(event);
    let everyone = rooms.is_empty();
    let op = if everyone {
        namespace.clone()
    } else {
        namespace.clone().to(rooms.clone())
    };
    match op.emit(event, payload).await {
        Err(BroadcastError::Adapter(e)) => {
            tracing::warn!(event, error = %e, "adapter bus unavailable: delivering to this instance only");
            broadcast_local(state, rooms, event, payload).await;
        }
        other => report(other, event),
    }
}

/// Sends `event` to this instance's sockets in `rooms` only (to all of them when `rooms` is
/// empty).
pub async fn broadcast_local<T: Serialize + ?Sized>(
    state: &AppState,
    rooms: Vec<String>,
    event: &'static str,
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
