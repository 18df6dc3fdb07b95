//! The background side of presence: the heartbeat and the reaper of stopped instances, the
//! end of grace periods, and the coalesced `channel.presence` counts.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::SocketIo;

use super::delivery::Delivery;
use super::membership::Membership;
use super::recovery::Recovery;
use super::rooms::channel_room;
use super::Adapter;
use crate::contract::{server, ChannelPresence};
use crate::presence::Presence;
use crate::shutdown::Shutdown;

/// How often expired grace periods are looked for.
const GRACE_SWEEP: Duration = Duration::from_millis(250);
/// How often changed channel counts are announced (at most once per channel per period,
/// cluster-wide).
const COUNTS_PERIOD: Duration = Duration::from_secs(1);

/// Starts the heartbeat and reaper, the grace sweeper and the `channel.presence` ticker; they
/// end when `shutdown` begins.
pub fn spawn(
    presence: Arc<Presence>,
    membership: Arc<Membership>,
    delivery: Delivery,
    io: SocketIo<Adapter>,
    recovery: Arc<Recovery>,
    shutdown: &Shutdown,
) {
    shutdown.spawn_until_stopped(heartbeat_and_reap(
        presence.clone(),
        membership.clone(),
        io,
        recovery,
    ));
    shutdown.spawn_until_stopped(async move {
        loop {
            tokio::time::sleep(GRACE_SWEEP).await;
            membership.announcer().expired_graces().await;
        }
    });
    shutdown.spawn_until_stopped(channel_counts(presence, delivery));
}

async fn heartbeat_and_reap(
    presence: Arc<Presence>,
    membership: Arc<Membership>,
    io: SocketIo<Adapter>,
    recovery: Arc<Recovery>,
) {
    let period = presence.heartbeat_period();
    loop {
        tokio::time::sleep(period).await;
        match presence.heartbeat().await {
            Ok(true) if !membership.take_stale() => {}
            Ok(present) => {
                if present {
                    tracing::info!(
                        "presence changes failed while Redis was unreachable; rebuilding"
                    );
                } else {
                    tracing::warn!("this instance's presence was lost (Redis restarted, or it was reaped); rebuilding");
                }
                if let Err(e) = membership.rebuild(&io).await {
                    tracing::warn!(error = %e, "presence rebuild failed; retrying next period");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence heartbeat failed");
                continue;
            }
        }
        let others = match presence.other_instances().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "presence reaper failed");
                continue;
            }
        };
        for id in others {
            match presence.reap(&id, false).await {
                Ok(reaped) => {
                    if reaped.gone {
                        // Its sockets never saw their disconnect: they count as disconnected
                        // from now for connection state recovery.
                        recovery.gone(&id).await;
                    }
                    membership.announcer().reaped(reaped).await
                }
                Err(e) => tracing::warn!(error = %e, instance = %id, "presence reap failed"),
            }
        }
    }
}

/// Emits `channel.presence` for channels whose count changed, at most once per channel per
/// second across the cluster (a Redis key claims each second).
async fn channel_counts(presence: Arc<Presence>, delivery: Delivery) {
    loop {
        tokio::time::sleep(COUNTS_PERIOD).await;
        let dirty = presence.take_dirty();
        let mut later = Vec::new();
        for channel in dirty {
            match presence.claim_announcement(&channel).await {
                Ok(true) => {}
                Ok(false) => {
                    later.push(channel);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "channel.presence skipped");
                    later.push(channel);
                    continue;
                }
            }
            let Ok(online) = presence.channel_online(&channel).await else {
                later.push(channel);
                continue;
            };
            let body = ChannelPresence {
                channel: &channel,
                online,
            };
            delivery
                .broadcast(
                    vec![channel_room(&channel)],
                    server::CHANNEL_PRESENCE,
                    &body,
                )
                .await;
        }
        presence.requeue_dirty(later);
    }
}
