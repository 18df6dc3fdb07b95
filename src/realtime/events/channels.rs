//! `channel.join`, `channel.leave` and `channel.read`.

use std::sync::Arc;

use socketioxide::extract::SocketRef;

use super::outside_channel;
use crate::access;
use crate::auth::verify_password;
use crate::contract::{
    server, ChannelRead, JoinChannel, Joined, LeaveChannel, Left, ReadAck, ReadChannel,
};
use crate::error::{AppError, AppResult, Code};
use crate::realtime::membership::Conn;
use crate::realtime::rooms::user_room;
use crate::realtime::Adapter;
use crate::state::AppState;
use crate::store::channels;
use crate::validate;

pub(super) async fn join(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    JoinChannel { channel, password }: JoinChannel,
) -> AppResult<Joined> {
    {
        let (channel, readable) = access::channel_for(&state, &channel, conn.user_id).await?;
        if !readable {
            let refused = || {
                AppError::new(
                    Code::Forbidden,
                    "this channel is private: a wrong or missing password",
                )
            };
            // A direct-message channel has its two members and nobody else.
            if channel.is_dm() {
                return Err(refused());
            }
            let password = password.ok_or_else(refused)?;
            // Counted before the hash: guesses are capped per user and paced per channel.
            let user = conn.user_id.to_string();
            if let Some(wait) = state.limiter.channel_guess(&user, &channel.name).await? {
                return Err(AppError::rate_limited(wait));
            }
            if !verify_password(password, channel.password_hash.clone()).await? {
                return Err(refused());
            }
            if let Err(e) = state.limiter.channel_guess_succeeded(&user).await {
                tracing::debug!(error = %e, "channel guess not forgiven");
            }
            channels::add_member(&state.db, channel.id, conn.user_id).await?;
        }
        let online = state.membership.switch_channel(&s, &conn, &channel).await?;
        // A first visit starts the user's read position at the newest message (history is
        // there to read); a later one keeps it.
        if let Err(e) = channels::start_reading(&state.db, conn.user_id, channel.id).await {
            tracing::debug!(error = %e, "read position not started");
        }
        crate::realtime::recovery::joined(
            &state,
            &s,
            &crate::realtime::membership::JoinedChannel::of(&channel),
        )
        .await;
        if let Some(pid) = s.pid() {
            state
                .recovery
                .moved(pid, &s.id.to_string(), Some(&channel.name))
                .await;
        }
        Ok(Joined {
            channel: channel.view(),
            online,
        })
    }
}

pub(super) async fn leave(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    LeaveChannel { channel }: LeaveChannel,
) -> AppResult<Left> {
    let name = validate::channel_name(&channel)?;
    if state.membership.leave_channel(&s, &conn, &name).await {
        if let Some(pid) = s.pid() {
            state.recovery.moved(pid, &s.id.to_string(), None).await;
        }
        Ok(Left {})
    } else {
        Err(outside_channel(&state, &name).await)
    }
}

pub(super) async fn read(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    ReadChannel { channel, seq }: ReadChannel,
) -> AppResult<ReadAck> {
    let channel = access::readable_channel(&state, &channel, conn.user_id).await?;
    // Only a move forward is written (and told to the user's sockets); a repeat costs one
    // index lookup.
    let (read_seq, moved) = channels::mark_read(&state.db, conn.user_id, channel.id, seq).await?;
    if moved {
        let body = ChannelRead {
            channel: channel.name,
            read_seq,
        };
        state
            .delivery
            .broadcast(vec![user_room(conn.user_id)], server::CHANNEL_READ, &body)
            .await;
    }
    Ok(ReadAck { read_seq })
}
