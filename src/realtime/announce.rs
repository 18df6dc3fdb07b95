//! [`Announcer`]: what the channels are told about presence: `user.status` when a user comes
//! online or (after the grace period) goes offline.

use std::sync::Arc;

use uuid::Uuid;

use super::delivery::Delivery;
use super::rooms::{channel_room, LocalRooms};
use crate::config::PresenceScope;
use crate::contract::{server, Status, UserStatus};
use crate::presence::{Presence, Reaped};

/// Sends presence news through [`Delivery`].
pub struct Announcer {
    presence: Arc<Presence>,
    delivery: Delivery,
    /// This instance's sockets per channel: a crowd measure that needs no Redis.
    rooms: Arc<LocalRooms>,
    scope: PresenceScope,
    /// Channels with more online users than this get counts only, no `user.status`.
    fanout_max: u64,
}

impl Announcer {
    pub fn new(
        presence: Arc<Presence>,
        delivery: Delivery,
        rooms: Arc<LocalRooms>,
        scope: PresenceScope,
        fanout_max: u64,
    ) -> Self {
        Self {
            presence,
            delivery,
            rooms,
            scope,
            fanout_max,
        }
    }

    /// Sends `user.status` for a user who came online or went offline.
    ///
    /// With `PRESENCE_SCOPE=channels` it goes to the given channels (the user's, with their
    /// online counts), except those above `PRESENCE_FANOUT_MAX` online users, which only see
    /// the `channel.presence` count; with `global`, to everyone. A channel also counts as
    /// crowded when this instance alone holds more sockets in it than that: during a connect
    /// storm the sockets join the room before presence has counted them, and announcing each of
    /// them to the whole room would cost O(sockets × limit) events.
    pub async fn status(
        &self,
        user: Uuid,
        username: &str,
        online: bool,
        channels: &[(String, u64)],
    ) {
        let body = UserStatus {
            user_id: user,
            username: username.to_owned(),
            status: if online {
                Status::Online
            } else {
                Status::Offline
            },
        };
        let rooms = match self.scope {
            // No rooms: everyone.
            PresenceScope::Global => Vec::new(),
            PresenceScope::Channels => {
                let rooms: Vec<String> = channels
                    .iter()
                    .filter(|(name, count)| {
                        let local = self.rooms.members(name);
                        (*count).max(local) <= self.fanout_max
                    })
                    .map(|(name, _)| channel_room(name))
                    .collect();
                if rooms.is_empty() {
                    return;
                }
                rooms
            }
        };
        self.delivery
            .broadcast(rooms, server::USER_STATUS, &body)
            .await;
    }

    /// A user's last connection is gone: the offline is announced after the grace period,
    /// unless they come back first. If Redis cannot hold the grace period, it is announced at
    /// once.
    pub async fn went_offline(&self, user: &str, username: &str, channels: &[String]) {
        if let Err(e) = self.presence.enter_grace(user, username, channels).await {
            tracing::warn!(error = %e, "presence grace unavailable; announcing offline now");
            self.offline(user, username, channels.to_vec()).await;
        }
    }

    /// Announces an offline user to their channels (with each channel's current count).
    async fn offline(&self, user: &str, username: &str, names: Vec<String>) {
        let Ok(user) = Uuid::parse_str(user) else {
            return;
        };
        let mut channels = Vec::with_capacity(names.len());
        for name in names {
            let online = self.presence.channel_online(&name).await.unwrap_or(0);
            channels.push((name, online));
        }
        self.status(user, username, false, &channels).await;
        // A user who connected again while this was on its way had their `online` sent by
        // another instance, maybe ahead of this `offline`: say `online` once more, after it, so
        // that the last word is right.
        if self.presence.connections(user).await.unwrap_or(0) > 0 {
            self.status(user, username, true, &channels).await;
        }
    }

    /// Announces the users whose grace period ended while they stayed offline.
    pub async fn expired_graces(&self) {
        match self.presence.take_expired_graces().await {
            Ok(gone) => {
                for user in gone {
                    self.offline(&user.user_id, &user.username, user.channels)
                        .await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "presence grace sweep failed"),
        }
    }

    /// Puts the users a reap took offline into the grace period.
    pub async fn reaped(&self, reaped: Reaped) {
        if reaped.offline.is_empty() && reaped.channels.is_empty() {
            return;
        }
        tracing::info!(
            users_offline = reaped.offline.len(),
            channels = reaped.channels.len(),
            "reaped presence of a stopped instance"
        );
        for gone in reaped.offline {
            self.went_offline(&gone.user_id, &gone.username, &gone.channels)
                .await;
        }
    }
}
