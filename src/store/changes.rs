//! Changes to stored messages: edits, deletes (tombstones) and reactions, and the change cursor
//! that lets a client that was offline converge.
//!
//! Each change runs in one transaction that first locks the message row (changes to one
//! message are serialized, so a reaction cap or a delete is checked against the current state),
//! then takes the channel's next change number under the channel row's lock (held to commit,
//! so within a channel change numbers commit in order, with no gap) and writes it to the
//! message's `change_seq`. Lock order is always message, then channel; sends lock only the
//! channel row, so no two of them wait on each other in a cycle.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::messages;
use super::moderation;
use crate::contract::{
    server, ChangeEvent, Message, MessageDeleted, MessageReactions, MessageUpdated, Reaction,
};

/// Most distinct emoji on one message.
pub const MAX_REACTIONS: i64 = 20;

/// What a change does.
#[derive(Clone, Debug)]
pub enum Change {
    /// New text (validated and filtered), and the users it mentions.
    Edit { text: String, mentions: Vec<Uuid> },
    /// Leaves a tombstone: no text, no file, no reactions.
    Delete,
    /// Adds (`true`) or removes one user's reaction.
    React { emoji: String, add: bool },
}

/// Who may make a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The message's sender only.
    Sender,
    /// The sender, or a moderator of the channel (its owner or an administrator).
    SenderOrModerator,
    /// Anyone who may read the channel.
    Reader,
}

impl Change {
    /// Who may make it.
    pub fn rule(&self) -> Rule {
        match self {
            Change::Edit { .. } => Rule::Sender,
            Change::Delete => Rule::SenderOrModerator,
            Change::React { .. } => Rule::Reader,
        }
    }

    /// Whether it is made to a deleted message as a no-op (else a deleted message refuses it).
    fn applies_to_deleted(&self) -> bool {
        matches!(self, Change::Delete)
    }

    /// The server event that tells the channel about it.
    pub fn event(&self) -> &'static str {
        match self {
            Change::Edit { .. } => server::MESSAGE_UPDATED,
            Change::Delete => server::MESSAGE_DELETED,
            Change::React { .. } => server::MESSAGE_REACTIONS,
        }
    }

    /// The body of that event, once the change took number `change` and `message` is the
    /// message as it now is; `actor` made it.
    pub fn event_body(
        &self,
        channel: &str,
        change: i64,
        message: &Message,
        actor: Uuid,
    ) -> ChangeEvent {
        let (channel, id, seq) = (channel.to_owned(), message.id, message.seq);
        match self {
            Change::Edit { .. } => ChangeEvent::Updated(MessageUpdated {
                channel,
                id,
                seq,
                change,
                text: message.text.clone(),
                edited_at: message.edited_at,
            }),
            Change::Delete => ChangeEvent::Deleted(MessageDeleted {
                channel,
                id,
                seq,
                change,
            }),
            Change::React { emoji, add } => ChangeEvent::Reactions(MessageReactions {
                channel,
                id,
                seq,
                change,
                // Counts only: whether a reader gave one is theirs to know.
                reactions: message
                    .reactions
                    .iter()
                    .map(|r| Reaction {
                        me: false,
                        ..r.clone()
                    })
                    .collect(),
                user_id: actor,
                emoji: emoji.clone(),
                added: *add,
            }),
        }
    }

    /// Why an actor it is not for may not make it.
    pub fn not_yours(&self) -> &'static str {
        match self.rule() {
            Rule::Sender => "only the sender may edit a message",
            Rule::SenderOrModerator => {
                "only the sender, the channel's owner or an administrator may delete this message"
            }
            Rule::Reader => "only readers of the channel may react",
        }
    }
}

/// Who makes the change.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: Uuid,
    pub name: String,
    /// May delete others' messages in this channel (an administrator or the channel's owner).
    pub moderator: bool,
}

/// Why a change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such message in the channel (or retention removed it).
    NotFound,
    /// The message was deleted: it can no longer be edited or reacted to.
    Deleted,
    /// Only the sender may edit; only the sender or a moderator may delete.
    NotYours,
    /// The message already holds [`MAX_REACTIONS`] distinct emoji.
    TooManyReactions,
}

/// The outcome of a change.
#[derive(Debug)]
pub struct Changed {
    /// The message as it now is (reactions and quote filled in, `me` for the actor).
    pub message: Message,
    /// The change number taken, or `None` when nothing changed (a reaction already given or
    /// not there, a message already deleted).
    pub change: Option<i64>,
    /// The file a delete took off the message (its upload may now be removable).
    pub file_key: Option<Uuid>,
    /// Users an edit mentions who were not mentioned before.
    pub new_mentions: Vec<Uuid>,
}

/// The message row a change locks.
struct Target {
    created_at: DateTime<Utc>,
    seq: i64,
    sender_id: Option<Uuid>,
    deleted: bool,
    file_key: Option<Uuid>,
    mentions: Vec<Uuid>,
}

