//! Cluster presence that survives instance crashes.
//!
//! `presence` counts each user's live connections in the cluster (online at 0→1, offline at
//! 1→0, so several tabs are one presence), and `presence:chan:<channel>` counts each user's
//! sockets in a channel. Every increment is also recorded, in the same Lua script, in this
//! instance's hash `presence:inst:<id>`; the instance refreshes a heartbeat key with a TTL of
//! three periods. An instance that finds another's hash without a heartbeat subtracts that
//! hash from the counters in one atomic script and reports who went offline. Starting an
//! instance never wipes anybody else's presence.
//!
//! Decrements are guarded by the instance hash: once an instance's bookkeeping has been reaped,
//! a late disconnect from it changes nothing, so counts never go below the truth.
//!
//! Going offline is not announced at once: the user enters a grace period (`presence:grace`,
//! a sorted set by deadline, with their name and channels in `presence:grace:info`) for
//! `PRESENCE_OFFLINE_GRACE_SECS`. A user who connects again meanwhile, on any instance, leaves
//! it silently (a tab reload or a failover announces nothing); the presence list shows users in
//! grace as online. Every instance sweeps the expired entries; the one whose script removes an
//! entry announces the offline, so it is announced once, also after the instance the user was
//! on shut down.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::kv::Redis;
use redis::Script;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::keys::Keys;

// Returns {connections, resumed}: resumed is 1 when the user's first connection ended a grace
// period (they were never announced offline, so they are not announced online either).
const CONNECT: &str = r"
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'u:' .. ARGV[1], 1)
redis.call('SADD', KEYS[4], ARGV[3])
local resumed = 0
if c == 1 then
  resumed = redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('HDEL', KEYS[6], ARGV[1])
end
return {c, resumed}
";

// Puts a user who went offline into the grace period (a later deadline wins; channels merge).
// KEYS: grace zset, grace info. ARGV: user, deadline ms, username, channels as JSON array.
const GRACE: &str = r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
local channels = cjson.decode(ARGV[4])
if old then
  local seen = {}
  for _, ch in ipairs(channels) do seen[ch] = true end
  for _, ch in ipairs(cjson.decode(old).channels) do
    if not seen[ch] then table.insert(channels, ch) end
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({username = ARGV[3], channels = channels}))
return 1
";

// Takes the expired grace entries (at most 200): each is removed here, once in the cluster,
// and returned as [user, info, ...] when the user is still offline.
// KEYS: grace zset, grace info, presence. ARGV: now ms.
const GRACE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
local out = {}
for _, u in ipairs(due) do
  redis.call('ZREM', KEYS[1], u)
  local info = redis.call('HGET', KEYS[2], u)
  redis.call('HDEL', KEYS[2], u)
  local c = tonumber(redis.call('HGET', KEYS[3], u) or '0')
  if c <= 0 and info then
    table.insert(out, u)
    table.insert(out, info)
  end
end
return out
";

const DISCONNECT: &str = r"
local f = 'u:' .. ARGV[1]
local mine = tonumber(redis.call('HGET', KEYS[3], f) or '0')
if mine <= 0 then return -1 end
if mine == 1 then redis.call('HDEL', KEYS[3], f) else redis.call('HINCRBY', KEYS[3], f, -1) end
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if c <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
return c
";

const CHAN_JOIN: &str = r"
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], 'c:' .. ARGV[2] .. '|' .. ARGV[1], 1)
return {c, redis.call('HLEN', KEYS[1])}
";

const CHAN_LEAVE: &str = r"
local f = 'c:' .. ARGV[2] .. '|' .. ARGV[1]
local mine = tonumber(redis.call('HGET', KEYS[2], f) or '0')
if mine <= 0 then return {-1, redis.call('HLEN', KEYS[1])} end
if mine == 1 then redis.call('HDEL', KEYS[2], f) else redis.call('HINCRBY', KEYS[2], f, -1) end
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if c <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  c = 0
end
return {c, redis.call('HLEN', KEYS[1])}
";

