//! The `channels` and `channel_members` tables.

use crate::contract::ChannelView;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A channel row.
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    /// The oldest seq history still holds (retention removes what is older).
    pub first_seq: i64,
    /// The channel's own retention limits (stricter than the instance's, if it has any).
    pub retention_max_age_secs: Option<i64>,
    pub retention_max_messages: Option<i64>,
    /// `channel`, or `dm` for a direct-message channel (private, two members).
    pub kind: String,
}

impl Channel {
    /// Private channels are read by their members only: those with a password, and direct
    /// messages.
    pub fn is_private(&self) -> bool {
        self.password_hash.is_some() || self.is_dm()
    }

    pub fn is_dm(&self) -> bool {
        self.kind == "dm"
    }

    /// The channel's owner (its creator), who moderates it; a direct-message channel has none
    /// (whoever opened it has no more rights in it than the other).
    pub fn owner(&self) -> Option<Uuid> {
        if self.is_dm() {
            None
        } else {
            self.created_by
        }
    }

    pub fn view(&self) -> ChannelView {
        ChannelView {
            name: self.name.clone(),
            description: self.description.clone(),
            private: self.is_private(),
            created_at: self.created_at,
            first_seq: self.first_seq,
            retention_max_age_secs: self.retention_max_age_secs,
            retention_max_messages: self.retention_max_messages,
            dm: self.is_dm(),
            created_by: self.owner(),
            read_seq: None,
            unread: None,
            unread_mentions: None,
        }
    }
}

pub async fn find(db: &PgPool, name: &str) -> Result<Option<Channel>, sqlx::Error> {
    sqlx::query_as!(
        Channel,
        "SELECT id, name, description, password_hash, created_at, created_by, first_seq,
                retention_max_age_secs, retention_max_messages, kind
         FROM channels WHERE name = $1",
        name
    )
    .fetch_optional(db)
    .await
}

/// A channel by name, with whether `reader` may read it (`may_read`, the one answer).
pub async fn find_for(
    db: &PgPool,
    name: &str,
    reader: Uuid,
) -> Result<Option<(Channel, bool)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, name, description, password_hash, created_at, created_by, first_seq,
                  retention_max_age_secs, retention_max_messages, kind,
                  may_read(id, $2) AS "readable!"
           FROM channels WHERE name = $1"#,
        name,
        reader
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let channel = Channel {
            id: r.id,
            name: r.name,
            description: r.description,
            password_hash: r.password_hash,
            created_at: r.created_at,
            created_by: r.created_by,
            first_seq: r.first_seq,
            retention_max_age_secs: r.retention_max_age_secs,
            retention_max_messages: r.retention_max_messages,
            kind: r.kind,
        };
        (channel, r.readable)
    }))
}

/// One page of channels by name: the first `limit` after `after` (from the start if none).
pub async fn list(
    db: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Channel>, sqlx::Error> {
    sqlx::query_as!(
        Channel,
        "SELECT id, name, description, password_hash, created_at, created_by, first_seq,
                retention_max_age_secs, retention_max_messages, kind
         FROM channels WHERE kind = 'channel' AND ($1::text IS NULL OR name > $1)
         ORDER BY name LIMIT $2",
        after,
        limit
    )
    .fetch_all(db)
    .await
}

/// Creates a channel; the creator of a private channel becomes its first member. A taken name
/// is a unique violation for the caller to map.
pub async fn create(
    db: &PgPool,
    name: &str,
    description: &str,
    password_hash: Option<&str>,
    creator: Uuid,
    retention: Retention,
) -> Result<Channel, sqlx::Error> {
    let mut tx = db.begin().await?;
    let channel = sqlx::query_as!(
        Channel,
        "INSERT INTO channels (id, name, description, password_hash, created_by,
                               retention_max_age_secs, retention_max_messages)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, name, description, password_hash, created_at, created_by, first_seq,
                retention_max_age_secs, retention_max_messages, kind",
        Uuid::now_v7(),
        name,
        description,
        password_hash,
        creator,
        retention.max_age_secs,
        retention.max_messages
    )
    .fetch_one(&mut *tx)
    .await?;
    if channel.is_private() {
        sqlx::query!(
            "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2)",
            channel.id,
            creator
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(channel)
}

/// Creates the public seed channels that do not exist yet (safe to race with other instances).
pub async fn seed(db: &PgPool, names: &[String]) -> Result<(), sqlx::Error> {
    for name in names {
        sqlx::query!(
            "INSERT INTO channels (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            Uuid::now_v7(),
            name
        )
        .execute(db)
        .await?;
    }
    Ok(())
}

/// A channel's own retention limits (`None`: the instance's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age_secs: Option<i64>,
    pub max_messages: Option<i64>,
}

/// Sets a channel's own retention limits.
pub async fn set_retention(
    db: &PgPool,
    channel: Uuid,
    retention: Retention,
) -> Result<Channel, sqlx::Error> {
    sqlx::query_as!(
        Channel,
        "UPDATE channels SET retention_max_age_secs = $2, retention_max_messages = $3
         WHERE id = $1
         RETURNING id, name, description, password_hash, created_at, created_by, first_seq,
                retention_max_age_secs, retention_max_messages, kind",
        channel,
        retention.max_age_secs,
        retention.max_messages
    )
    .fetch_one(db)
    .await
}

/// The oldest seq a channel's history holds.
pub async fn first_seq(db: &PgPool, channel: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!("SELECT first_seq FROM channels WHERE id = $1", channel)
        .fetch_one(db)
        .await
}

/// Where a channel's streams stand in Postgres: (first seq held, last seq, last change number).
pub async fn position(db: &PgPool, channel: Uuid) -> Result<(i64, i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        "SELECT first_seq, last_seq, last_change FROM channels WHERE id = $1",
        channel
    )
    .fetch_one(db)
    .await?;
    Ok((row.first_seq, row.last_seq, row.last_change))
}

