//! `message.new` fan-out in `seq` order on every instance.
//!
//! Two instances commit seqs 33 and 34 of a channel at nearly the same moment; broadcast
//! through the Socket.IO adapter, 34 can reach a socket before 33 (each instance sends to its
//! own sockets at once and to the others through Redis). So messages take one path instead: an
//! atomic Lua script publishes each batch of a channel's messages (what one group commit
//! stored: consecutive seqs, serialized once) on the channel `<prefix>:fanout` only when the
//! channel's previous seq has been published, parking it until then; every instance (the
//! sender's included) subscribes and delivers to its local sockets in the order Redis gives.
//! A parked batch whose predecessor never comes (its instance died between commit and
//! publish) is released after [`PARK_LIMIT`]: clients fill that gap with `messages.sync`.
//! When Redis is away, the sender delivers to its own sockets directly.
//!
//! This module is the sequencing only; [`super::delivery::Delivery`] publishes through it and
//! delivers what the subscription brings.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::keys::Keys;
use crate::now_ms;
use crate::store::messages::Message;

/// How long a batch may wait for its predecessor before it is published anyway.
pub const PARK_LIMIT: Duration = Duration::from_secs(1);
pub const SWEEP_PERIOD: Duration = Duration::from_millis(250);
/// How long a channel's last published seq is remembered after its last message. A channel
/// whose last seq is unknown (new, quiet for this long, or Redis lost it) publishes a batch at
/// once only when it starts at seq 1; any other waits for its predecessor like a gap, at most
/// [`PARK_LIMIT`].
const LAST_SEQ_MEMORY: Duration = Duration::from_secs(24 * 3600);

// One script for both moves, so they share the flush of waiting successors. A payload is a
// batch of consecutive seqs of one channel (first..=last).
// KEYS: last published seq, parked payloads (first seq -> payload), parked batches' last seqs
// (first seq -> last seq), channels with parked batches (zset by parking time).
// ARGV: first seq (empty: release the lowest parked batch, giving up on the gap before it),
// last seq, payload, pub/sub channel, now (ms), channel name, how long the last seq is
// remembered (ms). While the channel's last published seq is unknown, only a batch starting at
// seq 1 is published at once: any other could have a predecessor still on its way (two
// instances committing seqs 1 and 2 of a new channel), so it is parked like one behind a gap.
const SEQUENCE: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local releasing = ARGV[1] == ''
local top
if releasing then
  local parked = redis.call('HKEYS', KEYS[2])
  if #parked == 0 then redis.call('ZREM', KEYS[4], ARGV[6]) return 0 end
  local low = nil
  for _, s in ipairs(parked) do
    local n = tonumber(s)
    if low == nil or n < low then low = n end
  end
  top = low - 1
else
  local first = tonumber(ARGV[1])
  if (last >= 0 and first > last + 1) or (last < 0 and first > 1) then
    redis.call('HSET', KEYS[2], first, ARGV[3])
    redis.call('HSET', KEYS[3], first, ARGV[2])
    redis.call('ZADD', KEYS[4], 'NX', ARGV[5], ARGV[6])
    return 0
  end
  redis.call('PUBLISH', ARGV[4], ARGV[3])
  top = math.max(tonumber(ARGV[2]), last)
end
while true do
  local nxt = redis.call('HGET', KEYS[2], top + 1)
  if not nxt then break end
  local nlast = tonumber(redis.call('HGET', KEYS[3], top + 1))
  redis.call('PUBLISH', ARGV[4], nxt)
  redis.call('HDEL', KEYS[2], top + 1)
  redis.call('HDEL', KEYS[3], top + 1)
  top = nlast
end
if top > last then redis.call('SET', KEYS[1], top, 'PX', ARGV[7]) end
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[6])
elseif releasing then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
end
return 1
";

/// What goes over the fan-out channel: consecutive messages of one channel.
#[derive(Serialize)]
struct Batch<'a> {
    channel: &'a str,
    messages: &'a [&'a Message],
}

/// A batch as received: the messages stay raw JSON, serialized once by the sender.
#[derive(Deserialize)]
pub struct RawBatch {
    pub channel: String,
    pub messages: Vec<Box<RawValue>>,
}

/// Publishes each channel's batches in seq order through Redis.
pub struct Sequencer {
    redis: ConnectionManager,
    keys: Keys,
    sequence: Script,
}

impl Sequencer {
    pub fn new(redis: ConnectionManager, keys: Keys) -> Self {
        Self {
            redis,
            keys,
            sequence: Script::new(SEQUENCE),
        }
    }

    /// Runs the sequencing script for a channel's batch `seqs` (first, last); None releases
    /// its lowest parked batch.
    async fn sequence(
        &self,
        channel: &str,
        seqs: Option<(i64, i64)>,
        payload: &[u8],
    ) -> redis::RedisResult<i64> {
        let mut conn = self.redis.clone();
        let (first, last) = match seqs {
            Some((first, last)) => (first.to_string(), last.to_string()),
            None => (String::new(), String::new()),
        };
        self.sequence
            .key(self.keys.fanout_last(channel))
            .key(self.keys.fanout_parked(channel))
            .key(self.keys.fanout_parked_last(channel))
            .key(self.keys.fanout_waiting())
            .arg(first)
            .arg(last)
            .arg(payload)
            .arg(self.keys.fanout())
            .arg(now_ms())
            .arg(channel)
            .arg(LAST_SEQ_MEMORY.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
    }

    /// Publishes newly stored messages, in seq order per channel: one payload and one script
    /// call per channel, the channels at once. Returns the messages that Redis could not take,
    /// for the caller to deliver to its own sockets.
    pub async fn publish<'a>(&self, messages: &[&'a Message]) -> Vec<&'a Message> {
        let mut by_channel: BTreeMap<&str, Vec<&'a Message>> = BTreeMap::new();
        for m in messages {
            by_channel.entry(m.channel.as_str()).or_default().push(m);
        }
        let calls = by_channel.into_iter().map(|(channel, batch)| async move {
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Vec::new();
            };
            let seqs = (first.seq, last.seq);
            let payload = match serde_json::to_vec(&Batch {
                channel,
                messages: &batch,
            }) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "messages could not be serialized");
                    return Vec::new();
                }
            };
            match self.sequence(channel, Some(seqs), &payload).await {
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::warn!(error = %e, "fan-out unavailable: delivering to this instance only");
                    batch
                }
            }
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Releases messages parked longer than [`PARK_LIMIT`].
    pub async fn sweep(&self) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let cutoff = now_ms().saturating_sub(PARK_LIMIT.as_millis() as u64);
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.fanout_waiting())
            .arg("-inf")
            .arg(cutoff)
            .query_async(&mut conn)
            .await?;
        for channel in stale {
            tracing::warn!(%channel, "a message's predecessor never came; releasing it (clients resync)");
            self.sequence(&channel, None, &[]).await?;
        }
        Ok(())
    }
}
