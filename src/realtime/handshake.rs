//! The handshake middleware: the Origin allowlist, then the session token from the `token`
//! cookie or `auth.token`. A refusal reaches the client as `connect_error` with the message
//! `forbidden_origin`, `unauthorized` or `unavailable`.

use axum::http::header;
use serde_json::Value;
use socketioxide::extract::SocketRef;

use super::membership::{Reservation, Session};
use super::Adapter;
use crate::auth::session_cookie;
use crate::error::Code;
use crate::state::AppState;

/// Why a handshake was refused; its `Display` is the `connect_error` message.
#[derive(Debug)]
pub struct Refused(Code);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The token of a handshake: the cookie first (browsers), then `auth.token` (other clients).
fn handshake_token(s: &SocketRef<Adapter>, auth: Option<&Value>) -> Option<String> {
    session_cookie(&s.req_parts().headers).or_else(|| {
        auth.and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 4096)
            .map(str::to_owned)
    })
}

/// Checks a handshake: the Origin, the session, and the user's socket cap. An accepted
/// socket's session comes back with its place under the cap.
pub async fn authenticate(
    state: &AppState,
    s: &SocketRef<Adapter>,
    auth: Option<&Value>,
) -> Result<(Session, Reservation), Refused> {
    // A browser always sends Origin on a cross-site request; a page from an origin outside the
    // allowlist must not ride on the user's cookie (cross-site WebSocket hijacking).
    if let Some(origin) = s.req_parts().headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .map(|o| state.config.origin_allowed(o))
            .unwrap_or(false);
        if !allowed {
            tracing::info!(sid = %s.id, "handshake refused: origin not allowed");
            return Err(Refused(Code::ForbiddenOrigin));
        }
    }
    let Some(token) = handshake_token(s, auth) else {
        tracing::info!(sid = %s.id, "handshake refused: no session");
        return Err(Refused(Code::Unauthorized));
    };
    match crate::auth::signed_in(state, &token).await {
        Ok((claims, guest)) => {
            let parts = s.req_parts();
            let session = Session {
                user_id: claims.sub,
                username: claims.username,
                jti: claims.jti,
                guest,
                address: state
                    .config
                    .trusted_proxies
                    .client_of(&parts.extensions, &parts.headers),
            };
            state.membership.session_connected(session.address);
            // Within the user's socket cap (this instance exactly, the cluster as presence
            // counts it), the socket is reserved here; the reservation goes with its state.
            let max = state.config.max_sockets_per_user;
            let Some(reservation) = state.membership.reserve(&session, max).await else {
                tracing::info!(sid = %s.id, user_id = %session.user_id, "handshake refused: too many connections");
                return Err(Refused(Code::TooManyConnections));
            };
            Ok((session, reservation))
        }
        Err(e) => {
            tracing::info!(sid = %s.id, code = e.code.as_str(), "handshake refused");
            Err(Refused(if e.code == Code::Unavailable {
                Code::Unavailable
            } else {
                Code::Unauthorized
            }))
        }
    }
}
