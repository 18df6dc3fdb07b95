//! Names of every Redis key banter uses, all under `REDIS_PREFIX` so that clusters (and tests)
//! sharing one Redis never see each other's data.

/// Builds prefixed Redis key names.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A revoked session id (`jti`), kept until the token would have expired.
    pub fn revoked(&self, jti: &str) -> String {
        format!("{}:revoked:{jti}", self.prefix)
    }

    /// Cluster-wide live connections per user: user id → count.
    pub fn presence(&self) -> String {
        format!("{}:presence", self.prefix)
    }

    /// Usernames of users present in `presence`: user id → username.
    pub fn presence_names(&self) -> String {
        format!("{}:presence:names", self.prefix)
    }

    /// Users in the grace period before their offline is announced: user id → deadline (ms).
    pub fn presence_grace(&self) -> String {
        format!("{}:presence:grace", self.prefix)
    }

    /// What the grace period keeps of each user: user id → `{username, channels}`.
    pub fn presence_grace_info(&self) -> String {
        format!("{}:presence:grace:info", self.prefix)
    }

    /// Prefix of the per-channel presence hashes (`<prefix>:presence:chan:<channel>`).
    pub fn presence_chan_prefix(&self) -> String {
        format!("{}:presence:chan:", self.prefix)
    }

    /// Live sockets per user in one channel: user id → count.
    pub fn presence_chan(&self, channel: &str) -> String {
        format!("{}{channel}", self.presence_chan_prefix())
    }

    /// What one instance added to the presence hashes, so it can be undone if it dies.
    pub fn presence_inst(&self, instance: &str) -> String {
        format!("{}:presence:inst:{instance}", self.prefix)
    }

    /// The set of instance ids that have presence bookkeeping.
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// An instance's heartbeat; it expires when the instance stops refreshing it.
    pub fn heartbeat(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// Throttle for coalesced `channel.presence` events (one per channel per second).
    pub fn presence_tick(&self, channel: &str) -> String {
        format!("{}:presence:tick:{channel}", self.prefix)
    }

    /// Message counter of a user in the current rate-limit window.
    pub fn rate_count(&self, user: &str) -> String {
        format!("{}:rl:msg:{user}", self.prefix)
    }

    /// A user's send block.
    pub fn rate_block(&self, user: &str) -> String {
        format!("{}:rl:block:{user}", self.prefix)
    }

    /// An attempt counter of one scope (login per address, per account, channel guesses,
    /// caps) and id.
    pub fn limit(&self, scope: &str, id: &str) -> String {
        format!("{}:rl:{scope}:{id}", self.prefix)
    }

    /// The pub/sub channel that carries every other server event between instances.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The pub/sub channel that carries `message.new` in seq order.
    pub fn fanout(&self) -> String {
        format!("{}:fanout", self.prefix)
    }

    /// The last seq of a channel published on the fan-out.
    pub fn fanout_last(&self, channel: &str) -> String {
        format!("{}:fanout:last:{channel}", self.prefix)
    }

    /// A channel's batches waiting for their predecessor: first seq → payload.
    pub fn fanout_parked(&self, channel: &str) -> String {
        format!("{}:fanout:parked:{channel}", self.prefix)
    }

    /// A channel's parked batches: first seq → last seq.
    pub fn fanout_parked_last(&self, channel: &str) -> String {
        format!("{}:fanout:parked-last:{channel}", self.prefix)
    }

    /// Channels with parked batches, scored by when they started waiting.
    pub fn fanout_waiting(&self) -> String {
        format!("{}:fanout:waiting", self.prefix)
    }

    /// The Socket.IO adapter's channel prefix.
    pub fn adapter(&self) -> String {
        format!("{}:socket.io", self.prefix)
    }
}