/// Applies `change` to message `id` of channel `channel_id` (named `channel`) for `actor`.
pub async fn apply(
    db: &PgPool,
    channel_id: Uuid,
    channel: &str,
    id: Uuid,
    actor: &Actor,
    change: &Change,
) -> Result<Result<Changed, Refusal>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let target = sqlx::query_as!(
        Target,
        r#"SELECT m.created_at, m.seq, m.sender_id, m.deleted_at IS NOT NULL AS "deleted!",
                  m.file_key, m.mentions
           FROM messages m JOIN channels c ON c.id = m.channel_id
           WHERE m.channel_id = $1 AND m.id = $2 AND m.seq >= c.first_seq
           FOR UPDATE OF m"#,
        channel_id,
        id
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(target) = target else {
        return Ok(Err(Refusal::NotFound));
    };
    let own = target.sender_id == Some(actor.id);
    if target.deleted && !change.applies_to_deleted() {
        return Ok(Err(Refusal::Deleted));
    }
    let allowed = match change.rule() {
        Rule::Sender => own,
        Rule::SenderOrModerator => own || actor.moderator,
        Rule::Reader => true,
    };
    if !allowed {
        return Ok(Err(Refusal::NotYours));
    }
    let changed = match change {
        Change::Edit { .. } => true,
        Change::Delete => !target.deleted,
        Change::React { emoji, add: true } => {
            let held = sqlx::query!(
                r#"SELECT count(DISTINCT emoji) AS "distinct!",
                          coalesce(bool_or(emoji = $3), false) AS "given!",
                          coalesce(bool_or(emoji = $3 AND user_id = $4), false) AS "mine!"
                   FROM message_reactions WHERE channel_id = $1 AND seq = $2"#,
                channel_id,
                target.seq,
                emoji,
                actor.id
            )
            .fetch_one(&mut *tx)
            .await?;
            if held.mine {
                false
            } else if !held.given && held.distinct >= MAX_REACTIONS {
                return Ok(Err(Refusal::TooManyReactions));
            } else {
                sqlx::query!(
                    "INSERT INTO message_reactions (channel_id, seq, emoji, user_id)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    channel_id,
                    target.seq,
                    emoji,
                    actor.id
                )
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0
            }
        }
        Change::React { emoji, add: false } => {
            sqlx::query!(
                "DELETE FROM message_reactions
                 WHERE channel_id = $1 AND seq = $2 AND emoji = $3 AND user_id = $4",
                channel_id,
                target.seq,
                emoji,
                actor.id
            )
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0
        }
    };
    let mut number = None;
    let mut file_key = None;
    let mut new_mentions = Vec::new();
    if changed {
        let n = next_change(&mut tx, channel_id).await?;
        number = Some(n);
        log_change(&mut tx, channel_id, n, target.seq, actor.id, change).await?;
        match change {
            Change::Edit { text, mentions } => {
                sqlx::query!(
                    "UPDATE messages SET text = $3, edited_at = now(), change_seq = $4,
                            mentions = $5
                     WHERE id = $1 AND created_at = $2",
                    id,
                    target.created_at,
                    text,
                    n,
                    mentions
                )
                .execute(&mut *tx)
                .await?;
                forget_mentions(&mut tx, channel_id, target.seq).await?;
                sqlx::query!(
                    "INSERT INTO message_mentions (user_id, channel_id, seq)
                     SELECT u, $2, $3 FROM unnest($1::uuid[]) AS u",
                    mentions,
                    channel_id,
                    target.seq
                )
                .execute(&mut *tx)
                .await?;
                new_mentions = mentions
                    .iter()
                    .filter(|u| !target.mentions.contains(u))
                    .copied()
                    .collect();
            }
            Change::Delete => {
                sqlx::query!(
                    "UPDATE messages SET text = '', file_url = NULL, file_name = NULL,
                            file_type = NULL, file_key = NULL, file_size = NULL,
                            file_width = NULL, file_height = NULL, deleted_at = now(),
                            change_seq = $3, mentions = '{}'
                     WHERE id = $1 AND created_at = $2",
                    id,
                    target.created_at,
                    n
                )
                .execute(&mut *tx)
                .await?;
                sqlx::query!(
                    "DELETE FROM message_reactions WHERE channel_id = $1 AND seq = $2",
                    channel_id,
                    target.seq
                )
                .execute(&mut *tx)
                .await?;
                forget_mentions(&mut tx, channel_id, target.seq).await?;
                file_key = target.file_key;
                if !own {
                    let action = moderation::Action {
                        actor_id: actor.id,
                        actor_name: &actor.name,
                        action: "message.delete",
                        channel: Some((channel_id, channel)),
                        target: target.sender_id,
                        message: Some((id, target.seq)),
                    };
                    moderation::record(&mut *tx, &action).await?;
                }
            }
            Change::React { .. } => {
                sqlx::query!(
                    "UPDATE messages SET change_seq = $3 WHERE id = $1 AND created_at = $2",
                    id,
                    target.created_at,
                    n
                )
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    let mut message = messages::find(db, channel_id, target.seq)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    messages::decorate(db, std::slice::from_mut(&mut message), Some(actor.id)).await?;
    Ok(Ok(Changed {
        message,
        change: number,
        file_key,
        new_mentions,
    }))
}

/// Removes the mentions of message `seq` of a channel.
async fn forget_mentions(
    tx: &mut PgConnection,
    channel_id: Uuid,
    seq: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM message_mentions WHERE channel_id = $1 AND seq = $2",
        channel_id,
        seq
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Writes change `n` to the change log (`message_changes`), which connection state recovery
/// replays.
async fn log_change(
    tx: &mut PgConnection,
    channel_id: Uuid,
    n: i64,
    seq: i64,
    actor: Uuid,
    change: &Change,
) -> Result<(), sqlx::Error> {
    let (kind, emoji, added) = match change {
        Change::Edit { .. } => ("edit", None, None),
        Change::Delete => ("delete", None, None),
        Change::React { emoji, add } => ("react", Some(emoji.as_str()), Some(*add)),
    };
    sqlx::query!(
        "INSERT INTO message_changes (channel_id, change, seq, kind, actor_id, emoji, added)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        channel_id,
        n,
        seq,
        kind,
        actor,
        emoji,
        added
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// A logged change, as connection state recovery replays it.
#[derive(Debug)]
pub struct Logged {
    pub change: i64,
    pub seq: i64,
    pub actor_id: Uuid,
    /// What it did (the message's state is read when it is replayed).
    pub what: Change,
}

/// The logged changes of a channel in `(after, upto]` to messages up to seq `max_seq`, in change
/// order, at most `limit`; `None` when the log no longer holds the change after `after` (it
/// was removed as too old), so that what was missed cannot be told.
pub async fn logged(
    db: &PgPool,
    channel_id: Uuid,
    (after, upto): (i64, i64),
    max_seq: i64,
    limit: i64,
) -> Result<Option<Vec<Logged>>, sqlx::Error> {
    if upto <= after {
        return Ok(Some(Vec::new()));
    }
    let oldest: Option<i64> = sqlx::query_scalar!(
        "SELECT min(change) FROM message_changes WHERE channel_id = $1 AND change > $2",
        channel_id,
        after
    )
    .fetch_one(db)
    .await?;
    if oldest != Some(after + 1) {
        return Ok(None);
    }
    let rows = sqlx::query!(
        "SELECT change, seq, kind, actor_id, emoji, added FROM message_changes
         WHERE channel_id = $1 AND change > $2 AND change <= $3 AND seq <= $4
         ORDER BY change LIMIT $5",
        channel_id,
        after,
        upto,
        max_seq,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|r| Logged {
                change: r.change,
                seq: r.seq,
                actor_id: r.actor_id,
                what: match (r.kind.as_str(), r.emoji, r.added) {
                    ("edit", _, _) => Change::Edit {
                        text: String::new(),
                        mentions: Vec::new(),
                    },
                    ("react", Some(emoji), Some(add)) => Change::React { emoji, add },
                    _ => Change::Delete,
                },
            })
            .collect(),
    ))
}

/// Removes logged changes older than `keep` (in batches, so that no statement runs long).
pub async fn forget_logged(db: &PgPool, keep: std::time::Duration) -> Result<u64, sqlx::Error> {
    let keep_secs = keep.as_secs_f64();
    let mut removed = 0;
    loop {
        let n = sqlx::query!(
            "DELETE FROM message_changes WHERE ctid IN (
                 SELECT ctid FROM message_changes
                 WHERE at < now() - make_interval(secs => $1) LIMIT 10000)",
            keep_secs
        )
        .execute(db)
        .await?
        .rows_affected();
        removed += n;
        if n < 10000 {
            return Ok(removed);
        }
    }
}

/// Takes the channel's next change number (the row stays locked until the transaction ends).
async fn next_change(tx: &mut PgConnection, channel_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "UPDATE channels SET last_change = last_change + 1 WHERE id = $1 RETURNING last_change",
        channel_id
    )
    .fetch_one(tx)
    .await
}

/// The channel's changes in `(after, upto]` to messages up to seq `max_seq` (at most `limit`,
/// by change number): the current state of each changed message, as `reader` sees it. `upto`
/// is the channel's `last_change` read before, so a cursor set to it misses nothing.
pub async fn since(
    db: &PgPool,
    channel_id: Uuid,
    range: (i64, i64),
    max_seq: i64,
    limit: i64,
    reader: Uuid,
) -> Result<Vec<Message>, sqlx::Error> {
    let mut changed = messages::changed_since(db, channel_id, range, max_seq, limit).await?;
    messages::decorate(db, &mut changed, Some(reader)).await?;
    Ok(changed)
}
