//! Argon2id password hashing (user and channel passwords).
//!
//! Parameters are the argon2 crate's defaults, which follow the OWASP recommendation:
//! Argon2id, m = 19 MiB, t = 2, p = 1. Hashing is CPU-heavy (tens of milliseconds), so it runs
//! on the blocking pool, never on the async workers.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{AppError, Code};

/// Hashes computed at once in this process (logins, registrations, private channel creations
/// and joins together): one per core. Each takes 19 MiB while it runs, so this bounds the
/// memory a flood of password checks can take.
fn hashing() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// How long a password check waits for a hashing slot before it is refused `rate_limited`.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

async fn hashing_slot() -> Result<SemaphorePermit<'static>, AppError> {
    match tokio::time::timeout(HASH_WAIT, hashing().acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AppError::rate_limited(1000)),
    }
}

/// A PHC-string hash of a password that no real password matches; verified against when a
/// login names an unknown account, so that response time does not tell which accounts exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Nw9a1YV7F3Lkq7Cw4bS3pX0m1zGg2Kp4oH7dXy8u0nE";

/// Hashes a password to a PHC string.
pub async fn hash_password(password: String) -> Result<String, AppError> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        // A random salt from the system's generator.
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| AppError::new(Code::Internal, format!("hashing task failed: {e}")))?
    .map_err(|e| AppError::new(Code::Internal, format!("hashing failed: {e}")))
}

/// Checks a password against a stored hash; `None` (no account, or an account without a
/// password) still costs one verification and always fails. `rate_limited` when no hashing
/// slot frees up within [`HASH_WAIT`].
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, AppError> {
    let _slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let stored = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    })
    .await
    .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(h))
            .await
            .unwrap());
        assert!(!verify_password("correct horse".into(), None).await.unwrap());
    }
}
