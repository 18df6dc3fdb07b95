//! The [`AuthUser`] extractor: a REST handler that takes one is only reached with a valid,
//! unrevoked session cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::error::AppError;
use crate::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "token";

/// The signed-in user of a request.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub username: String,
    pub claims: super::Claims,
}

/// The value of a cookie in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The session token of a request: the `token` cookie.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, COOKIE_NAME).map(str::to_owned))
        .filter(|t| !t.is_empty())
}

/// The claims of a session that may act: signed, unexpired, not revoked, and its user still
/// exists (a removed account's tokens are refused at once, not when they expire).
/// Also says whether the user is a guest.
pub async fn signed_in(state: &AppState, token: &str) -> Result<(super::Claims, bool), AppError> {
    let claims = state.sessions.verify(token).await?;
    match crate::store::users::is_guest(&state.db, claims.sub).await? {
        Some(guest) => Ok((claims, guest)),
        None => Err(AppError::unauthorized()),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = token_from_parts(parts).ok_or_else(AppError::unauthorized)?;
        let (claims, _) = signed_in(state, &token).await?;
        Ok(AuthUser {
            id: claims.sub,
            username: claims.username.clone(),
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::cookie_value;

    #[test]
    fn finds_cookie_among_others() {
        assert_eq!(cookie_value("a=1; token=abc; b=2", "token"), Some("abc"));
        assert_eq!(cookie_value("xtoken=1", "token"), None);
        assert_eq!(cookie_value("", "token"), None);
    }
}
