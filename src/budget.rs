//! What one user's requests may cost an instance. Every client event, and every REST read of
//! a channel's content, is charged its cost (the contract's [`crate::contract::ClientEvent::COST`],
//! [`PAGE_COST`]) against the user's budget: `EVENT_BUDGET` units at once, refilled at
//! `EVENT_BUDGET_PER_SEC` (a token bucket, GCRA, from the `governor` crate). Over it, the
//! request is refused `rate_limited` with the wait, before it touches Postgres or Redis.
//!
//! The budget is per user on each instance, in memory: it protects what a flood spends, the
//! instance's database pool and workers, at no cost in round trips. A user's sockets on several
//! instances have one budget on each; sends keep their own cluster-wide limit in Redis
//! (`RATE_LIMIT_MESSAGES`), which is what bounds what a user may write.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// The cost of a REST read of a page: history (as `messages.sync`), channels or direct
/// messages with their unread counts.
pub const PAGE_COST: u32 = 5;

/// What every authenticated REST request costs, on top of its route's own cost, charged before
/// its session is checked in Redis and Postgres.
pub const REQUEST_COST: u32 = 1;

/// How many charges pass between two sweeps of the users whose budget is full again.
const SWEEP_EVERY: u64 = 8192;

/// The per-user budgets of an instance.
pub struct Budget {
    /// `None`: no budget (`EVENT_BUDGET=0`).
    limiter: Option<DefaultKeyedRateLimiter<Uuid>>,
    clock: DefaultClock,
    charges: AtomicU64,
}

impl Budget {
    /// `burst` units at once, refilled at `per_sec` units a second; `burst` 0 turns it off.
    pub fn new(burst: u32, per_sec: u32) -> Budget {
        let limiter = NonZeroU32::new(burst).map(|burst| {
            let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Budget {
            limiter,
            clock: DefaultClock::default(),
            charges: AtomicU64::new(0),
        }
    }

    /// Charges `cost` units to `user`'s budget; `rate_limited` (with the wait) when it does not
    /// hold them. A cost of 0 is free.
    pub fn charge(&self, user: Uuid, cost: u32) -> AppResult<()> {
        let (Some(limiter), Some(cost)) = (&self.limiter, NonZeroU32::new(cost)) else {
            return Ok(());
        };
        if self.charges.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Users whose budget is full again hold no state.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        match limiter.check_key_n(&user, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(over_budget(wait.as_millis().max(1) as u64))
            }
            // A cost over the whole budget can never be paid.
            Err(_) => Err(over_budget(1000)),
        }
    }
}

fn over_budget(retry_after_ms: u64) -> AppError {
    AppError {
        message: format!(
            "too many requests at once: try again in {} s",
            retry_after_ms.div_ceil(1000)
        ),
        ..AppError::rate_limited(retry_after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn a_budget_is_spent_per_user_and_refilled() {
        let budget = Budget::new(10, 1);
        let (ann, ben) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..2 {
            budget.charge(ann, 5).expect("within the budget");
        }
        let refused = budget.charge(ann, 1).unwrap_err();
        assert_eq!(refused.code, Code::RateLimited);
        assert!(refused
            .retry_after_ms
            .is_some_and(|ms| ms > 0 && ms <= 1000));
        // Free events and other users are not held up.
        budget.charge(ann, 0).expect("free");
        budget.charge(ben, 10).expect("another user's budget");
        assert!(budget.charge(ben, 11).is_err());
        // Off.
        let off = Budget::new(0, 0);
        for _ in 0..1000 {
            off.charge(ann, 100).expect("no budget");
        }
    }
}
