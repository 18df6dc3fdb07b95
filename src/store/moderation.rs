//! The `moderation_log` table: what moderators did, for administrators to read.

use sqlx::PgExecutor;
use uuid::Uuid;

/// A moderation action to record.
#[derive(Clone, Debug, Default)]
pub struct Action<'a> {
    pub actor_id: Uuid,
    pub actor_name: &'a str,
    /// `message.delete`, `channel.remove_member`, `user.ban` or `user.unban`.
    pub action: &'a str,
    pub channel: Option<(Uuid, &'a str)>,
    /// The user acted on (their name is looked up and kept, so the entry outlives them).
    pub target: Option<Uuid>,
    pub message: Option<(Uuid, i64)>,
}

/// Records an action (in the caller's transaction, when given one).
pub async fn record<'e>(db: impl PgExecutor<'e>, a: &Action<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO moderation_log (id, actor_id, actor_name, action, channel_id, channel_name,
                                     target_user_id, target_username, message_id, message_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT username FROM users WHERE id = $7), $8, $9)",
        Uuid::now_v7(),
        a.actor_id,
        a.actor_name,
        a.action,
        a.channel.map(|c| c.0),
        a.channel.map(|c| c.1),
        a.target,
        a.message.map(|m| m.0),
        a.message.map(|m| m.1)
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One recorded action, as administrators read it.
pub use crate::contract::ModerationEntry as Entry;

/// The newest `limit` entries older than `before` (an entry's id), newest first.
pub async fn page<'e>(
    db: impl PgExecutor<'e>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as!(
        Entry,
        r#"SELECT id, at, actor_name AS actor, action, channel_name AS channel,
                  target_username AS target, message_id, message_seq
           FROM moderation_log WHERE $1::uuid IS NULL OR id < $1
           ORDER BY id DESC LIMIT $2"#,
        before,
        limit
    )
    .fetch_all(db)
    .await
}
