//! `user.typing`: only changes of a socket's state are relayed, at most one per
//! [`TYPING_INTERVAL`] either way, and the last state always arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use socketioxide::extract::SocketRef;

use super::joined_channel;
use crate::contract::{server, SetTyping, TypingAck, UserTyping};
use crate::error::{AppError, AppResult, Code};
use crate::realtime::membership::Conn;
use crate::realtime::rooms::channel_room;
use crate::realtime::Adapter;
use crate::state::AppState;

/// Relayed typing changes per socket are at least this far apart (about 2/s), whichever way.
const TYPING_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn typing(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    SetTyping { channel, is_typing }: SetTyping,
) -> AppResult<TypingAck> {
    {
        let channel = joined_channel(&state, &conn, &channel).await?.name;
        let relayed = {
            let mut t = conn
                .typing
                .lock()
                .map_err(|_| AppError::new(Code::Internal, "typing state unavailable"))?;
            let wanted = (channel.clone(), is_typing);
            t.wanted = Some(wanted.clone());
            if t.relayed.as_ref() == Some(&wanted) {
                // No change: nothing to tell the channel.
                false
            } else if t.at.is_some_and(|at| at.elapsed() < TYPING_INTERVAL) {
                // A change too soon: the state at the end of the interval is relayed then.
                if !t.scheduled {
                    t.scheduled = true;
                    let wait = TYPING_INTERVAL
                        .saturating_sub(t.at.map(|a| a.elapsed()).unwrap_or_default());
                    state.shutdown.spawn(trailing_typing(
                        state.clone(),
                        s.clone(),
                        conn.clone(),
                        wait,
                    ));
                }
                false
            } else {
                t.relayed = Some(wanted);
                t.at = Some(Instant::now());
                true
            }
        };
        if !relayed {
            return Ok(TypingAck { throttled: true });
        }
        relay_typing(&state, &s, &conn, &channel, is_typing).await;
        Ok(TypingAck { throttled: false })
    }
}

/// Sends a socket's typing state to the rest of its channel.
async fn relay_typing(
    state: &AppState,
    s: &SocketRef<Adapter>,
    conn: &Conn,
    channel: &str,
    is_typing: bool,
) {
    let body = UserTyping {
        user_id: conn.user_id,
        username: &conn.username,
        channel,
        is_typing,
    };
    state
        .delivery
        .broadcast_from(
            Some(s),
            vec![channel_room(channel)],
            server::USER_TYPING,
            &body,
        )
        .await;
}

/// After a throttled change, relays the socket's latest typing state once the interval is
/// over, if it still differs from what the channel was told (so the last state always arrives).
async fn trailing_typing(state: AppState, s: SocketRef<Adapter>, conn: Arc<Conn>, wait: Duration) {
    tokio::time::sleep(wait).await;
    let due = {
        let Ok(mut t) = conn.typing.lock() else {
            return;
        };
        t.scheduled = false;
        match t.wanted.clone() {
            Some(wanted) if t.relayed.as_ref() != Some(&wanted) => {
                t.relayed = Some(wanted.clone());
                t.at = Some(Instant::now());
                Some(wanted)
            }
            _ => None,
        }
    };
    if let Some((channel, is_typing)) = due {
        // Only while the socket is still in that channel.
        if conn
            .channel()
            .is_some_and(|current| current.name == channel)
        {
            relay_typing(&state, &s, &conn, &channel, is_typing).await;
        }
    }
}
