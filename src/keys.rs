//! Names of every Redis key banter uses, all under `REDIS_PREFIX` so that clusters (and tests)
//! sharing one Redis never see each other's data.
//!
//! Keys that one Lua script touches together share a hash tag (`{…}`), so that on a Redis
//! Cluster each script runs on one slot:
//! - `{P:presence}`: every presence key (the cluster counters, the per-channel counters, the
//!   per-instance bookkeeping, heartbeats and the grace period), which the reaping script
//!   undoes together.
//! - `{P:u:<user>}`: a user's send window and block.
//! - `{P:auth}`: login and channel-password attempt counters, checked together per attempt.
//! - `{P:fo:<bucket>}`: the fan-out state of the channels of one bucket, with the bucket's
//!   shard channel ([`FANOUT_BUCKETS`] buckets on a cluster, one on a single Redis).
//!
//! Keys used alone (revocations, hourly caps, announcement throttles) carry no tag and spread
//! over the whole cluster.

/// Fan-out buckets on a Redis Cluster: each is one shard channel with its sequencing keys, so
/// message fan-out spreads over the masters (the slots of 64 tags land on every master of a
/// cluster of up to a few dozen). Every instance of a cluster must use the same number.
pub const FANOUT_BUCKETS: u32 = 64;

/// Builds prefixed Redis key names.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    /// Fan-out buckets: [`FANOUT_BUCKETS`] on a cluster, 1 on a single Redis.
    buckets: u32,
}

impl Keys {
    /// Key names for a Redis Cluster (`cluster`) or a single Redis.
    pub fn for_target(prefix: &str, cluster: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            buckets: if cluster { FANOUT_BUCKETS } else { 1 },
        }
    }

    /// A revoked session id (`jti`), kept until the token would have expired.
    pub fn revoked(&self, jti: &str) -> String {
        format!("{}:revoked:{jti}", self.prefix)
    }

    /// Cluster-wide live connections per user: user id → count.
    pub fn presence(&self) -> String {
        format!("{{{}:presence}}", self.prefix)
    }

    /// Usernames of users present in `presence`: user id → username.
    pub fn presence_names(&self) -> String {
        format!("{{{}:presence}}:names", self.prefix)
    }

    /// Users in the grace period before their offline is announced: user id → deadline (ms).
    pub fn presence_grace(&self) -> String {
        format!("{{{}:presence}}:grace", self.prefix)
    }

    /// What the grace period keeps of each user: user id → `{username, channels}`.
    pub fn presence_grace_info(&self) -> String {
        format!("{{{}:presence}}:grace:info", self.prefix)
    }

    /// Prefix of the per-channel presence hashes (`{<prefix>:presence}:chan:<channel>`).
    pub fn presence_chan_prefix(&self) -> String {
        format!("{{{}:presence}}:chan:", self.prefix)
    }

    /// Live sockets per user in one channel: user id → count.
    pub fn presence_chan(&self, channel: &str) -> String {
        format!("{}{channel}", self.presence_chan_prefix())
    }

    /// What one instance added to the presence hashes, so it can be undone if it dies.
    pub fn presence_inst(&self, instance: &str) -> String {
        format!("{{{}:presence}}:inst:{instance}", self.prefix)
    }

    /// The set of instance ids that have presence bookkeeping.
    pub fn instances(&self) -> String {
        format!("{{{}:presence}}:instances", self.prefix)
    }

    /// An instance's heartbeat; it expires when the instance stops refreshing it.
    pub fn heartbeat(&self, instance: &str) -> String {
        format!("{{{}:presence}}:instance:{instance}", self.prefix)
    }

    /// Throttle for coalesced `channel.presence` events (one per channel per second).
    pub fn presence_tick(&self, channel: &str) -> String {
        format!("{}:presence-tick:{channel}", self.prefix)
    }

    /// A user's send schedule: when (ms on Redis's clock) their next send slot is free.
    pub fn rate_count(&self, user: &str) -> String {
        format!("{{{}:u:{user}}}:rl:msg", self.prefix)
    }

    /// A user's send block.
    pub fn rate_block(&self, user: &str) -> String {
        format!("{{{}:u:{user}}}:rl:block", self.prefix)
    }

    /// An attempt counter (login per address, per account, channel guesses), checked with
    /// the others of one attempt in one script.
    pub fn attempts(&self, scope: &str, id: &str) -> String {
        format!("{{{}:auth}}:{scope}:{id}", self.prefix)
    }

    /// A counter of one scope (caps: guests per address, channels per user, uploads, guest
    /// sends per address) and id, used alone.
    pub fn limit(&self, scope: &str, id: &str) -> String {
        format!("{}:rl:{scope}:{id}", self.prefix)
    }

    /// The fan-out bucket of a channel (0 on a single Redis); a channel's other streams
    /// (`<channel>:changes`) are in its bucket.
    pub fn bucket(&self, channel: &str) -> u32 {
        if self.buckets <= 1 {
            return 0;
        }
        let channel = channel.split(':').next().unwrap_or(channel);
        // FNV-1a: stable across processes and versions (a bucket must not move between
        // instances of one cluster).
        let mut h: u32 = 0x811c_9dc5;
        for b in channel.as_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h % self.buckets
    }

    /// Every fan-out bucket.
    pub fn buckets(&self) -> impl Iterator<Item = u32> {
        0..self.buckets
    }

    /// The hash tag of a fan-out bucket.
    fn bucket_tag(&self, bucket: u32) -> String {
        format!("{{{}:fo:{bucket}}}", self.prefix)
    }

    /// The pub/sub channel (a shard channel on a cluster) that carries `message.new` of one
    /// bucket's channels, in seq order.
    pub fn fanout(&self, bucket: u32) -> String {
        self.bucket_tag(bucket)
    }

    /// The pub/sub channel that carries the other server events of one bucket between
    /// instances.
    pub fn events(&self, bucket: u32) -> String {
        format!("{}:events", self.bucket_tag(bucket))
    }

    /// The last seq of a channel published on the fan-out.
    pub fn fanout_last(&self, channel: &str) -> String {
        format!("{}:last:{channel}", self.bucket_tag(self.bucket(channel)))
    }

    /// A channel's batches waiting for their predecessor: first seq → payload.
    pub fn fanout_parked(&self, channel: &str) -> String {
        format!("{}:parked:{channel}", self.bucket_tag(self.bucket(channel)))
    }

    /// A channel's parked batches: first seq → last seq.
    pub fn fanout_parked_last(&self, channel: &str) -> String {
        format!(
            "{}:parked-last:{channel}",
            self.bucket_tag(self.bucket(channel))
        )
    }

    /// A bucket's channels with parked batches, scored by when they started waiting.
    pub fn fanout_waiting(&self, bucket: u32) -> String {
        format!("{}:waiting", self.bucket_tag(bucket))
    }

    /// What an instance last reported of itself (the cluster page), JSON with a short TTL.
    pub fn instance_stats(&self, instance: &str) -> String {
        format!("{}:ops:{instance}", self.prefix)
    }

    /// A recoverable Socket.IO session (connection state recovery), by its private id.
    pub fn recovery(&self, pid: &str) -> String {
        format!("{}:recovery:{pid}", self.prefix)
    }

    /// When an instance that stopped without disconnecting its sockets was found gone.
    pub fn instance_gone(&self, instance: &str) -> String {
        format!("{}:gone:{instance}", self.prefix)
    }

    /// The Socket.IO adapter's channel prefix.
    pub fn adapter(&self) -> String {
        format!("{}:socket.io", self.prefix)
    }
}
