//! The `users` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ResultExt;

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
}

/// A user with what login needs.
#[derive(Debug)]
pub struct UserCredentials {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub banned: bool,
}

impl UserCredentials {
    pub fn public(&self) -> PublicUser {
        PublicUser {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
        }
    }
}

/// Inserts a user; a taken (or confusable) username or email is a unique violation for the caller to map.
pub async fn insert(
    db: &PgPool,
    username: &str,
    email: Option<&str>,
    password_hash: Option<&str>,
) -> Result<PublicUser, sqlx::Error> {
    sqlx::query_as!(
        PublicUser,
        "INSERT INTO users (id, username, email, password_hash, is_guest, username_key)
         VALUES ($1, $2, $3, $4, $4::text IS NULL, $5)
         RETURNING id, username, email",
        Uuid::now_v7(),
        username,
        email,
        password_hash,
        crate::validate::username_key(username)
    )
    .fetch_one(db)
    .await
}

/// Finds an account by email or username, case-insensitively.
pub async fn find_for_login(
    db: &PgPool,
    by_email: bool,
    identifier: &str,
) -> Result<Option<UserCredentials>, sqlx::Error> {
    if by_email {
        sqlx::query_as!(
            UserCredentials,
            r#"SELECT id, username, email, password_hash, created_at,
                      banned_at IS NOT NULL AS "banned!"
               FROM users WHERE lower(email) = lower($1)"#,
            identifier
        )
        .fetch_optional(db)
        .await
    } else {
        sqlx::query_as!(
            UserCredentials,
            r#"SELECT id, username, email, password_hash, created_at,
                      banned_at IS NOT NULL AS "banned!"
               FROM users WHERE lower(username) = lower($1)"#,
            identifier
        )
        .fetch_optional(db)
        .await
    }
}

pub async fn find(db: &PgPool, id: Uuid) -> Result<Option<PublicUser>, sqlx::Error> {
    sqlx::query_as!(
        PublicUser,
        "SELECT id, username, email FROM users WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// Whether the user of a session issued at `issued_at` (unix seconds) is a guest; `None` when
/// the user no longer exists, is banned, or was banned after the session was issued (a valid
/// token of a removed or banned user is refused).
pub async fn is_guest(db: &PgPool, id: Uuid, issued_at: u64) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT is_guest FROM users
         WHERE id = $1 AND banned_at IS NULL AND sessions_after <= $2",
        id,
        issued_at.min(i64::MAX as u64) as i64
    )
    .fetch_optional(db)
    .await
}

/// Fills the confusable skeleton of users stored before it existed. A user whose skeleton an
/// earlier user already holds keeps none (both keep their names; new look-alikes are refused).
pub async fn backfill_username_keys(db: &PgPool) -> Result<(), sqlx::Error> {
    let missing = sqlx::query!(
        "SELECT id, username FROM users WHERE username_key IS NULL ORDER BY created_at"
    )
    .fetch_all(db)
    .await?;
    for user in missing {
        sqlx::query!(
            "UPDATE users SET username_key = $2 WHERE id = $1",
            user.id,
            crate::validate::username_key(&user.username)
        )
        .execute(db)
        .await
        .none_on_unique()?;
    }
    Ok(())
}

/// The users named in `names` (lowercased usernames) who may read channel `channel` (the one
/// answer, `may_read`). Others are not mentioned.
pub async fn mentionable(
    db: &PgPool,
    names: &[String],
    channel: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar!(
        r#"SELECT u.id FROM users u
           WHERE lower(u.username) = ANY($1) AND may_read($2, u.id)"#,
        names,
        channel
    )
    .fetch_all(db)
    .await
}

/// A user as others see them: for direct messages, profiles and moderation.
#[derive(Clone, Debug)]
pub struct Profile {
    pub id: Uuid,
    pub username: String,
    pub is_guest: bool,
    pub banned: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A user by username (case-insensitively).
pub async fn profile(db: &PgPool, username: &str) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as!(
        Profile,
        r#"SELECT id, username, is_guest, banned_at IS NOT NULL AS "banned!", last_seen_at
           FROM users WHERE lower(username) = lower($1)"#,
        username
    )
    .fetch_optional(db)
    .await
}

/// Bans (`true`) or unbans a user; whether that changed anything. A ban ends every session
/// issued until then (for good) and makes Postgres tell every instance to close the user's
/// sockets (see the migrations).
pub async fn set_banned(db: &PgPool, id: Uuid, banned: bool) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE users SET banned_at = CASE WHEN $2 THEN now() END,
                sessions_after = CASE WHEN $2 THEN ceil(extract(epoch FROM now()))::int8
                                      ELSE sessions_after END
         WHERE id = $1 AND (banned_at IS NOT NULL) <> $2",
        id,
        banned
    )
    .execute(db)
    .await?
    .rows_affected()
        > 0)
}

/// Records the client address a user signed in from.
pub async fn signed_in_from(db: &PgPool, id: Uuid, address: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET last_address = $2 WHERE id = $1 AND last_address IS DISTINCT FROM $2",
        id,
        address
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether a user banned less than `within_secs` ago last signed in from `address`.
pub async fn address_banned(
    db: &PgPool,
    address: &str,
    within_secs: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (
               SELECT 1 FROM users
               WHERE last_address = $1 AND banned_at IS NOT NULL
                 AND banned_at > now() - make_interval(secs => $2)
           ) AS "banned!""#,
        address,
        within_secs as f64
    )
    .fetch_one(db)
    .await
}

/// Records when one of the user's sockets closed: when they were last seen.
pub async fn touch_last_seen(db: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE users SET last_seen_at = now() WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(())
}
