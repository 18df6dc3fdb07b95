//! The `uploads` table: who owns an uploaded file, what it turned out to be, and who may read
//! it (its owner, and whoever may read a channel one of its messages is in).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// An upload row.
#[derive(Clone, Debug)]
pub struct Upload {
    pub key: Uuid,
    pub owner_id: Option<Uuid>,
    pub name: String,
    pub declared_type: String,
    /// The sniffed type, once the bytes were checked.
    pub kind: Option<String>,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub ready: bool,
}

/// Records an announced upload unless it would take its owner over `quota` bytes in total;
/// `false` when it would.
pub async fn create(
    db: &PgPool,
    key: Uuid,
    owner: Uuid,
    name: &str,
    declared_type: &str,
    size: i64,
    quota: i64,
) -> Result<bool, sqlx::Error> {
    let stored = sqlx::query_scalar!(
        r#"INSERT INTO uploads (key, owner_id, name, declared_type, size)
           SELECT $1, $2, $3, $4, $5::int8
           WHERE (SELECT coalesce(sum(size), 0) FROM uploads WHERE owner_id = $2) + $5::int8
                 <= $6::int8
           RETURNING key"#,
        key,
        owner,
        name,
        declared_type,
        size,
        quota
    )
    .fetch_optional(db)
    .await?;
    Ok(stored.is_some())
}

pub async fn find(db: &PgPool, key: Uuid) -> Result<Option<Upload>, sqlx::Error> {
    sqlx::query_as!(
        Upload,
        r#"SELECT key, owner_id, name, declared_type, type AS kind, size, width, height, ready
           FROM uploads WHERE key = $1"#,
        key
    )
    .fetch_optional(db)
    .await
}

/// An upload whose bytes may still be sent: its owner is not banned (a ban revokes the signed
/// URLs already handed out).
pub async fn awaiting_bytes(db: &PgPool, key: Uuid) -> Result<Option<Upload>, sqlx::Error> {
    sqlx::query_as!(
        Upload,
        r#"SELECT u.key, u.owner_id, u.name, u.declared_type, u.type AS kind, u.size, u.width,
                  u.height, u.ready
           FROM uploads u JOIN users o ON o.id = u.owner_id
           WHERE u.key = $1 AND o.banned_at IS NULL"#,
        key
    )
    .fetch_optional(db)
    .await
}

/// Records what the checked bytes are.
pub async fn mark_ready(
    db: &PgPool,
    key: Uuid,
    kind: &str,
    size: i64,
    width: Option<i32>,
    height: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE uploads SET type = $2, size = $3, width = $4, height = $5, ready = true
         WHERE key = $1",
        key,
        kind,
        size,
        width,
        height
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The upload, if it is ready and `user` may read it: its owner, or a reader (`may_read`) of a
/// channel where a kept message carries it.
pub async fn readable(db: &PgPool, key: Uuid, user: Uuid) -> Result<Option<Upload>, sqlx::Error> {
    sqlx::query_as!(
        Upload,
        r#"SELECT u.key, u.owner_id, u.name, u.declared_type, u.type AS kind, u.size, u.width,
                  u.height, u.ready
           FROM uploads u
           WHERE u.key = $1 AND u.ready
             AND (u.owner_id = $2 OR EXISTS (
                   SELECT 1 FROM messages m JOIN channels c ON c.id = m.channel_id
                   WHERE m.file_key = u.key AND m.seq >= c.first_seq
                     AND may_read(c.id, $2)))"#,
        key,
        user
    )
    .fetch_optional(db)
    .await
}

/// Removes the rows of `keys` that no message refers to; returns the removed keys, whose
/// objects the caller deletes.
pub async fn delete_unreferenced(db: &PgPool, keys: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "DELETE FROM uploads u WHERE u.key = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.file_key = u.key)
         RETURNING u.key",
        keys
    )
    .fetch_all(db)
    .await
}

/// Up to `limit` uploads older than `before` that no message refers to (announced and never
/// sent).
pub async fn unsent(
    db: &PgPool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT u.key FROM uploads u
         WHERE u.created_at < $1
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.file_key = u.key)
         ORDER BY u.created_at LIMIT $2",
        before,
        limit
    )
    .fetch_all(db)
    .await
}
