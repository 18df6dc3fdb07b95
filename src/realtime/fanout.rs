//! `message.new` fan-out in `seq` order on every instance.
//!
//! Two instances commit seqs 33 and 34 of a channel at nearly the same moment; broadcast
//! through the Socket.IO adapter, 34 can reach a socket before 33 (each instance sends to its
//! own sockets at once and to the others through Redis). So messages take one path instead: an
//! atomic Lua script publishes each batch of a channel's messages (what one group commit
//! stored: consecutive seqs, serialized once) on its bucket's pub/sub channel
//! (`{<prefix>:fo:<bucket>}`) only when the channel's previous seq has been published, parking
//! it until then (one script call covers every channel of a bucket in a group commit, each
//! channel's batch published on its own); every instance (the sender's included) subscribes to
//! every bucket and delivers to its local sockets in the order Redis gives. On a Redis Cluster
//! there are [`crate::keys::FANOUT_BUCKETS`] buckets, each a shard channel published with
//! `SPUBLISH` from a script on the bucket's slot, so the fan-out spreads over the masters; a
//! single Redis has one bucket and plain `PUBLISH`.
//! A parked batch whose predecessor never comes (its instance died between commit and
//! publish) is released after [`PARK_LIMIT`]: clients fill that gap with `messages.sync`.
//! When Redis is away, the sender delivers to its own sockets directly.
//!
//! This module is the sequencing only; [`super::delivery::Delivery`] publishes through it and
//! delivers what the subscription brings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::kv::Redis;
use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::clock::now_ms;
use crate::contract::Message;
use crate::keys::Keys;

/// How long a batch may wait for its predecessor before it is published anyway.
pub const PARK_LIMIT: Duration = Duration::from_secs(1);
pub const SWEEP_PERIOD: Duration = Duration::from_millis(250);
/// How long a channel's last published seq is remembered after its last message. A channel
/// whose last seq is unknown (new, quiet for this long, or Redis lost it) publishes a batch at
/// once only when it starts at seq 1; any other waits for its predecessor like a gap, at most
/// [`PARK_LIMIT`].
const LAST_SEQ_MEMORY: Duration = Duration::from_secs(24 * 3600);

// One script for both moves, so they share the flush of waiting successors, and one call for
// every channel of one bucket in a group commit. A payload is a batch of consecutive seqs of
// one channel (first..=last). Every key is of the bucket's hash tag, as is its pub/sub channel.
// KEYS: the bucket's channels with parked batches (zset by parking time), then three per
// channel: last published seq, parked payloads (first seq -> payload), parked batches' last
// seqs (first seq -> last seq). Returns how many of the bucket's channels have parked batches.
// ARGV: publish command (PUBLISH or SPUBLISH), pub/sub channel, now (ms), how long the last
// seq is remembered (ms), then four per
// channel: first seq (empty: release the lowest parked batch, giving up on the gap before it),
// last seq, payload, channel name. While a channel's last published seq is unknown, only a
// batch starting at seq 1 is published at once: any other could have a predecessor still on
// its way (two instances committing seqs 1 and 2 of a new channel), so it is parked like one
// behind a gap.
const SEQUENCE: &str = r"
local waiting, publish, pubsub, now, memory = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function sequence(last_key, parked_key, parked_last_key, first_arg, last_arg, payload, name)
  local last = tonumber(redis.call('GET', last_key) or '-1')
  local releasing = first_arg == ''
  local top
  if releasing then
    local parked = redis.call('HKEYS', parked_key)
    if #parked == 0 then redis.call('ZREM', waiting, name) return end
    local low = nil
    for _, s in ipairs(parked) do
      local n = tonumber(s)
      if low == nil or n < low then low = n end
    end
    top = low - 1
  else
    local first = tonumber(first_arg)
    if (last >= 0 and first > last + 1) or (last < 0 and first > 1) then
      redis.call('HSET', parked_key, first, payload)
      redis.call('HSET', parked_last_key, first, last_arg)
      redis.call('ZADD', waiting, 'NX', now, name)
      return
    end
    redis.call(publish, pubsub, payload)
    top = math.max(tonumber(last_arg), last)
  end
  while true do
    local nxt = redis.call('HGET', parked_key, top + 1)
    if not nxt then break end
    local nlast = tonumber(redis.call('HGET', parked_last_key, top + 1))
    redis.call(publish, pubsub, nxt)
    redis.call('HDEL', parked_key, top + 1)
    redis.call('HDEL', parked_last_key, top + 1)
    top = nlast
  end
  if top > last then redis.call('SET', last_key, top, 'PX', memory) end
  if redis.call('HLEN', parked_key) == 0 then
    redis.call('ZREM', waiting, name)
  elseif releasing then
    redis.call('ZADD', waiting, now, name)
  end
