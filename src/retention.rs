//! Retention: removing the messages a channel no longer keeps (older than its age limit, or
//! beyond its message-count limit), with their stored files, and the uploads never sent.
//!
//! Every instance runs the enforcer; one at a time does the work, holding a Postgres advisory
//! lock on a connection of its own (released when the pass ends, or when the connection drops
//! with its instance). For each channel the cut is computed from `last_seq` and the creation
//! times, `channels.first_seq` is raised to it first (history and `messages.sync` stop showing
//! older messages at once, and tell clients where history begins), and the older rows are then
//! deleted in short batches, so a hot channel's row and index are never locked for long and a
//! send waits at most for one batch.
//!
//! `messages` is partitioned by month ([`crate::store::partitions`]): with an instance-wide age
//! limit, a month whose every message is past it is dropped whole first (per-channel limits can
//! only be stricter, so every channel gives up those messages), and the rows left past a limit
//! are then deleted as above. Each tick also creates the coming months' partitions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::state::AppState;
use crate::store::{messages, partitions, uploads};

/// The advisory lock that makes one instance at a time enforce retention.
pub const LOCK_KEY: i64 = 0x6261_6e74_6572_7265; // "banterre"
/// Messages deleted per statement.
const BATCH: i64 = 1000;
/// Channels examined per query.
const CHANNEL_PAGE: i64 = 500;
/// How long an announced upload may stay unsent before it is removed.
pub const UNSENT_UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub messages: u64,
    pub uploads: u64,
}

/// The limits in force for one channel: each is the strictest of the instance's and the
/// channel's own (0 or none: no limit).
fn strictest(instance: u64, channel: Option<i64>) -> Option<i64> {
    let instance = (instance > 0).then_some(instance.min(i64::MAX as u64) as i64);
    match (instance, channel.filter(|v| *v > 0)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs a pass every `RETENTION_INTERVAL_SECS` until the instance stops.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    let every = Duration::from_secs(state.config.retention_interval_secs.max(1));
    state.shutdown.clone().spawn_until_stopped(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = partitions::ensure(&state.db).await {
                tracing::warn!(error = %e, "message partitions for the coming months not created; retried next interval");
            }
            let result = enforce(&state).await;
            if let Ok(pass) = &result {
                state.metrics.retention_messages.inc_by(pass.messages);
                state.metrics.retention_uploads.inc_by(pass.uploads);
            }
            match result {
                Ok(pass) if pass.messages > 0 || pass.uploads > 0 => {
                    tracing::info!(
                        messages = pass.messages,
                        uploads = pass.uploads,
                        "retention removed expired data"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retried next interval")
                }
            }
        }
    });
}

/// One pass, if no other instance is running one.
pub async fn enforce(state: &AppState) -> Result<Pass, sqlx::Error> {
    let mut lock = state.db.acquire().await?;
    // The session lock must never go back to the pool with the connection.
    lock.close_on_drop();
    let held: bool = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "held!""#, LOCK_KEY)
        .fetch_one(&mut *lock)
        .await?;
    if !held {
        return Ok(Pass::default());
    }
    let result = pass(state).await;
    let _ = sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        .fetch_one(&mut *lock)
        .await;
    result
}

async fn pass(state: &AppState) -> Result<Pass, sqlx::Error> {
    let db = &state.db;
    let config = &state.config;
    let mut done = Pass::default();
    let instance_limits = config.retention_max_age_secs > 0 || config.retention_max_messages > 0;
    if config.retention_max_age_secs > 0 {
        let secs = config.retention_max_age_secs.min(i64::MAX as u64) as i64;
        let cutoff = Utc::now() - chrono::Duration::seconds(secs);
        for partition in partitions::list(db).await? {
            if partition.end > cutoff {
                break;
            }
            let dropped = partitions::drop_partition(db, &partition).await?;
            tracing::info!(partition = %partition.name, messages = dropped.messages, "retention dropped a month of messages");
            done.messages += dropped.messages;
            if !dropped.file_keys.is_empty() {
                let gone = uploads::delete_unreferenced(db, &dropped.file_keys).await?;
                state.uploads.delete_objects(&gone).await;
                done.uploads += gone.len() as u64;
            }
        }
    }
    let mut after = Uuid::nil();
    loop {
        // Channels that hold messages and have a limit of their own, or all of them that hold
        // messages when the instance has one.
        let page = sqlx::query!(
            "SELECT id, first_seq, last_seq, retention_max_age_secs, retention_max_messages
             FROM channels
             WHERE id > $1 AND last_seq >= first_seq
               AND ($2 OR retention_max_age_secs IS NOT NULL
                       OR retention_max_messages IS NOT NULL)
             ORDER BY id LIMIT $3",
            after,
            instance_limits,
            CHANNEL_PAGE
        )
        .fetch_all(db)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for c in &page {
            let max_messages = strictest(config.retention_max_messages, c.retention_max_messages);
            let max_age = strictest(config.retention_max_age_secs, c.retention_max_age_secs);
            let mut cut = c.first_seq;
            if let Some(n) = max_messages {
                cut = cut.max(c.last_seq - n + 1);
            }
            if let Some(secs) = max_age {
                let cutoff = Utc::now() - chrono::Duration::seconds(secs);
                cut = cut.max(first_kept_since(db, c.id, c.first_seq, c.last_seq, cutoff).await?);
            }
            if cut > c.first_seq {
                let (messages, files) = trim(state, c.id, cut).await?;
                done.messages += messages;
                done.uploads += files;
            }
        }
        if (page.len() as i64) < CHANNEL_PAGE {
            break;
        }
    }
    // Uploads announced and never sent.
    let before = Utc::now() - chrono::Duration::from_std(UNSENT_UPLOAD_TTL).unwrap_or_default();
    loop {
        let keys = uploads::unsent(db, before, BATCH).await?;
        if keys.is_empty() {
            break;
        }
        let removed = uploads::delete_unreferenced(db, &keys).await?;
        state.uploads.delete_objects(&removed).await;
        done.uploads += removed.len() as u64;
        if (keys.len() as i64) < BATCH {
            break;
        }
    }
    Ok(done)
}

