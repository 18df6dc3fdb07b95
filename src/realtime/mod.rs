//! The Socket.IO side: the server setup, the handshake, connection lifecycle and presence.
//! Each client event has its handler in [`events`].

mod events;
mod handshake;
pub mod presence_events;
mod reply;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use socketioxide::extract::{SocketRef, State};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::presence::ChannelChange;
use crate::store::channels::Channel;
use crate::{Adapter, AppState, MAX_PAYLOAD_BYTES};

pub use handshake::Session;

/// The room of one user's sockets, cluster-wide.
pub fn user_room(user: Uuid) -> String {
    format!("user:{user}")
}

/// The room of a channel.
pub fn channel_room(channel: &str) -> String {
    format!("channel:{channel}")
}

/// Per-socket state, kept in the socket's extensions.
pub struct Conn {
    pub user_id: Uuid,
    pub username: String,
    /// The socket's one active channel: name and id.
    channel: Mutex<Option<(String, Uuid)>>,
    /// Serializes joins, leaves and the disconnect cleanup of this socket, so that presence
    /// counts always match the rooms the socket is in.
    lifecycle: tokio::sync::Mutex<Lifecycle>,
    /// When this socket last relayed `isTyping: true` (typing is throttled).
    pub last_typing: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Lifecycle {
    /// The connection is counted in cluster presence.
    counted: bool,
    /// The socket has disconnected: nothing may be counted for it any more.
    closed: bool,
}

impl Conn {
    fn new(session: &Session) -> Self {
        Self {
            user_id: session.user_id,
            username: session.username.clone(),
            channel: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(Lifecycle::default()),
            last_typing: Mutex::new(None),
        }
    }

    /// The socket's active channel (name and id).
    pub fn channel(&self) -> Option<(String, Uuid)> {
        self.channel.lock().ok().and_then(|c| c.clone())
    }

    fn set_channel(&self, value: Option<(String, Uuid)>) {
        if let Ok(mut c) = self.channel.lock() {
            *c = value;
        }
    }
}

/// Builds the Socket.IO layer on the Redis adapter and registers the `/` namespace.
pub async fn build(
    state: &AppState,
    redis: &redis::Client,
) -> anyhow::Result<(SocketIoLayer<Adapter>, SocketIo<Adapter>)> {
    let adapter = RedisAdapterCtr::new_with_redis_config(
        redis,
        RedisAdapterConfig::new().with_prefix(state.keys.adapter()),
    )
    .await?;
    let (layer, io) = SocketIo::builder()
        .max_payload(MAX_PAYLOAD_BYTES as u64)
        .ws_max_message_size(MAX_PAYLOAD_BYTES)
        .ws_max_frame_size(MAX_PAYLOAD_BYTES)
        .with_state(state.clone())
        .with_adapter::<Adapter>(adapter)
        .build_layer();
    io.ns("/", on_connect.with(handshake::authenticate))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the Socket.IO adapter: {e}"))?;
    Ok((layer, io))
}

async fn on_connect(s: SocketRef<Adapter>, State(state): State<AppState>, io: SocketIo<Adapter>) {
    let Some(session) = s.extensions.get::<Session>() else {
        let _ = s.disconnect();
        return;
    };
    let conn = Arc::new(Conn::new(&session));
    s.extensions.insert(conn.clone());
    events::register(&s);
    s.on_disconnect(on_disconnect);
    s.join(user_room(conn.user_id));
    tracing::info!(sid = %s.id, user_id = %conn.user_id, transport = ?s.transport_type(), "socket connected");

    let mut life = conn.lifecycle.lock().await;
    if life.closed || !s.connected() {
        return;
    }
    let came_online = match state
        .presence
        .on_connect(conn.user_id, &conn.username)
        .await
    {
        Ok(online) => {
            life.counted = true;
            state.live_sockets.fetch_add(1, Ordering::AcqRel);
            online
        }
        Err(e) => {
            tracing::warn!(sid = %s.id, error = %e, "presence unavailable at connect");
            false
        }
    };
    let mut channels = Vec::new();
    if let Some(default) = state.config.default_channel() {
        match crate::access::channel(&state, default).await {
            Ok(channel) if !channel.is_private() => {
                let change = enter_channel(&state, &s, &conn, &channel).await;
                channels.push((channel.name.clone(), change.online));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(sid = %s.id, error = %e, "default channel not joined"),
        }
    }
    drop(life);
    if came_online {
        presence_events::announce_status(
            &state,
            &io,
            conn.user_id,
            &conn.username,
            true,
            &channels,
        )
        .await;
    }
}

async fn on_disconnect(
    s: SocketRef<Adapter>,
    State(state): State<AppState>,
    io: SocketIo<Adapter>,
    reason: DisconnectReason,
) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        return;
    };
    let mut life = conn.lifecycle.lock().await;
    life.closed = true;
    let mut channels = Vec::new();
    if let Some((name, _)) = conn.channel() {
        conn.set_channel(None);
        if let Some(change) = count_leave(&state, &conn, &name).await {
            channels.push((name, change.online));
        }
    }
    let mut went_offline = false;
    if life.counted {
        life.counted = false;
        match state.presence.on_disconnect(conn.user_id).await {
            Ok(offline) => went_offline = offline,
            Err(e) => tracing::warn!(sid = %s.id, error = %e, "presence unavailable at disconnect"),
        }
        state.live_sockets.fetch_sub(1, Ordering::AcqRel);
    }
    drop(life);
    tracing::info!(sid = %s.id, user_id = %conn.user_id, ?reason, "socket disconnected");
    if went_offline {
        presence_events::announce_status(
            &state,
            &io,
            conn.user_id,
            &conn.username,
            false,
            &channels,
        )
        .await;
    }
}

