//! Argon2id password hashing (user and channel passwords).
//!
//! Parameters are the argon2 crate's defaults, which follow the OWASP recommendation:
//! Argon2id, m = 19 MiB, t = 2, p = 1. Hashing is CPU-heavy (tens of milliseconds), so it runs
//! on the blocking pool, never on the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{AppError, Code};

/// A PHC-string hash of a password that no real password matches; verified against when a
/// login names an unknown account, so that response time does not tell which accounts exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Nw9a1YV7F3Lkq7Cw4bS3pX0m1zGg2Kp4oH7dXy8u0nE";

/// Hashes a password to a PHC string.
pub async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| AppError::new(Code::Internal, format!("hashing task failed: {e}")))?
    .map_err(|e| AppError::new(Code::Internal, format!("hashing failed: {e}")))
}

/// Checks a password against a stored hash; `None` (no account, or an account without a
/// password) still costs one verification and always fails.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
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
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(h.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(h)).await);
        assert!(!verify_password("correct horse".into(), None).await);
    }
}