/// The first seq (from `first_seq`) of a message created at or after `cutoff`; past the last
/// message when all are older. Walks the (channel_id, seq) index from the oldest kept message,
/// so its cost is the number of messages about to be removed.
async fn first_kept_since(
    db: &PgPool,
    channel: Uuid,
    first_seq: i64,
    last_seq: i64,
    cutoff: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let found = sqlx::query_scalar!(
        "SELECT seq FROM messages
         WHERE channel_id = $1 AND seq >= $2 AND created_at >= $3
         ORDER BY seq LIMIT 1",
        channel,
        first_seq,
        cutoff
    )
    .fetch_optional(db)
    .await?;
    Ok(found.unwrap_or(last_seq + 1))
}

/// Raises a channel's `first_seq` to `cut`, then deletes its older messages in batches and
/// the stored files only they referred to. Returns how many messages and files it removed.
async fn trim(state: &AppState, channel: Uuid, cut: i64) -> Result<(u64, u64), sqlx::Error> {
    let db = &state.db;
    // A short update of the channel row (sends lock it briefly too); never lowers first_seq.
    sqlx::query!(
        "UPDATE channels SET first_seq = GREATEST(first_seq, $2) WHERE id = $1",
        channel,
        cut
    )
    .execute(db)
    .await?;
    let (mut removed, mut files_removed) = (0, 0);
    loop {
        let gone = sqlx::query!(
            "DELETE FROM messages WHERE (id, created_at) IN (
                 SELECT id, created_at FROM messages WHERE channel_id = $1 AND seq < $2
                 ORDER BY seq LIMIT $3)
             RETURNING file_key, sender_id, client_message_id",
            channel,
            cut,
            BATCH
        )
        .fetch_all(db)
        .await?;
        let full = gone.len() as i64 == BATCH;
        removed += gone.len() as u64;
        // Their idempotency keys go with them: the ids may be used again, as before.
        let (senders, ids): (Vec<Uuid>, Vec<Uuid>) = gone
            .iter()
            .filter_map(|m| Some((m.sender_id?, m.client_message_id)))
            .unzip();
        messages::forget_keys(db, &senders, &ids).await?;
        let keys: Vec<Uuid> = gone.into_iter().filter_map(|m| m.file_key).collect();
        if !keys.is_empty() {
            let gone = uploads::delete_unreferenced(db, &keys).await?;
            state.uploads.delete_objects(&gone).await;
            files_removed += gone.len() as u64;
        }
        if !full {
            break;
        }
        // Let sends to this channel through between batches.
        tokio::task::yield_now().await;
    }
    // The removed messages' reactions and mentions (below the new first seq).
    sqlx::query!(
        "DELETE FROM message_reactions WHERE channel_id = $1 AND seq < $2",
        channel,
        cut
    )
    .execute(db)
    .await?;
    sqlx::query!(
        "DELETE FROM message_mentions WHERE channel_id = $1 AND seq < $2",
        channel,
        cut
    )
    .execute(db)
    .await?;
    Ok((removed, files_removed))
}

#[cfg(test)]
mod tests {
    use super::strictest;

    #[test]
    fn the_strictest_limit_applies() {
        assert_eq!(strictest(0, None), None);
        assert_eq!(strictest(0, Some(10)), Some(10));
        assert_eq!(strictest(100, None), Some(100));
        assert_eq!(strictest(100, Some(10)), Some(10));
        assert_eq!(strictest(5, Some(10)), Some(5));
    }
}
