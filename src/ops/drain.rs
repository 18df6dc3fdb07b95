//! Moving an instance's sockets to the others: a drain (an operator's, SIGUSR1, Kubernetes'
//! `preStop`) moves all of them and keeps the instance out of the balancer; a rebalance sheds
//! a number of them, then takes sessions again.
//!
//! While sockets are being moved the instance refuses new Engine.IO sessions with 503
//! (`crate::http::cap_pending_sessions`), so the balancer sends each reconnect elsewhere
//! (HAProxy's `retry-on 503` with `option redispatch`, nginx's `proxy_next_upstream http_503`).
//! A moved socket is sent `instance.draining` and then its connection is closed from the
//! server's side, as when an instance shuts down: the client reconnects by itself, and with
//! connection state recovery its session is restored with everything it missed
//! (`super::super::realtime::recovery`). The balancer's view changes first: `/ready` answers
//! 503 and the agent check `drain` from the start of a drain, and sockets move only
//! `DRAIN_GRACE_SECS` later, at `DRAIN_SOCKETS_PER_SEC`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketioxide::socket::Sid;

use crate::metrics::Metrics;
use crate::realtime::delivery::Delivery;
use crate::shutdown::Shutdown;

/// How often the mover takes its next batch.
const TICK: Duration = Duration::from_millis(100);
/// Between a batch's `instance.draining` and the close of its connections.
const NOTICE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Serving,
    /// Every socket goes, and no new session comes, until the drain is called off.
    Draining,
    /// `left` more sockets go; then the instance serves again.
    Shedding {
        left: u64,
    },
}

/// Whether this instance is being drained or is shedding sockets; the mover acts on it.
pub struct Drain {
    mode: Mutex<Mode>,
    /// New Engine.IO sessions are refused (a drain, or a rebalance's shedding).
    refusing: AtomicBool,
    /// A full drain (`/ready` 503, the agent check says `drain`).
    draining: AtomicBool,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Drain {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Drain {
            mode: Mutex::new(Mode::Serving),
            refusing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            metrics,
        }
    }

    fn set(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
        let (refusing, draining) = match mode {
            Mode::Serving => (false, false),
            Mode::Draining => (true, true),
            Mode::Shedding { .. } => (true, false),
        };
        self.refusing.store(refusing, Ordering::SeqCst);
        self.draining.store(draining, Ordering::SeqCst);
        self.metrics.draining.set(i64::from(refusing));
        self.wake.notify_one();
    }

    fn mode(&self) -> Mode {
        self.mode.lock().map(|m| *m).unwrap_or(Mode::Serving)
    }

    /// Starts a drain (`why` is logged); starting it again changes nothing.
    pub fn start(&self, why: &str) {
        if self.mode() != Mode::Draining {
            tracing::info!(
                why,
                "draining: no new sessions; moving every socket to the other instances"
            );
            self.set(Mode::Draining);
        }
    }

    /// Calls a drain (or a shedding) off: the instance takes sessions again.
    pub fn stop(&self, why: &str) {
        if self.mode() != Mode::Serving {
            tracing::info!(why, "serving again: taking new sessions");
            self.set(Mode::Serving);
        }
    }

    /// Sheds `n` sockets (a rebalance), unless a drain or another shedding is under way.
    pub fn shed(&self, n: u64) -> bool {
        if n == 0 || self.mode() != Mode::Serving {
            return false;
        }
        tracing::info!(
            sockets = n,
            "rebalancing: moving sockets to less loaded instances"
        );
        self.set(Mode::Shedding { left: n });
        true
    }

    /// Whether new Engine.IO sessions are refused.
    pub fn refusing_sessions(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    /// Whether the instance is draining (all of its sockets go).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// How many of `want` sockets the next batch may take.
    fn take(&self, want: u64) -> u64 {
        let Ok(m) = self.mode.lock() else {
            return 0;
        };
        match *m {
            Mode::Serving => 0,
            Mode::Draining => want,
            Mode::Shedding { left } => want.min(left),
        }
    }

    /// Counts `n` moved sockets against a shedding; it ends when none are left.
    fn moved(&self, n: u64) {
        let done = match self.mode.lock() {
            Ok(mut m) => match *m {
                Mode::Shedding { left } => {
                    let left = left.saturating_sub(n);
                    *m = Mode::Shedding { left };
                    left == 0
                }
                _ => false,
            },
            Err(_) => false,
        };
        if done {
            self.stop("rebalanced");
        }
    }
}

/// The rates the mover moves sockets at.
pub struct Rates {
    pub drain_per_sec: u32,
    pub rebalance_per_sec: u32,
    pub grace: Duration,
}

/// Moves sockets while the instance drains or sheds.
pub fn spawn_mover(drain: Arc<Drain>, delivery: Delivery, rates: Rates, shutdown: &Shutdown) {
    shutdown.spawn_until_stopped(async move {
        loop {
            // Wait for a drain or a shedding.
            while drain.mode() == Mode::Serving {
                drain.wake.notified().await;
            }
            if drain.mode() == Mode::Draining && !rates.grace.is_zero() {
                tokio::time::sleep(rates.grace).await;
            }
            let mut gone: HashSet<Sid> = HashSet::new();
            let mut reported_empty = false;
            loop {
                let mode = drain.mode();
                if mode == Mode::Serving {
                    break;
                }
                let per_sec = match mode {
                    Mode::Draining => rates.drain_per_sec,
                    _ => rates.rebalance_per_sec,
                };
                let per_tick = u64::from(per_sec).div_ceil(10).max(1);
                let want = drain.take(per_tick);
                let sockets: Vec<_> = delivery
                    .all_local_sockets()
                    .into_iter()
                    .filter(|s| !gone.contains(&s.id))
                    .take(want as usize)
                    .collect();
                if sockets.is_empty() {
                    if mode == Mode::Draining && !reported_empty {
                        tracing::info!("drained: no socket left here");
                        reported_empty = true;
                    }
                    if let Mode::Shedding { .. } = mode {
                        // Fewer sockets than asked for are left: the shedding is over.
                        drain.stop("nothing left to shed");
                        break;
                    }
                    tokio::time::sleep(TICK * 5).await;
                    continue;
                }
                reported_empty = false;
                let n = sockets.len() as u64;
                gone.extend(sockets.iter().map(|s| s.id));
                delivery.move_away(sockets, NOTICE).await;
                drain.metrics.sockets_moved.inc_by(n);
                drain.moved(n);
                tokio::time::sleep(TICK).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shedding_ends_after_its_count_and_a_drain_does_not() {
        let drain = Drain::new(Arc::new(Metrics::new()));
        assert!(!drain.refusing_sessions());
        assert!(drain.shed(5));
        assert!(drain.refusing_sessions() && !drain.is_draining());
        assert!(!drain.shed(3), "one shedding at a time");
        assert_eq!(drain.take(10), 5);
        drain.moved(3);
        assert_eq!(drain.take(10), 2);
        drain.moved(2);
        assert!(!drain.refusing_sessions(), "shedding over");
        drain.start("test");
        assert!(drain.is_draining() && drain.refusing_sessions());
        assert_eq!(drain.take(10), 10);
        drain.moved(1000);
        assert!(drain.is_draining(), "a drain lasts until called off");
        assert!(!drain.shed(1), "no shedding during a drain");
        drain.stop("test");
        assert!(!drain.refusing_sessions() && !drain.is_draining());
    }
}