// Returns {offline users as [id, name, ...], channel departures as [channel, id, ...]}.
const REAP: &str = r"
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {{}, {}, 0} end
local entries = redis.call('HGETALL', KEYS[2])
local offline = {}
local departed = {}
for i = 1, #entries, 2 do
  local f, n = entries[i], tonumber(entries[i + 1])
  if string.sub(f, 1, 2) == 'u:' then
    local u = string.sub(f, 3)
    local c = redis.call('HINCRBY', KEYS[3], u, -n)
    if c <= 0 then
      redis.call('HDEL', KEYS[3], u)
      local name = redis.call('HGET', KEYS[4], u)
      redis.call('HDEL', KEYS[4], u)
      table.insert(offline, u)
      table.insert(offline, name or '')
    end
  else
    local rest = string.sub(f, 3)
    local sep = string.find(rest, '|', 1, true)
    if sep then
      local ch, u = string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1)
      local key = ARGV[2] .. ch
      local c = redis.call('HINCRBY', key, u, -n)
      if c <= 0 then
        redis.call('HDEL', key, u)
        table.insert(departed, ch)
        table.insert(departed, u)
      end
    end
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[5], ARGV[1])
return {offline, departed, 1}
";

/// What the grace period keeps of a user who went offline.
#[derive(serde::Deserialize)]
struct GraceInfo {
    username: String,
    #[serde(default)]
    channels: Vec<String>,
}

/// A user whose last connection went away with a reaped instance.
#[derive(Clone, Debug)]
pub struct WentOffline {
    pub user_id: String,
    pub username: String,
    /// Channels the user was in through the dead instance.
    pub channels: Vec<String>,
}

/// What one reap undid.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The instance was reaped (its heartbeat was gone, or the reap was forced).
    pub gone: bool,
    pub offline: Vec<WentOffline>,
    /// Channels whose online count changed.
    pub channels: HashSet<String>,
}

/// A change of a user's presence in one channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelChange {
    /// The user's first socket entered, or last socket left, the channel.
    pub transition: bool,
    /// Users online in the channel afterwards.
    pub online: u64,
}

/// This instance's view of cluster presence.
pub struct Presence {
    redis: Redis,
    keys: Keys,
    instance: String,
    heartbeat: Duration,
    /// Channels whose online count changed since the last `channel.presence` tick.
    dirty: Mutex<HashSet<String>>,
    connect: Script,
    disconnect: Script,
    chan_join: Script,
    chan_leave: Script,
    reap: Script,
    grace: Script,
    grace_due: Script,
    /// How long an offline announcement waits for the user to come back.
    offline_grace: Duration,
    /// This process's token in the heartbeat key: another live process with the same
    /// `INSTANCE_ID` holds another.
    boot: String,
}

impl Presence {
    pub fn new(
        redis: Redis,
        keys: Keys,
        instance: String,
        heartbeat: Duration,
        offline_grace: Duration,
    ) -> Self {
        Self {
            redis,
            keys,
            instance,
            heartbeat,
            dirty: Mutex::new(HashSet::new()),
            connect: Script::new(CONNECT),
            disconnect: Script::new(DISCONNECT),
            chan_join: Script::new(CHAN_JOIN),
            chan_leave: Script::new(CHAN_LEAVE),
            reap: Script::new(REAP),
            grace: Script::new(GRACE),
            grace_due: Script::new(GRACE_DUE),
            offline_grace,
            boot: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Takes this instance id for this process: its heartbeat key must be free. A key left by a
    /// crashed process expires within three periods, so that long is waited for; a key still
    /// refreshed after that belongs to a live instance with the same id, and `Ok(false)` says
    /// this one must not start.
    pub async fn claim(&self) -> redis::RedisResult<bool> {
        let ttl_ms = (self.heartbeat.as_millis() as u64 * 3).max(1);
        let deadline = tokio::time::Instant::now() + self.heartbeat * 3 + Duration::from_secs(1);
        loop {
            let mut conn = self.redis.clone();
            let taken: Option<String> = redis::cmd("SET")
                .arg(self.keys.heartbeat(&self.instance))
                .arg(&self.boot)
                .arg("PX")
                .arg(ttl_ms)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            if taken.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tracing::info!(instance = %self.instance, "INSTANCE_ID is held; waiting for it to expire");
            tokio::time::sleep(self.heartbeat.min(Duration::from_secs(1))).await;
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat
    }

    /// Counts a new connection; true when the user just came online (and was not in the grace
    /// period of an earlier offline, which is then over: nothing is announced).
    pub async fn on_connect(&self, user: Uuid, username: &str) -> redis::RedisResult<bool> {
        let mut conn = self.redis.clone();
        let (count, resumed): (i64, i64) = self
            .connect
            .key(self.keys.presence())
            .key(self.keys.presence_names())
            .key(self.keys.presence_inst(&self.instance))
            .key(self.keys.instances())
            .key(self.keys.presence_grace())
            .key(self.keys.presence_grace_info())
            .arg(user.to_string())
            .arg(username)
            .arg(&self.instance)
            .invoke_async(&mut conn)
            .await?;
        Ok(count == 1 && resumed == 0)
    }

    /// Starts the grace period of a user who went offline (their last connection closed, or
    /// their instance was reaped): announced after it unless they come back.
    pub async fn enter_grace(
        &self,
        user: &str,
        username: &str,
        channels: &[String],
    ) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let deadline = now_ms() + self.offline_grace.as_millis() as u64;
        let channels = serde_json::to_string(channels).unwrap_or_else(|_| "[]".to_owned());
        let _: i64 = self
            .grace
            .key(self.keys.presence_grace())
            .key(self.keys.presence_grace_info())
            .arg(user)
            .arg(deadline)
            .arg(username)
            .arg(channels)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The users whose grace period ended while they stayed offline, each returned to exactly
    /// one caller in the cluster (which announces them).
    pub async fn take_expired_graces(&self) -> redis::RedisResult<Vec<WentOffline>> {
        let mut conn = self.redis.clone();
        let flat: Vec<String> = self
            .grace_due
            .key(self.keys.presence_grace())
            .key(self.keys.presence_grace_info())
            .key(self.keys.presence())
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(flat
            .chunks_exact(2)
            .filter_map(|p| {
                let info: GraceInfo = serde_json::from_str(&p[1]).ok()?;
                Some(WentOffline {
                    user_id: p[0].clone(),
                    username: info.username,
                    channels: info.channels,
                })
            })
            .collect())
    }

    /// Users in their grace period: `(id, name, channels)`.
    async fn in_grace(&self) -> redis::RedisResult<Vec<(String, GraceInfo)>> {
        let mut conn = self.redis.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.presence_grace_info())
            .query_async(&mut conn)
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(u, info)| Some((u, serde_json::from_str(&info).ok()?)))
            .collect())
    }

