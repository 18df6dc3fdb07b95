//! Cluster-wide rate limits in Redis.
//!
//! Sending: at most `RATE_LIMIT_MESSAGES` per `RATE_LIMIT_WINDOW_SECS` per user, as a
//! generic cell rate (GCRA): each send takes the next slot of the user's schedule, one every
//! `window / limit`, and up to `limit` slots may be taken ahead of time, so a burst of `limit`
//! sends goes through at once. A send whose slot is further ahead is held until its slot comes,
//! when that is at most `RATE_LIMIT_HOLD_SECS` away: a burst a person makes (a pasted block of
//! lines) is delayed in order, never lost. A send further ahead than that blocks the user for
//! `RATE_LIMIT_BLOCK_SECS`. The check, the slot and the block are one Lua script on Redis's
//! clock, so concurrent sends on several instances cannot slip past it, and the block and the
//! schedule are Redis keys, so they outlive every instance. The sends an instance checks at
//! once go to Redis together: the script takes a batch and checks its sends in order (two sends
//! of one user in a batch take two slots), one call per batch (on a Redis Cluster, one call per
//! user of the batch, together: a user's keys share a hash tag, and a guest's address budget,
//! of another tag, is checked before).
//!
//! Login and channel passwords: attempts are counted before the password is checked, in one
//! atomic step ([`ATTEMPT`]), per client address and per account-and-address (capped), and per
//! account or channel (paced, never locked). Other caps (guests per address, channels per
//! user, guest sends per address) are fixed windows on the same script.

use crate::kv::Redis;
use redis::{RedisResult, Script};
use tokio::sync::{mpsc, oneshot};

use crate::keys::Keys;
use crate::shutdown::Shutdown;

// A batch of sends, checked in order. KEYS, three per send: the user's block, the user's
// schedule (the time, in ms on Redis's clock, at which the user's next slot is free), the guest
// budget of the client address (unused for registered users). ARGV: limit, window ms, block ms,
// hold ms, then one guest budget per send (0: not a guest). Returns three numbers per send:
// the verdict (1 allowed, 2 held, 0 refused), the wait in ms (until the slot for a held send,
// the retry for a refused one), whether this send started a block. A guest over the address
// budget is refused without starting a block. On a Redis Cluster the guest budget (another
// hash tag than the user's) is checked before, by [`ATTEMPT`], and given 0 here.
const SEND: &str = r"
local limit, window, block, hold =
  tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = window / limit
local ahead = interval * limit
local function check(block_key, schedule_key, guest_key, guest_cap)
  local blocked = redis.call('PTTL', block_key)
  if blocked > 0 then return 0, blocked, 0 end
  if guest_cap > 0 then
    local g = tonumber(redis.call('GET', guest_key) or '0')
    if g >= guest_cap then
      local ttl = redis.call('PTTL', guest_key)
      if ttl < 1 then ttl = 1 end
      return 0, ttl, 0
    end
  end
  local free = tonumber(redis.call('GET', schedule_key) or '0')
  if free < now then free = now end
  local after = free + interval
  -- Slots are fractions of a millisecond (a window that the limit does not divide), kept to
  -- three decimals: an excess under half a millisecond is rounding, not a send too many.
  local wait = after - ahead - now
  if wait < 0.5 then wait = 0 else wait = math.ceil(wait) end
  if wait > hold then
    redis.call('SET', block_key, 1, 'PX', block)
    redis.call('DEL', schedule_key)
    return 0, tonumber(block), 1
  end
  redis.call('SET', schedule_key, string.format('%.3f', after), 'PX',
             math.ceil(after - now) + 1)
  if guest_cap > 0 and redis.call('INCR', guest_key) == 1 then
    redis.call('PEXPIRE', guest_key, window)
  end
  if wait > 0 then return 2, wait, 0 end
  return 1, 0, 0