pub async fn add_member(db: &PgPool, channel: Uuid, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        channel,
        user
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Most unread messages counted per channel (a client shows more as "1000+").
pub const UNREAD_CAP: i64 = 1000;

/// A user's read position in a channel, with what is unread after it.
#[derive(Clone, Debug)]
pub struct ReadState {
    pub channel_id: Uuid,
    pub read_seq: i64,
    /// Kept messages after `read_seq`, not the user's own and not deleted, up to
    /// [`UNREAD_CAP`].
    pub unread: i64,
    /// Of those, the ones that mention the user.
    pub unread_mentions: i64,
}

/// The views of `channels` as `user` sees them: with their read position and unread counts
/// where they have one (one query for them all).
pub async fn views_for(
    db: &PgPool,
    user: Uuid,
    channels: &[&Channel],
) -> Result<Vec<ChannelView>, sqlx::Error> {
    let ids: Vec<Uuid> = channels.iter().map(|c| c.id).collect();
    let reads: std::collections::HashMap<Uuid, ReadState> = read_states(db, user, &ids)
        .await?
        .into_iter()
        .map(|r| (r.channel_id, r))
        .collect();
    Ok(channels
        .iter()
        .map(|c| {
            let mut view = c.view();
            if let Some(r) = reads.get(&c.id) {
                view.read_seq = Some(r.read_seq);
                view.unread = Some(r.unread);
                view.unread_mentions = Some(r.unread_mentions);
            }
            view
        })
        .collect())
}

/// Moves the user's read position in a channel forward to `seq` (at most the channel's newest
/// seq). Returns the position now, and whether this call moved (or first set) it.
pub async fn mark_read(
    db: &PgPool,
    user: Uuid,
    channel: Uuid,
    seq: i64,
) -> Result<(i64, bool), sqlx::Error> {
    // A plain update first: a position that does not move locks and writes nothing (an
    // upsert would lock the row every time). The statement's snapshot shows the position as
    // it was when neither moved it.
    let row = sqlx::query!(
        r#"WITH target AS (SELECT LEAST($3, last_seq) AS seq FROM channels WHERE id = $2),
           moved AS (
               UPDATE channel_reads r SET read_seq = target.seq, updated_at = now()
               FROM target
               WHERE r.user_id = $1 AND r.channel_id = $2 AND r.read_seq < target.seq
               RETURNING r.read_seq
           ), started AS (
               INSERT INTO channel_reads (user_id, channel_id, read_seq)
               SELECT $1, $2, target.seq FROM target
               WHERE NOT EXISTS (SELECT 1 FROM channel_reads
                                 WHERE user_id = $1 AND channel_id = $2)
               ON CONFLICT DO NOTHING
               RETURNING read_seq
           )
           SELECT read_seq AS "read_seq!", true AS "moved!" FROM moved
           UNION ALL SELECT read_seq, true FROM started
           UNION ALL SELECT read_seq, false FROM channel_reads
               WHERE user_id = $1 AND channel_id = $2
                 AND NOT EXISTS (SELECT 1 FROM moved) AND NOT EXISTS (SELECT 1 FROM started)"#,
        user,
        channel,
        seq
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map_or((0, false), |r| (r.read_seq, r.moved)))
}

/// The user's read state in each of `channels` where they have a read position and may still
/// read it (a removed member keeps the row, not the view).
pub async fn read_states(
    db: &PgPool,
    user: Uuid,
    channels: &[Uuid],
) -> Result<Vec<ReadState>, sqlx::Error> {
    sqlx::query_as!(
        ReadState,
        r#"SELECT r.channel_id, r.read_seq,
                  CASE WHEN r.read_seq >= c.last_seq THEN 0 ELSE (
                      SELECT count(*) FROM (
                          SELECT 1 FROM messages m
                          WHERE m.channel_id = r.channel_id
                            AND m.seq > GREATEST(r.read_seq, c.first_seq - 1)
                            AND m.sender_id IS DISTINCT FROM $1 AND m.deleted_at IS NULL
                          LIMIT $3) AS u
                  ) END AS "unread!",
                  CASE WHEN r.read_seq >= c.last_seq THEN 0 ELSE (
                      SELECT count(*) FROM message_mentions mm
                      WHERE mm.user_id = $1 AND mm.channel_id = r.channel_id
                        AND mm.seq > GREATEST(r.read_seq, c.first_seq - 1)
                  ) END AS "unread_mentions!"
           FROM channel_reads r JOIN channels c ON c.id = r.channel_id
           WHERE r.user_id = $1 AND r.channel_id = ANY($2) AND may_read(r.channel_id, $1)"#,
        user,
        channels,
        UNREAD_CAP
    )
    .fetch_all(db)
    .await
}

/// Starts the user's read position in a channel at its newest message, unless they have one.
pub async fn start_reading(db: &PgPool, user: Uuid, channel: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO channel_reads (user_id, channel_id, read_seq)
         SELECT $1, c.id, c.last_seq FROM channels c WHERE c.id = $2
         ON CONFLICT DO NOTHING",
        user,
        channel
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The start of every direct-message channel's name (reserved: no channel is created with it).
pub const DM_PREFIX: &str = "dm-";

/// The name of the direct-message channel of two users: `dm-` and 32 hex digits of a hash of
/// the pair (the same whichever of them opens it).
pub fn dm_name(a: Uuid, b: Uuid) -> String {
    use sha2::{Digest, Sha256};
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let mut hash = Sha256::new();
    hash.update(b"banter dm ");
    hash.update(low.as_bytes());
    hash.update(high.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{DM_PREFIX}{hex}")
}

/// Opens the direct-message channel of `me` and `other` (or returns it): both are its members,
/// and on creation both start reading at its beginning (so its first messages are unread).
pub async fn open_dm(db: &PgPool, me: Uuid, other: Uuid) -> Result<Channel, sqlx::Error> {
    let name = dm_name(me, other);
    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO channels (id, name, kind, created_by) VALUES ($1, $2, 'dm', $3)
         ON CONFLICT (name) DO NOTHING",
        Uuid::now_v7(),
        name,
        me
    )
    .execute(&mut *tx)
    .await?;
    let channel = sqlx::query_as!(
        Channel,
        "SELECT id, name, description, password_hash, created_at, created_by, first_seq,
                retention_max_age_secs, retention_max_messages, kind
         FROM channels WHERE name = $1",
        name
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO channel_members (channel_id, user_id) VALUES ($1, $2), ($1, $3)
         ON CONFLICT DO NOTHING",
        channel.id,
        me,
        other
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO channel_reads (user_id, channel_id, read_seq) VALUES ($2, $1, 0), ($3, $1, 0)
         ON CONFLICT DO NOTHING",
        channel.id,
        me,
        other
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(channel)
}

/// One of a user's direct-message channels, with the other member.
#[derive(Clone, Debug)]
pub struct DirectChannel {
    pub channel: Channel,
    pub user_id: Uuid,
    pub username: String,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// The user's direct-message channels, the most recently active first (at most `limit`).
pub async fn direct_channels(
    db: &PgPool,
    user: Uuid,
    limit: i64,
) -> Result<Vec<DirectChannel>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT c.id, c.name, c.description, c.password_hash, c.created_at, c.created_by,
                c.first_seq, c.retention_max_age_secs, c.retention_max_messages, c.kind,
                u.id AS user_id, u.username, u.last_seen_at
         FROM channel_members me
         JOIN channels c ON c.id = me.channel_id AND c.kind = 'dm'
         JOIN channel_members other ON other.channel_id = c.id AND other.user_id <> me.user_id
         JOIN users u ON u.id = other.user_id
         WHERE me.user_id = $1
         ORDER BY c.last_seq DESC, c.created_at DESC LIMIT $2",
        user,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DirectChannel {
            channel: Channel {
                id: r.id,
                name: r.name,
                description: r.description,
                password_hash: r.password_hash,
                created_at: r.created_at,
                created_by: r.created_by,
                first_seq: r.first_seq,
                retention_max_age_secs: r.retention_max_age_secs,
                retention_max_messages: r.retention_max_messages,
                kind: r.kind,
            },
            user_id: r.user_id,
            username: r.username,
            last_seen_at: r.last_seen_at,
        })
        .collect())
}

/// The other members of a direct-message channel (the one who is not `me`).
pub async fn other_members(db: &PgPool, channel: Uuid, me: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT user_id FROM channel_members WHERE channel_id = $1 AND user_id <> $2",
        channel,
        me
    )
    .fetch_all(db)
    .await
}

/// Removes a user from a channel's members; whether they were one.
pub async fn remove_member(db: &PgPool, channel: Uuid, user: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2",
        channel,
        user
    )
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}
