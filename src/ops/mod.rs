//! Operating a cluster: what each instance reports of itself ([`stats`]: the cluster page of
//! `GET /api/admin/cluster`, and the weight of HAProxy's agent check, [`agent`]), and moving an
//! instance's sockets to the others ([`drain`]: a drain, or a rebalance when `REBALANCE` is on
//! and this instance holds more than its share).

pub mod agent;
pub mod drain;
pub mod stats;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use drain::Drain;

use crate::contract::InstanceView;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Fewer excess sockets than this are not worth moving.
const REBALANCE_MIN_EXCESS: f64 = 10.0;

/// The operations side of an instance.
pub struct Ops {
    pub drain: Arc<Drain>,
    pub keys: Keys,
    /// This instance's id.
    pub instance: String,
    /// The weight of the last sample (percent).
    weight: AtomicU32,
}

impl Ops {
    pub fn new(metrics: Arc<Metrics>, keys: Keys, instance: String) -> Self {
        Ops {
            drain: Arc::new(Drain::new(metrics)),
            keys,
            instance,
            weight: AtomicU32::new(100),
        }
    }

    /// The weight (percent) for new sessions, as of the last sample.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }
}

/// Starts the sampler (and the rebalancing check), the socket mover and the agent check.
pub async fn start(state: &AppState) -> anyhow::Result<()> {
    let config = &state.config;
    drain::spawn_mover(
        state.ops.drain.clone(),
        state.delivery.clone(),
        drain::Rates {
            drain_per_sec: config.drain_sockets_per_sec,
            rebalance_per_sec: config.rebalance_sockets_per_sec,
            grace: Duration::from_secs(config.drain_grace_secs),
        },
        &state.shutdown,
    );
    if let Some(addr) = config.agent_check_addr.0 {
        agent::listen(addr, state.ops.clone(), &state.shutdown).await?;
    }
    let state = state.clone();
    state.shutdown.clone().spawn_until_stopped(async move {
        let mut sampler = stats::Sampler::new();
        let every = Duration::from_secs(state.config.rebalance_interval_secs);
        let mut next_rebalance = Instant::now() + every;
        // The first report at once, then one every period.
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(stats::PERIOD).await;
            }
            first = false;
            let view = sampler.sample(&state);
            state.ops.weight.store(view.weight, Ordering::Relaxed);
            if let Err(e) = stats::publish(&state, &view).await {
                tracing::debug!(error = %e, "instance report not published");
            }
            if state.config.rebalance && Instant::now() >= next_rebalance {
                next_rebalance = Instant::now() + every;
                rebalance(&state, &view).await;
            }
        }
    });
    Ok(())
}

/// Sheds this instance's sockets above the mean of the instances taking sessions, when it is
/// above that mean by more than `REBALANCE_MARGIN`.
async fn rebalance(state: &AppState, me: &InstanceView) {
    if me.draining {
        return;
    }
    let reports = match stats::reports(state).await {
        Ok((reports, _)) => reports,
        Err(e) => {
            tracing::debug!(error = %e, "rebalance skipped: reports not read");
            return;
        }
    };
    let serving: Vec<u64> = reports
        .iter()
        .filter(|r| r.id != me.id && !r.draining)
        .map(|r| r.sockets)
        .chain(std::iter::once(me.sockets))
        .collect();
    if let Some(n) = excess(me.sockets, &serving, state.config.rebalance_margin) {
        state.ops.drain.shed(n);
    }
}

/// How many sockets an instance holding `mine` sheds, `all` being every serving instance's
/// count (its own included): down to the mean, when above it by more than `margin`.
fn excess(mine: u64, all: &[u64], margin: f64) -> Option<u64> {
    if all.len() < 2 {
        return None;
    }
    let mean = all.iter().sum::<u64>() as f64 / all.len() as f64;
    let mine = mine as f64;
    if mine <= mean * (1.0 + margin) || mine - mean < REBALANCE_MIN_EXCESS {
        return None;
    }
    Some((mine - mean).floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_instance_well_above_the_mean_sheds_down_to_it() {
        assert_eq!(excess(900, &[900, 100], 0.2), Some(400));
        assert_eq!(excess(100, &[900, 100], 0.2), None);
        assert_eq!(excess(560, &[560, 440], 0.2), None, "within the margin");
        assert_eq!(excess(14, &[14, 0], 0.2), None, "too few to move");
        assert_eq!(excess(900, &[900], 0.2), None, "alone");
    }
}
