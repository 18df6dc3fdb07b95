//! The [`AuthUser`] extractor: a REST handler that takes one is only reached with a valid,
//! unrevoked session cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use tower_cookies::cookie::Cookie;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "token";

/// The signed-in user of a request.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub username: String,
    pub guest: bool,
}

/// The session token in a request's `token` cookie, if any (the REST API and the Socket.IO
/// handshake read it alike).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

/// The claims of a session that may act: signed, unexpired, not revoked, and its user still
/// exists (a removed account's tokens are refused at once, not when they expire).
/// Also says whether the user is a guest.
pub async fn signed_in(state: &AppState, token: &str) -> Result<(super::Claims, bool), AppError> {
    let claims = state.sessions.verify(token).await?;
    match crate::store::users::is_guest(&state.db, claims.sub, claims.iat).await? {
        Some(guest) => Ok((claims, guest)),
        None => Err(AppError::unauthorized()),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = session_cookie(&parts.headers).ok_or_else(AppError::unauthorized)?;
        // Signed and unexpired (CPU only), the request is charged to its user before Redis
        // (revocation) and Postgres (the account) are asked: a flood of one user's requests is
        // refused here, not queued for the connections every user shares.
        let unchecked = state.sessions.decode(&token)?;
        state
            .budget
            .charge(unchecked.sub, crate::budget::REQUEST_COST)?;
        let (claims, guest) = signed_in(state, &token).await?;
        Ok(AuthUser {
            id: claims.sub,
            username: claims.username,
            guest,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};

    use super::session_cookie;

    fn token(cookie: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        session_cookie(&headers)
    }

    #[test]
    fn finds_cookie_among_others() {
        assert_eq!(token("a=1; token=abc; b=2").as_deref(), Some("abc"));
        assert_eq!(token("xtoken=1"), None);
        assert_eq!(token("token="), None);
        assert_eq!(token(""), None);
    }
}