/// Joins the socket to a channel room and counts it in the channel's presence. Presence is
/// best effort: when Redis fails, the socket still joins and the count reads 0.
async fn enter_channel(
    state: &AppState,
    s: &SocketRef<Adapter>,
    conn: &Conn,
    channel: &Channel,
) -> ChannelChange {
    s.join(channel_room(&channel.name));
    conn.set_channel(Some((channel.name.clone(), channel.id)));
    match state
        .presence
        .join_channel(conn.user_id, &channel.name)
        .await
    {
        Ok(change) => change,
        Err(e) => {
            tracing::warn!(sid = %s.id, error = %e, "channel presence unavailable");
            ChannelChange {
                transition: false,
                online: 0,
            }
        }
    }
}

/// Uncounts a socket from a channel's presence.
async fn count_leave(state: &AppState, conn: &Conn, channel: &str) -> Option<ChannelChange> {
    match state.presence.leave_channel(conn.user_id, channel).await {
        Ok(change) => Some(change),
        Err(e) => {
            tracing::warn!(error = %e, "channel presence unavailable");
            None
        }
    }
}

/// Moves a socket into `channel`, leaving its previous channel first (one active channel per
/// socket). Joining the channel it is already in changes nothing.
async fn switch_channel(
    state: &AppState,
    s: &SocketRef<Adapter>,
    conn: &Conn,
    channel: &Channel,
) -> AppResult<u64> {
    let life = conn.lifecycle.lock().await;
    if life.closed {
        return Err(AppError::new(
            crate::error::Code::Unavailable,
            "the socket is closing",
        ));
    }
    if let Some((current, _)) = conn.channel() {
        if current == channel.name {
            drop(life);
            return Ok(state.presence.channel_online(&current).await.unwrap_or(0));
        }
        s.leave(channel_room(&current));
        conn.set_channel(None);
        count_leave(state, conn, &current).await;
    }
    let change = enter_channel(state, s, conn, channel).await;
    Ok(change.online)
}

/// Takes a socket out of its channel, if it is the one named.
async fn leave_channel(state: &AppState, s: &SocketRef<Adapter>, conn: &Conn, name: &str) -> bool {
    let _life = conn.lifecycle.lock().await;
    match conn.channel() {
        Some((current, _)) if current == name => {
            s.leave(channel_room(name));
            conn.set_channel(None);
            count_leave(state, conn, name).await;
            true
        }
        _ => false,
    }
}
