//! Presence events: `user.status` on online/offline transitions, the coalesced
//! `channel.presence` counts, and the background heartbeat and reaper.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use socketioxide::SocketIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{channel_room, emit};
use crate::config::PresenceScope;
use crate::presence::Reaped;
use crate::{Adapter, AppState};

/// Sends `user.status` for a user who came online or went offline.
///
/// With `PRESENCE_SCOPE=channels` it goes to the given channels (the user's, with their online
/// counts), except those above `PRESENCE_FANOUT_MAX` online users, which only see the
/// `channel.presence` count; with `global`, to everyone. A channel also counts as crowded when
/// this instance alone holds more sockets in it than that: during a connect storm the sockets
/// join the room before presence has counted them, and announcing each of them to the whole
/// room would cost O(sockets × limit) events.
pub async fn announce_status(
    state: &AppState,
    user: Uuid,
    username: &str,
    online: bool,
    channels: &[(String, u64)],
) {
    let body = json!({
        "userId": user,
        "username": username,
        "status": if online { "online" } else { "offline" },
    });
    let rooms = match state.config.presence_scope {
        // No rooms: everyone.
        PresenceScope::Global => Vec::new(),
        PresenceScope::Channels => {
            let rooms: Vec<String> = channels
                .iter()
                .filter(|(name, count)| {
                    let local = state.local_rooms.members(name);
                    (*count).max(local) <= state.config.presence_fanout_max
                })
                .map(|(name, _)| channel_room(name))
                .collect();
            if rooms.is_empty() {
                return;
            }
            rooms
        }
    };
    emit::broadcast(state, rooms, "user.status", &body).await;
}

/// A user's last connection is gone: the offline is announced after the grace period, unless
/// they come back first. If Redis cannot hold the grace period, it is announced at once.
pub async fn went_offline(state: &AppState, user: &str, username: &str, channels: &[String]) {
    if let Err(e) = state.presence.enter_grace(user, username, channels).await {
        tracing::warn!(error = %e, "presence grace unavailable; announcing offline now");
        announce_offline(state, user, username, channels.to_vec()).await;
    }
}

/// Announces an offline user to their channels (with each channel's current count).
async fn announce_offline(state: &AppState, user: &str, username: &str, names: Vec<String>) {
    let Ok(user) = Uuid::parse_str(user) else {
        return;
    };
    let mut channels = Vec::with_capacity(names.len());
    for name in names {
        let online = state.presence.channel_online(&name).await.unwrap_or(0);
        channels.push((name, online));
    }
    announce_status(state, user, username, false, &channels).await;
    // A user who connected again while this was on its way had their `online` sent by another
    // instance, maybe ahead of this `offline`: say `online` once more, after it, so that the
    // last word is right.
    if state.presence.connections(user).await.unwrap_or(0) > 0 {
        announce_status(state, user, username, true, &channels).await;
    }
}

/// Announces the users whose grace period ended while they stayed offline.
async fn announce_expired_graces(state: &AppState) {
    match state.presence.take_expired_graces().await {
        Ok(gone) => {
            for user in gone {
                announce_offline(state, &user.user_id, &user.username, user.channels).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "presence grace sweep failed"),
    }
}

/// Puts the users a reap took offline into the grace period.
pub async fn announce_reaped(state: &AppState, reaped: Reaped) {
    if reaped.offline.is_empty() && reaped.channels.is_empty() {
        return;
    }
    tracing::info!(
        users_offline = reaped.offline.len(),
        channels = reaped.channels.len(),
        "reaped presence of a stopped instance"
    );
    for gone in reaped.offline {
        went_offline(state, &gone.user_id, &gone.username, &gone.channels).await;
    }
}

/// Starts the heartbeat/reaper loop and the `channel.presence` ticker; both end when `stop`
/// turns true.
pub fn spawn_tasks(
    state: AppState,
    io: SocketIo<Adapter>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(heartbeat_and_reap(state.clone(), io.clone(), stop.clone())),
        tokio::spawn(grace_sweeper(state.clone(), stop.clone())),
        tokio::spawn(channel_counts(state, stop)),
    ]
}

/// How often expired grace periods are looked for.
const GRACE_SWEEP: Duration = Duration::from_millis(250);

async fn grace_sweeper(state: AppState, mut stop: watch::Receiver<bool>) {
    while tick(&mut stop, GRACE_SWEEP).await {
        announce_expired_graces(&state).await;
    }
}

/// Waits one period or until stopped; false when stopped.
async fn tick(stop: &mut watch::Receiver<bool>, period: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

async fn heartbeat_and_reap(
    state: AppState,
    io: SocketIo<Adapter>,
    mut stop: watch::Receiver<bool>,
) {
    let period = state.presence.heartbeat_period();
    while tick(&mut stop, period).await {
        match state.presence.heartbeat().await {
            Ok(true) if !state.presence_stale.swap(false, Ordering::AcqRel) => {}
            Ok(present) => {
                if present {
                    tracing::info!(
                        "presence changes failed while Redis was unreachable; rebuilding"
                    );
                } else {
                    tracing::warn!("this instance's presence was lost (Redis restarted, or it was reaped); rebuilding");
                }
                if let Err(e) = super::rebuild_presence(&state, &io).await {
                    tracing::warn!(error = %e, "presence rebuild failed; retrying next period");
                    // Try again next period.
                    state.presence_stale.store(true, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence heartbeat failed");
                continue;
            }
        }
        let others = match state.presence.other_instances().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "presence reaper failed");
                continue;
            }
        };
        for id in others {
            match state.presence.reap(&id, false).await {
                Ok(reaped) => announce_reaped(&state, reaped).await,
                Err(e) => tracing::warn!(error = %e, instance = %id, "presence reap failed"),
            }
        }
    }
}

/// Emits `channel.presence` for channels whose count changed, at most once per channel per
/// second across the cluster (a Redis key claims each second).
async fn channel_counts(state: AppState, mut stop: watch::Receiver<bool>) {
    while tick(&mut stop, Duration::from_secs(1)).await {
        let dirty = state.presence.take_dirty();
        let mut later = Vec::new();
        for channel in dirty {
            match state.presence.claim_announcement(&channel).await {
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
            let Ok(online) = state.presence.channel_online(&channel).await else {
                later.push(channel);
                continue;
            };
            let body = json!({ "channel": channel, "online": online });
            emit::broadcast(
                &state,
                vec![channel_room(&channel)],
                "channel.presence",
                &body,
            )
            .await;
        }
        state.presence.requeue_dirty(later);
    }
}
