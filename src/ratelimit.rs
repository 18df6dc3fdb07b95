//! Cluster-wide rate limits in Redis.
//!
//! Sending: at most `RATE_LIMIT_MESSAGES` per `RATE_LIMIT_WINDOW_SECS` per user (a fixed
//! window); the message over the limit blocks the user for `RATE_LIMIT_BLOCK_SECS`. The check,
//! the count and the block are one Lua script, so concurrent sends on several instances cannot
//! slip past it, and the block is a Redis key, so it outlives every instance.
//!
//! Login: failed attempts are counted per account and per client address; past the limit,
//! further attempts are refused until the window ends.

use redis::aio::ConnectionManager;
use redis::Script;

use crate::keys::Keys;

const SEND: &str = r"
local blocked = redis.call('PTTL', KEYS[1])
if blocked > 0 then return {0, blocked, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return {0, tonumber(ARGV[3]), 1}
end
return {1, 0, 0}
";

/// Failed login attempts allowed per account in a window.
pub const LOGIN_FAILURES_PER_ACCOUNT: u64 = 10;
/// Failed login attempts allowed per client address in a window.
pub const LOGIN_FAILURES_PER_ADDRESS: u64 = 50;
/// The login throttling window.
pub const LOGIN_WINDOW_SECS: u64 = 900;

/// The verdict on one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; `new_block` is true for the send that started the block.
    Blocked {
        retry_after_ms: u64,
        new_block: bool,
    },
}

/// Rate limits of one cluster.
#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    keys: Keys,
    limit: u64,
    window_ms: u64,
    block_ms: u64,
    send: Script,
}

impl RateLimiter {
    pub fn new(
        redis: ConnectionManager,
        keys: Keys,
        limit: u64,
        window_secs: u64,
        block_secs: u64,
    ) -> Self {
        Self {
            redis,
            keys,
            limit,
            window_ms: window_secs.max(1) * 1000,
            block_ms: block_secs.max(1) * 1000,
            send: Script::new(SEND),
        }
    }

    /// Counts one send of `user` and says whether it may go through.
    pub async fn check_send(&self, user: &str) -> redis::RedisResult<Verdict> {
        let mut conn = self.redis.clone();
        let (allowed, retry_after_ms, new_block): (i64, i64, i64) = self
            .send
            .key(self.keys.rate_block(user))
            .key(self.keys.rate_count(user))
            .arg(self.limit)
            .arg(self.window_ms)
            .arg(self.block_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Verdict::Allowed
        } else {
            Verdict::Blocked {
                retry_after_ms: retry_after_ms.max(1) as u64,
                new_block: new_block == 1,
            }
        })
    }

    /// Milliseconds until login attempts are allowed again for this account and address, if
    /// either is over its limit.
    pub async fn login_blocked(
        &self,
        account: &str,
        address: &str,
    ) -> redis::RedisResult<Option<u64>> {
        let mut conn = self.redis.clone();
        let account_key = self.keys.login_failures("account", account);
        let address_key = self.keys.login_failures("addr", address);
        let (a, a_ttl, b, b_ttl): (Option<u64>, i64, Option<u64>, i64) = redis::pipe()
            .get(&account_key)
            .pttl(&account_key)
            .get(&address_key)
            .pttl(&address_key)
            .query_async(&mut conn)
            .await?;
        let mut wait = None;
        if a.unwrap_or(0) >= LOGIN_FAILURES_PER_ACCOUNT {
            wait = Some(a_ttl.max(1) as u64);
        }
        if b.unwrap_or(0) >= LOGIN_FAILURES_PER_ADDRESS {
            wait = Some(wait.unwrap_or(0).max(b_ttl.max(1) as u64));
        }
        Ok(wait)
    }

    /// Records a failed login for this account and address.
    pub async fn login_failed(&self, account: &str, address: &str) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let mut pipe = redis::pipe();
        for key in [
            self.keys.login_failures("account", account),
            self.keys.login_failures("addr", address),
        ] {
            pipe.incr(&key, 1).ignore();
            pipe.cmd("EXPIRE")
                .arg(&key)
                .arg(LOGIN_WINDOW_SECS)
                .arg("NX")
                .ignore();
        }
        pipe.query_async(&mut conn).await
    }
}
