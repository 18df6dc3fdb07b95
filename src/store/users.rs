//! The `users` table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
}

/// A user with what login needs.
#[derive(Debug, sqlx::FromRow)]
pub struct UserCredentials {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
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

/// Inserts a user; a taken username or email is a unique violation for the caller to map.
pub async fn insert(
    db: &PgPool,
    username: &str,
    email: Option<&str>,
    password_hash: Option<&str>,
) -> Result<PublicUser, sqlx::Error> {
    sqlx::query_as::<_, PublicUser>(
        "INSERT INTO users (id, username, email, password_hash, is_guest)
         VALUES ($1, $2, $3, $4, $4 IS NULL)
         RETURNING id, username, email",
    )
    .bind(Uuid::now_v7())
    .bind(username)
    .bind(email)
    .bind(password_hash)
    .fetch_one(db)
    .await
}

/// Finds an account by email or username, case-insensitively.
pub async fn find_for_login(
    db: &PgPool,
    by_email: bool,
    identifier: &str,
) -> Result<Option<UserCredentials>, sqlx::Error> {
    let sql = if by_email {
        "SELECT id, username, email, password_hash, created_at FROM users WHERE lower(email) = lower($1)"
    } else {
        "SELECT id, username, email, password_hash, created_at FROM users WHERE lower(username) = lower($1)"
    };
    sqlx::query_as::<_, UserCredentials>(sql)
        .bind(identifier)
        .fetch_optional(db)
        .await
}

pub async fn find(db: &PgPool, id: Uuid) -> Result<Option<PublicUser>, sqlx::Error> {
    sqlx::query_as::<_, PublicUser>("SELECT id, username, email FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}