end
local out = {}
for i = 1, #KEYS / 3 do
  local verdict, wait, new_block =
    check(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], tonumber(ARGV[4 + i]))
  out[#out + 1] = verdict
  out[#out + 1] = wait
  out[#out + 1] = new_block
end
return out
";

/// Most sends checked in one script call.
const SEND_BATCH: usize = 256;
/// Sends waiting for their check, per instance; beyond it senders wait their turn.
const SEND_QUEUE: usize = 8192;

/// One check-and-count of attempts, atomic across instances: refused (with the wait in ms)
/// when a capped counter is full, or when the paced counter is past its threshold and another
/// attempt took the pace slot less than the pace ago; otherwise every counter counts the
/// attempt. Counting happens before the costly work (a password hash), so concurrent attempts
/// cannot all pass a check made before any of them was counted.
// KEYS: capped counters..., paced counter, pace slot. ARGV: window ms, pace threshold (0: no
// pacing, the last two keys unused), pace ms, caps of the capped counters...
const ATTEMPT: &str = r"
local n = #KEYS - 2
for i = 1, n do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  if c >= tonumber(ARGV[i + 3]) then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
local pacing = tonumber(ARGV[2]) > 0
local paced = 0
if pacing then paced = tonumber(redis.call('GET', KEYS[n + 1]) or '0') end
if pacing and paced >= tonumber(ARGV[2]) then
  if not redis.call('SET', KEYS[n + 2], 1, 'PX', ARGV[3], 'NX') then
    local ttl = redis.call('PTTL', KEYS[n + 2])
    if ttl < 1 then ttl = 1 end
    return ttl
  end
end
local last = n
if pacing then last = n + 1 end
for i = 1, last do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 0
";

/// Takes back one counted attempt from each key that still counts one (a key whose window
/// ended is not made again).
const FORGIVE: &str = r"
for _, key in ipairs(KEYS) do
  local c = tonumber(redis.call('GET', key) or '0')
  if c > 1 then redis.call('DECR', key) elseif c == 1 then redis.call('DEL', key) end
end
return 0
";

/// Login attempts allowed per client address in a window.
pub const LOGIN_ATTEMPTS_PER_ADDRESS: u64 = 50;
/// Login attempts allowed per account from one client address in a window.
pub const LOGIN_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS: u64 = 10;
/// Past this many attempts on one account in a window (from every address together), the
/// account's logins are paced to one per [`PACE_MS`]: slowed, never locked.
pub const LOGIN_PACE_AFTER: u64 = 10;
/// The login and channel-password throttling window.
pub const LOGIN_WINDOW_SECS: u64 = 900;
/// Wrong-password guesses for private channels allowed per user in a window.
pub const CHANNEL_GUESSES_PER_USER: u64 = 10;
/// Past this many guesses on one channel in a window, its guesses are paced.
pub const CHANNEL_PACE_AFTER: u64 = 20;
/// One paced attempt per this many milliseconds.
pub const PACE_MS: u64 = 1000;

/// A counter past whose threshold attempts are paced: one per [`PACE_MS`], taken from `slot`.
struct Paced {
    counter: String,
    after: u64,
    slot: String,
}

/// The verdict on one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Allowed once its slot comes, `wait_ms` from now: the caller holds it until then.
    Held {
        wait_ms: u64,
    },
    /// Refused; `new_block` is true for the send that started the block.
    Blocked {
        retry_after_ms: u64,
        new_block: bool,
    },
}

/// Rate limits of one cluster.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Redis,
    keys: Keys,
    /// The send window, which the guest budget per address shares.
    window_ms: u64,
    /// Send checks, gathered into batches by [`check_sends`].
    sends: mpsc::Sender<SendCheck>,
    attempt: Script,
    forgive: Script,
}

/// One send waiting for its check.
struct SendCheck {
    /// The user's block key, schedule key and guest budget key.
    keys: [String; 3],
    /// The guest budget (0: not a guest, or checked before).
    budget: u64,
    reply: oneshot::Sender<RedisResult<Verdict>>,
}

/// The send limit (`RATE_LIMIT_*`).
#[derive(Clone, Copy, Debug)]
pub struct SendLimit {
    /// Sends per window (at least 1).
    pub messages: u64,
    pub window_secs: u64,
    pub block_secs: u64,
    /// How long a send over the limit may be held for its slot (0: refused at once).
    pub hold_secs: u64,
}

/// What the send checks run with.
struct SendLimits {
    redis: Redis,
    script: Script,
    limit: u64,
    window_ms: u64,
    block_ms: u64,
    hold_ms: u64,
}

/// Checks the sends of this instance: what arrived while the previous call ran goes to Redis
/// in the next one (at most [`SEND_BATCH`]). Ends when every [`RateLimiter`] is gone.
async fn check_sends(limits: SendLimits, mut checks: mpsc::Receiver<SendCheck>) {
    let mut batch = Vec::with_capacity(SEND_BATCH);
    while checks.recv_many(&mut batch, SEND_BATCH).await > 0 {
        match limits.check(&batch).await {
            Ok(verdicts) => {
                for (check, verdict) in batch.drain(..).zip(verdicts) {
                    let _ = check.reply.send(Ok(verdict));
                }
            }
            Err(e) => {
                for check in batch.drain(..) {
                    let _ = check.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl SendLimits {
    /// A verdict per send of `batch`, in order: one script call on a single Redis; on a
    /// cluster, one per user (whose keys share a slot), together.
    async fn check(&self, batch: &[SendCheck]) -> RedisResult<Vec<Verdict>> {
        if !self.redis.is_cluster() {
            let all: Vec<&SendCheck> = batch.iter().collect();
            return self.check_slot(&all).await;
        }
        let mut by_user: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        for (i, check) in batch.iter().enumerate() {
            by_user.entry(&check.keys[1]).or_default().push(i);
        }
        let calls = by_user.into_values().map(|indices| async move {
            let checks: Vec<&SendCheck> = indices.iter().map(|&i| &batch[i]).collect();
            (indices, self.check_slot(&checks).await)
        });
        let mut verdicts = vec![Verdict::Allowed; batch.len()];
        for (indices, result) in futures_util::future::join_all(calls).await {
            for (i, verdict) in indices.into_iter().zip(result?) {
                verdicts[i] = verdict;
            }
        }
        Ok(verdicts)
    }

    /// One script call for `checks`: a verdict per send, in order.
    async fn check_slot(&self, checks: &[&SendCheck]) -> RedisResult<Vec<Verdict>> {
        let mut call = self.script.prepare_invoke();
        call.arg(self.limit)
            .arg(self.window_ms)
            .arg(self.block_ms)
            .arg(self.hold_ms);
        for check in checks {
            call.key(&check.keys[..]).arg(check.budget);
        }
        let flat: Vec<i64> = call.invoke_async(&mut self.redis.clone()).await?;
        if flat.len() != checks.len() * 3 {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the send check returned a wrong number of verdicts",
            )));
        }
        Ok(flat
            .chunks_exact(3)
            .map(|v| match v[0] {
                1 => Verdict::Allowed,
                2 => Verdict::Held {
                    wait_ms: v[1].max(0) as u64,
                },
                _ => Verdict::Blocked {
                    retry_after_ms: v[1].max(1) as u64,
                    new_block: v[2] == 1,
                },
            })
            .collect())
    }
}

impl RateLimiter {
    /// Starts this instance's send checker, a task of `tasks` (it ends when the last clone of
    /// the limiter is dropped, or when shutdown begins).
    pub fn new(redis: Redis, keys: Keys, limit: SendLimit, tasks: &Shutdown) -> Self {
        let window_ms = limit.window_secs.max(1) * 1000;
        let (sends, checks) = mpsc::channel(SEND_QUEUE);
        let limits = SendLimits {
            redis: redis.clone(),
            script: Script::new(SEND),
            limit: limit.messages.max(1),
            window_ms,
            block_ms: limit.block_secs.max(1) * 1000,
            hold_ms: limit.hold_secs * 1000,
        };
        tasks.spawn_until_stopped(check_sends(limits, checks));
        Self {
            redis,
            keys,
            window_ms,
            sends,
            attempt: Script::new(ATTEMPT),
            forgive: Script::new(FORGIVE),
        }
    }

    /// Takes a slot of `user`'s schedule for one send and says whether it may go through now,
    /// after a wait, or not at all.
    /// A guest's send also counts against `guest`: the client address and the budget all
    /// guests of that address share per window; over it, the send is refused without counting
    /// against the guest (no block). Checked with the other sends of this instance that are
    /// waiting, in one script call. On a Redis Cluster the budget (another hash tag) is
    /// checked just before, and a send the guest's own limit refuses gives its place back.
    pub async fn check_send(&self, user: &str, guest: Option<(&str, u64)>) -> RedisResult<Verdict> {
        let mut checked_before = None;
        let (budget_key, budget) = match guest {
            Some((address, cap)) if self.redis.is_cluster() => {
                let key = self.keys.limit("guest-send", address);
                if let Some(wait) = self
                    .attempt(&[(key.clone(), cap.max(1))], None, self.window_ms)
                    .await?
                {
                    return Ok(Verdict::Blocked {
                        retry_after_ms: wait,
                        new_block: false,
                    });
                }
                checked_before = Some(key);
                (self.keys.rate_count(user), 0)
            }
            Some((address, cap)) => (self.keys.limit("guest-send", address), cap.max(1)),
            None => (self.keys.rate_count(user), 0),
        };
        let (reply, answer) = oneshot::channel();
        let check = SendCheck {
            keys: [
                self.keys.rate_block(user),
                self.keys.rate_count(user),
                budget_key,
            ],
            budget,
            reply,
        };
        let gone =
            || redis::RedisError::from((redis::ErrorKind::Client, "the send checker stopped"));
        self.sends.send(check).await.map_err(|_| gone())?;
        let verdict = answer.await.map_err(|_| gone())??;
        if let (Some(key), Verdict::Blocked { .. }) = (checked_before, verdict) {
            self.forgive(&[key]).await?;
        }
        Ok(verdict)
    }

    /// Runs [`ATTEMPT`]: `None` when the attempt may go ahead (and is counted), else the
    /// milliseconds to wait.
    async fn attempt(
        &self,
        capped: &[(String, u64)],
        paced: Option<Paced>,
        window_ms: u64,
    ) -> redis::RedisResult<Option<u64>> {
        let mut conn = self.redis.clone();
        let mut call = self.attempt.prepare_invoke();
        for (key, _) in capped {
            call.key(key);
        }
        // Without pacing the script never touches its last two keys.
        let (counter, after, slot) = match &paced {
            Some(p) => (p.counter.as_str(), p.after, p.slot.as_str()),
            None => (capped[0].0.as_str(), 0, capped[0].0.as_str()),
        };
        call.key(counter).key(slot);
        call.arg(window_ms).arg(after).arg(PACE_MS);
        for (_, cap) in capped {
            call.arg(*cap);
        }
        let wait: u64 = call.invoke_async(&mut conn).await?;
        Ok((wait > 0).then_some(wait))
    }

    /// Counts a login attempt before its password is checked: `Some(wait)` refuses it. Limits:
    /// per client address, per account from that address, and a pace on the account as a
    /// whole (so that failures from one address never lock the owner out from another).
    pub async fn login_attempt(
        &self,
        account: &str,
        address: &str,
    ) -> redis::RedisResult<Option<u64>> {
        self.attempt(
            &[
                (self.login_address_key(address), LOGIN_ATTEMPTS_PER_ADDRESS),
                (
                    self.login_account_address_key(account, address),
                    LOGIN_ATTEMPTS_PER_ACCOUNT_AND_ADDRESS,
                ),
            ],
            Some(Paced {
                counter: self.keys.attempts("login-account", account),
                after: LOGIN_PACE_AFTER,
                slot: self.keys.attempts("login-pace", account),
            }),
            LOGIN_WINDOW_SECS * 1000,
        )
        .await
    }

    /// A login succeeded: the owner's attempts from this address are forgiven, and the
    /// attempt does not count against the address.
    pub async fn login_succeeded(&self, account: &str, address: &str) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let _: () = redis::cmd("DEL")
            .arg(self.login_account_address_key(account, address))
            .query_async(&mut conn)
            .await?;
        self.forgive(&[self.login_address_key(address)]).await
    }

    fn login_address_key(&self, address: &str) -> String {
        self.keys.attempts("login-addr", address)
    }

    fn login_account_address_key(&self, account: &str, address: &str) -> String {
        self.keys
            .attempts("login-account-addr", &format!("{account}:{address}"))
    }

    /// Runs [`FORGIVE`] on `keys`.
    async fn forgive(&self, keys: &[String]) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let mut call = self.forgive.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        let _: i64 = call.invoke_async(&mut conn).await?;
        Ok(())
    }

    /// Counts a password guess for a private channel before it is checked: `Some(wait)`
    /// refuses it. Limits: per user, and a pace on the channel.
    pub async fn channel_guess(
        &self,
        user: &str,
        channel: &str,
    ) -> redis::RedisResult<Option<u64>> {
        self.attempt(
            &[(
                self.keys.attempts("join-user", user),
                CHANNEL_GUESSES_PER_USER,
            )],
            Some(Paced {
                counter: self.keys.attempts("join-channel", channel),
                after: CHANNEL_PACE_AFTER,
                slot: self.keys.attempts("join-pace", channel),
            }),
            LOGIN_WINDOW_SECS * 1000,
        )
        .await
    }

    /// A right channel password does not count against the user.
    pub async fn channel_guess_succeeded(&self, user: &str) -> redis::RedisResult<()> {
        self.forgive(&[self.keys.attempts("join-user", user)]).await
    }

    /// Counts a guest created from `address`, at most `cap` an hour: `Some(wait)` refuses.
    pub async fn guest_created(&self, address: &str, cap: u64) -> redis::RedisResult<Option<u64>> {
        self.hourly_cap(self.keys.limit("guests", address), cap)
            .await
    }

    /// Counts a channel created by `user`, at most `cap` an hour: `Some(wait)` refuses.
    pub async fn channel_created(&self, user: &str, cap: u64) -> redis::RedisResult<Option<u64>> {
        self.hourly_cap(self.keys.limit("channels", user), cap)
            .await
    }

    /// Counts an upload of `user` against `cap` an hour; `Some(wait)` when over it.
    pub async fn upload_started(&self, user: &str, cap: u64) -> redis::RedisResult<Option<u64>> {
        self.hourly_cap(self.keys.limit("uploads", user), cap).await
    }

    /// A plain fixed-window cap of `cap` an hour on one key.
    async fn hourly_cap(&self, key: String, cap: u64) -> redis::RedisResult<Option<u64>> {
        self.attempt(&[(key, cap)], None, 3_600_000).await
    }
}