    /// The user's live connections in the cluster, as presence counts them.
    pub async fn connections(&self, user: Uuid) -> redis::RedisResult<u64> {
        let mut conn = self.redis.clone();
        let n: Option<i64> = redis::cmd("HGET")
            .arg(self.keys.presence())
            .arg(user.to_string())
            .query_async(&mut conn)
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Counts a closed connection; true when the user just went offline.
    pub async fn on_disconnect(&self, user: Uuid) -> redis::RedisResult<bool> {
        let mut conn = self.redis.clone();
        let count: i64 = self
            .disconnect
            .key(self.keys.presence())
            .key(self.keys.presence_names())
            .key(self.keys.presence_inst(&self.instance))
            .arg(user.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(count == 0)
    }

    /// Counts a socket of `user` entering `channel`.
    pub async fn join_channel(
        &self,
        user: Uuid,
        channel: &str,
    ) -> redis::RedisResult<ChannelChange> {
        self.count_in_channel(&self.chan_join, user, channel, 1)
            .await
    }

    /// Counts a socket of `user` leaving `channel`.
    pub async fn leave_channel(
        &self,
        user: Uuid,
        channel: &str,
    ) -> redis::RedisResult<ChannelChange> {
        self.count_in_channel(&self.chan_leave, user, channel, 0)
            .await
    }

    /// Runs a channel counting script; the user's count reaching `transition_at` is a
    /// transition (first socket in, or last socket out) that changes the channel's count.
    async fn count_in_channel(
        &self,
        script: &Script,
        user: Uuid,
        channel: &str,
        transition_at: i64,
    ) -> redis::RedisResult<ChannelChange> {
        let mut conn = self.redis.clone();
        let (count, online): (i64, i64) = script
            .key(self.keys.presence_chan(channel))
            .key(self.keys.presence_inst(&self.instance))
            .arg(user.to_string())
            .arg(channel)
            .invoke_async(&mut conn)
            .await?;
        let change = ChannelChange {
            transition: count == transition_at,
            online: online.max(0) as u64,
        };
        if change.transition {
            self.mark_dirty(channel);
        }
        Ok(change)
    }

    /// Users online in a channel.
    pub async fn channel_online(&self, channel: &str) -> redis::RedisResult<u64> {
        let mut conn = self.redis.clone();
        redis::cmd("HLEN")
            .arg(self.keys.presence_chan(channel))
            .query_async(&mut conn)
            .await
    }

    /// Users with a live connection (in `channel`, when given), at most `limit`.
    pub async fn online_users(
        &self,
        channel: Option<&str>,
        limit: usize,
    ) -> redis::RedisResult<Vec<(String, String)>> {
        let mut conn = self.redis.clone();
        let hash = match channel {
            Some(c) => self.keys.presence_chan(c),
            None => self.keys.presence(),
        };
        let mut ids: Vec<String> = redis::cmd("HKEYS").arg(hash).query_async(&mut conn).await?;
        // Users in their grace period still count as online (a reload is no departure).
        let graced: std::collections::BTreeMap<String, String> = self
            .in_grace()
            .await?
            .into_iter()
            .filter(|(_, info)| channel.is_none_or(|c| info.channels.iter().any(|x| x == c)))
            .map(|(u, info)| (u, info.username))
            .collect();
        ids.extend(graced.keys().cloned());
        ids.sort();
        ids.dedup();
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.presence_names())
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        Ok(ids
            .into_iter()
            .zip(names)
            .filter_map(|(id, name)| {
                let name = name.or_else(|| graced.get(&id).cloned())?;
                Some((id, name))
            })
            .collect())
    }

    /// Refreshes this instance's heartbeat (it lives three periods). Returns whether the
    /// heartbeat was still there: when it was not, Redis lost this instance's presence (a
    /// restart) or another instance reaped it, and it must be rebuilt.
    pub async fn heartbeat(&self) -> redis::RedisResult<bool> {
        let mut conn = self.redis.clone();
        let ttl_ms = (self.heartbeat.as_millis() as u64 * 3).max(1);
        let (previous,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.heartbeat(&self.instance))
            .arg(&self.boot)
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET")
            .cmd("SADD")
            .arg(self.keys.instances())
            .arg(&self.instance)
            .ignore()
            .query_async(&mut conn)
            .await?;
        if previous.as_ref().is_some_and(|p| *p != self.boot) {
            tracing::error!(instance = %self.instance, "another process uses this INSTANCE_ID: give each instance its own");
        }
        Ok(previous.is_some())
    }

    /// Removes this instance's heartbeat (on a clean shutdown).
    pub async fn stop_heartbeat(&self) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        redis::cmd("DEL")
            .arg(self.keys.heartbeat(&self.instance))
            .query_async(&mut conn)
            .await
    }