end
for i = 0, (#KEYS - 1) / 3 - 1 do
  sequence(KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i],
           ARGV[5 + 4 * i], ARGV[6 + 4 * i], ARGV[7 + 4 * i], ARGV[8 + 4 * i])
end
return redis.call('ZCARD', waiting)
";

/// What goes over the fan-out channel: consecutive messages of one channel.
#[derive(Serialize)]
struct Batch<'a> {
    channel: &'a str,
    /// The first message's seq (the others follow without gaps).
    first: i64,
    messages: &'a [&'a Message],
}

/// What goes over the fan-out channel for one change of a stored message (an edit, a delete,
/// a reaction): the event to deliver to the channel.
#[derive(Serialize)]
struct ChangeBatch<'a, T: Serialize + ?Sized> {
    channel: &'a str,
    change: ChangeEvent<'a, T>,
}

#[derive(Serialize)]
struct ChangeEvent<'a, T: Serialize + ?Sized> {
    event: &'a str,
    /// The change's number in its channel.
    number: i64,
    data: &'a T,
}

/// A batch as received: messages, or one change event; the payloads stay raw JSON,
/// serialized once by the sender.
#[derive(Deserialize)]
pub struct RawBatch {
    pub channel: String,
    /// The first message's seq (absent from an instance of an earlier version).
    #[serde(default)]
    pub first: Option<i64>,
    #[serde(default)]
    pub messages: Vec<Box<RawValue>>,
    #[serde(default)]
    pub change: Option<RawChange>,
}

/// A change event as received.
#[derive(Deserialize)]
pub struct RawChange {
    pub event: String,
    /// The change's number (absent from an instance of an earlier version).
    #[serde(default)]
    pub number: Option<i64>,
    pub data: Box<RawValue>,
}

/// The sequencing stream of a channel's changes: numbered by the channel's change counter,
/// ordered like its messages, in the same bucket (the name's part before `:`).
fn changes_stream(channel: &str) -> String {
    format!("{channel}:changes")
}

/// One stream's part of a sequencing call (a channel's messages, or its changes): its batch of
/// numbers (first, last) with its payload, or `None` to release its lowest parked batch.
struct Step<'a> {
    channel: &'a str,
    seqs: Option<(i64, i64)>,
    payload: Vec<u8>,
}

/// Publishes each channel's batches in seq order through Redis.
pub struct Sequencer {
    redis: Redis,
    keys: Keys,
    sequence: Script,
    /// Buckets where this instance saw parked batches: swept every [`SWEEP_PERIOD`]. The
    /// others are swept every [`FULL_SWEEP_EVERY`] periods (batches another instance parked
    /// and could not release, having died), so 64 buckets cost a few lookups a second.
    watched: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    sweeps: std::sync::atomic::AtomicU64,
}

/// Every this many sweep periods, every bucket is swept.
const FULL_SWEEP_EVERY: u64 = 20;

