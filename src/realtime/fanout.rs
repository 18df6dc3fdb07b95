//! `message.new` fan-out in `seq` order on every instance.
//!
//! Two instances commit seqs 33 and 34 of a channel at nearly the same moment; broadcast
//! through the Socket.IO adapter, 34 can reach a socket before 33 (each instance sends to its
//! own sockets at once and to the others through Redis). So messages take one path instead: an
//! atomic Lua script publishes each message on the channel `<prefix>:fanout` only when the
//! channel's previous seq has been published, parking it until then; every instance (the
//! sender's included) subscribes and delivers to its local sockets in the order Redis gives.
//! A parked message whose predecessor never comes (its instance died between commit and
//! publish) is released after [`PARK_LIMIT`]: clients fill that gap with `messages.sync`.
//! When Redis is away, the sender delivers to its own sockets directly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::Script;
use serde_json::Value;
use socketioxide_redis::drivers::Driver;

use super::{bus::Bus, channel_room, emit};
use crate::keys::Keys;
use crate::store::messages::Message;
use crate::AppState;

/// How long a message may wait for its predecessor before it is published anyway.
pub const PARK_LIMIT: Duration = Duration::from_secs(1);
const SWEEP_PERIOD: Duration = Duration::from_millis(250);
/// How long a channel's last published seq is remembered.
const LAST_SEQ_MEMORY: Duration = Duration::from_secs(5);

// One script for both moves, so they share the flush of waiting successors.
// KEYS: last published seq, parked messages (seq → payload), channels with parked messages
// (zset by parking time). ARGV: seq (empty: release the lowest parked message, giving up on
// the gap before it), payload, pub/sub channel, now (ms), channel name, how long the last seq
// is remembered (ms). A channel quiet for that long (or whose messages went out directly while
// Redis was away) starts afresh: its next message is published at once.
const SEQUENCE: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local releasing = ARGV[1] == ''
local top
if releasing then
  local parked = redis.call('HKEYS', KEYS[2])
  if #parked == 0 then redis.call('ZREM', KEYS[3], ARGV[5]) return 0 end
  local low = nil
  for _, s in ipairs(parked) do
    local n = tonumber(s)
    if low == nil or n < low then low = n end
  end
  top = low - 1
else
  local seq = tonumber(ARGV[1])
  if last >= 0 and seq > last + 1 then
    redis.call('HSET', KEYS[2], seq, ARGV[2])
    redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[5])
    return 0
  end
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  top = math.max(seq, last)
end
while true do
  local next = redis.call('HGET', KEYS[2], top + 1)
  if not next then break end
  redis.call('PUBLISH', ARGV[3], next)
  redis.call('HDEL', KEYS[2], top + 1)
  top = top + 1
end
if top > last then redis.call('SET', KEYS[1], top, 'PX', ARGV[6]) end
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[5])
elseif releasing then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
return 1
";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Publishes messages in seq order and delivers what arrives to this instance's sockets.
pub struct Fanout {
    redis: ConnectionManager,
    keys: Keys,
    sequence: Script,
}

impl Fanout {
    pub fn new(redis: ConnectionManager, keys: Keys) -> Self {
        Self {
            redis,
            keys,
            sequence: Script::new(SEQUENCE),
        }
    }

    /// Runs the sequencing script for a channel; `seq` None releases its lowest parked message.
    async fn sequence(
        &self,
        channel: &str,
        seq: Option<i64>,
        payload: &[u8],
    ) -> redis::RedisResult<i64> {
        let mut conn = self.redis.clone();
        self.sequence
            .key(self.keys.fanout_last(channel))
            .key(self.keys.fanout_parked(channel))
            .key(self.keys.fanout_waiting())
            .arg(seq.map(|s| s.to_string()).unwrap_or_default())
            .arg(payload)
            .arg(self.keys.fanout())
            .arg(now_ms())
            .arg(channel)
            .arg(LAST_SEQ_MEMORY.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
    }

    /// Sends a stored message to every socket of its channel, on every instance, in seq order.
    pub async fn send(&self, state: &AppState, message: &Message) {
        let payload = match serde_json::to_vec(message) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "message could not be serialized");
                return;
            }
        };
        if let Err(e) = self
            .sequence(&message.channel, Some(message.seq), &payload)
            .await
        {
            tracing::warn!(error = %e, "fan-out unavailable: delivering to this instance only");
            emit::broadcast_local(
                state,
                vec![channel_room(&message.channel)],
                "message.new",
                message,
            )
            .await;
        }
    }

    /// Releases messages parked longer than [`PARK_LIMIT`].
    async fn sweep(&self) -> redis::RedisResult<()> {
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

/// Subscribes this instance to the fan-out and starts delivering and sweeping.
pub async fn start(state: &AppState, redis: redis::Client) -> anyhow::Result<()> {
    let bus = Bus::connect(redis).await?;
    let mut stream = bus.subscribe(state.keys.fanout(), 4096).await?;
    let deliver_state = state.clone();
    tokio::spawn(async move {
        // The bus must live as long as its subscription.
        let _bus = bus;
        while let Some((_, payload)) = stream.next().await {
            let Ok(message) = serde_json::from_slice::<Value>(&payload) else {
                tracing::warn!("unreadable message on the fan-out");
                continue;
            };
            let Some(channel) = message.get("channel").and_then(Value::as_str) else {
                continue;
            };
            let room = channel_room(channel);
            emit::broadcast_local(&deliver_state, vec![room], "message.new", &message).await;
        }
    });
    let sweep_state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_PERIOD).await;
            if let Err(e) = sweep_state.fanout.sweep().await {
                tracing::debug!(error = %e, "fan-out sweep failed");
            }
        }
    });
    Ok(())
}