    /// Users online in the cluster (with a live connection).
    pub async fn online_count(&self) -> redis::RedisResult<u64> {
        let mut conn = self.redis.clone();
        redis::cmd("HLEN")
            .arg(self.keys.presence())
            .query_async(&mut conn)
            .await
    }

    /// Instances that have presence bookkeeping, this one included.
    pub async fn instances(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.redis.clone();
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.instances())
            .query_async(&mut conn)
            .await?;
        ids.sort();
        Ok(ids)
    }

    /// Instances that have presence bookkeeping, this one excluded.
    pub async fn other_instances(&self) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.redis.clone();
        let mut ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.instances())
            .query_async(&mut conn)
            .await?;
        ids.retain(|id| id != &self.instance);
        Ok(ids)
    }

    /// Undoes an instance's bookkeeping if its heartbeat is gone (or unconditionally with
    /// `force`, for this instance's own leftovers at start-up and shutdown).
    pub async fn reap(&self, instance: &str, force: bool) -> redis::RedisResult<Reaped> {
        let mut conn = self.redis.clone();
        let (offline, departed, gone): (Vec<String>, Vec<String>, i64) = self
            .reap
            .key(self.keys.heartbeat(instance))
            .key(self.keys.presence_inst(instance))
            .key(self.keys.presence())
            .key(self.keys.presence_names())
            .key(self.keys.instances())
            .arg(instance)
            .arg(self.keys.presence_chan_prefix())
            .arg(if force { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        let mut reaped = Reaped {
            gone: gone == 1,
            ..Reaped::default()
        };
        let departed: Vec<(String, String)> = departed
            .chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        for (channel, _) in &departed {
            reaped.channels.insert(channel.clone());
            self.mark_dirty(channel);
        }
        for pair in offline.chunks_exact(2) {
            let user_id = pair[0].clone();
            let channels = departed
                .iter()
                .filter(|(_, u)| *u == user_id)
                .map(|(c, _)| c.clone())
                .collect();
            reaped.offline.push(WentOffline {
                user_id,
                username: pair[1].clone(),
                channels,
            });
        }
        Ok(reaped)
    }

    fn mark_dirty(&self, channel: &str) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(channel.to_owned());
        }
    }

    /// Channels whose count changed since the last call.
    pub fn take_dirty(&self) -> HashSet<String> {
        self.dirty
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Puts channels back for the next tick (another instance announced them this second).
    pub fn requeue_dirty(&self, channels: impl IntoIterator<Item = String>) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.extend(channels);
        }
    }

    /// Claims the right to announce a channel's count for the next second, cluster-wide.
    pub async fn claim_announcement(&self, channel: &str) -> redis::RedisResult<bool> {
        let mut conn = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.presence_tick(channel))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }
}