impl Sequencer {
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Self {
            redis,
            keys,
            sequence: Script::new(SEQUENCE),
            watched: Default::default(),
            sweeps: Default::default(),
        }
    }

    fn watch(&self, bucket: u32, waiting: bool) {
        if let Ok(mut watched) = self.watched.lock() {
            if waiting {
                watched.insert(bucket);
            } else {
                watched.remove(&bucket);
            }
        }
    }

    /// Runs the sequencing script for `steps` (channels of one `bucket`), in one call.
    async fn sequence(&self, bucket: u32, steps: &[Step<'_>]) -> redis::RedisResult<i64> {
        let mut conn = self.redis.clone();
        let mut call = self.sequence.prepare_invoke();
        call.key(self.keys.fanout_waiting(bucket));
        call.arg(self.redis.publish_command())
            .arg(self.keys.fanout(bucket))
            .arg(now_ms())
            .arg(LAST_SEQ_MEMORY.as_millis() as u64);
        for Step {
            channel,
            seqs,
            payload,
        } in steps
        {
            let (first, last) = match seqs {
                Some((first, last)) => (first.to_string(), last.to_string()),
                None => (String::new(), String::new()),
            };
            call.key(self.keys.fanout_last(channel))
                .key(self.keys.fanout_parked(channel))
                .key(self.keys.fanout_parked_last(channel));
            call.arg(first).arg(last).arg(payload).arg(channel);
        }
        let waiting: i64 = call.invoke_async(&mut conn).await?;
        self.watch(bucket, waiting > 0);
        Ok(waiting)
    }

    /// Publishes newly stored messages, in seq order per channel: one payload per channel,
    /// one script call per bucket (one for them all on a single Redis). Returns the messages that Redis could not take, for the
    /// caller to deliver to its own sockets.
    pub async fn publish<'a>(&self, messages: &[&'a Message]) -> Vec<&'a Message> {
        let mut by_channel: BTreeMap<&str, Vec<&'a Message>> = BTreeMap::new();
        for m in messages {
            by_channel.entry(m.channel.as_str()).or_default().push(m);
        }
        let mut buckets: BTreeMap<u32, Vec<Step<'_>>> = BTreeMap::new();
        for (&channel, batch) in &by_channel {
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                continue;
            };
            match serde_json::to_vec(&Batch {
                channel,
                first: first.seq,
                messages: batch,
            }) {
                Ok(payload) => buckets
                    .entry(self.keys.bucket(channel))
                    .or_default()
                    .push(Step {
                        channel,
                        seqs: Some((first.seq, last.seq)),
                        payload,
                    }),
                Err(e) => tracing::warn!(error = %e, "messages could not be serialized"),
            }
        }
        let calls = buckets
            .iter()
            .map(|(&bucket, steps)| async move { (steps, self.sequence(bucket, steps).await) });
        let mut unsent = Vec::new();
        for (steps, result) in futures_util::future::join_all(calls).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "fan-out unavailable: delivering to this instance only");
                for step in steps {
                    if let Some(batch) = by_channel.get(step.channel) {
                        unsent.extend(batch.iter().copied());
                    }
                }
            }
        }
        unsent
    }

    /// Publishes change `number` of `channel` (an edit, a delete, a reaction) as `event`, in
    /// change order. Returns whether Redis took it (else the caller delivers it locally).
    pub async fn publish_change<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        number: i64,
        event: &str,
        data: &T,
    ) -> bool {
        let payload = match serde_json::to_vec(&ChangeBatch {
            channel,
            change: ChangeEvent {
                event,
                number,
                data,
            },
        }) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %e, "a change could not be serialized");
                return false;
            }
        };
        let stream = changes_stream(channel);
        let step = Step {
            channel: &stream,
            seqs: Some((number, number)),
            payload,
        };
        match self.sequence(self.keys.bucket(channel), &[step]).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "fan-out unavailable: delivering a change to this instance only");
                false
            }
        }
    }

    /// Releases messages parked longer than [`PARK_LIMIT`]: in the buckets where this
    /// instance saw parked batches, and now and then in every bucket.
    pub async fn sweep(&self) -> redis::RedisResult<()> {
        let cutoff = now_ms().saturating_sub(PARK_LIMIT.as_millis() as u64);
        let round = self
            .sweeps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buckets: Vec<u32> = if round.is_multiple_of(FULL_SWEEP_EVERY) {
            self.keys.buckets().collect()
        } else {
            self.watched
                .lock()
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default()
        };
        // One lookup per bucket (a cluster pipeline must not span slots), together: every
        // waiting channel with when it started waiting.
        let lookups = buckets.into_iter().map(|bucket| {
            let mut conn = self.redis.clone();
            let cmd = redis::cmd("ZRANGE")
                .arg(self.keys.fanout_waiting(bucket))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .to_owned();
            async move {
                let waiting = cmd.query_async::<Vec<(String, f64)>>(&mut conn).await?;
                Ok::<_, redis::RedisError>((bucket, waiting))
            }
        });
        let mut stale = Vec::new();
        for (bucket, waiting) in futures_util::future::try_join_all(lookups).await? {
            self.watch(bucket, !waiting.is_empty());
            stale.extend(
                waiting
                    .into_iter()
                    .filter(|(_, since)| *since <= cutoff as f64)
                    .map(|(channel, _)| channel),
            );
        }
        for channel in stale {
            tracing::warn!(%channel, "a message's predecessor never came; releasing it (clients resync)");
            let release = Step {
                channel: &channel,
                seqs: None,
                payload: Vec::new(),
            };
            self.sequence(self.keys.bucket(&channel), &[release])
                .await?;
        }
        Ok(())
    }
}
