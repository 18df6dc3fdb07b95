//! Session tokens: HS256 JWTs with a random `jti`, revocable cluster-wide through Redis.

use crate::kv::Redis;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;
use crate::keys::Keys;

/// The claims of a banter session token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Username at sign-in.
    pub username: String,
    /// Session id, the unit of revocation.
    pub jti: Uuid,
    pub iat: u64,
    pub exp: u64,
}

/// Issues, verifies and revokes session tokens.
#[derive(Clone)]
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    redis: Redis,
    keys: Keys,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sessions {
    /// Fails only for an empty secret (the configuration refuses short ones first).
    pub fn new(
        secret: &str,
        ttl_secs: u64,
        redis: Redis,
        keys: Keys,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        super::hs256::install();
        // The algorithm is pinned: a token signed with anything but HS256 (or `none`) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes())?,
            decoding: DecodingKey::from_secret(secret.as_bytes())?,
            validation,
            ttl_secs,
            redis,
            keys,
        })
    }

    /// Session lifetime, also the cookie's `Max-Age`.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A new signed token for a user.
    pub fn issue(&self, user_id: Uuid, username: &str) -> Result<String, AppError> {
        let iat = now_secs();
        let claims = Claims {
            sub: user_id,
            username: username.to_owned(),
            jti: Uuid::new_v4(),
            iat,
            exp: iat + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            AppError::new(
                crate::error::Code::Internal,
                format!("could not sign session: {e}"),
            )
        })
    }

    /// Checks signature and expiry only (logout revokes what it can read, even when Redis
    /// cannot say whether the token was revoked already).
    pub fn decode(&self, token: &str) -> Result<Claims, AppError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|t| t.claims)
            .map_err(|_| AppError::unauthorized())
    }

    /// Checks signature, expiry and revocation. Every failure is `unauthorized`; a Redis
    /// failure is `unavailable` (a revoked token must never pass because Redis is away).
    pub async fn verify(&self, token: &str) -> Result<Claims, AppError> {
        let claims = self.decode(token)?;
        let mut conn = self.redis.clone();
        let revoked: bool = redis::cmd("EXISTS")
            .arg(self.keys.revoked(&claims.jti.to_string()))
            .query_async(&mut conn)
            .await?;
        if revoked {
            return Err(AppError::unauthorized());
        }
        Ok(claims)
    }

    /// Revokes a session on every instance until it would have expired anyway.
    pub async fn revoke(&self, claims: &Claims) -> Result<(), AppError> {
        let remaining = claims.exp.saturating_sub(now_secs());
        if remaining == 0 {
            return Ok(());
        }
        let mut conn = self.redis.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.revoked(&claims.jti.to_string()))
            .arg(1)
            .arg("EX")
            .arg(remaining)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
