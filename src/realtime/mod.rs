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
    /// The channel this socket is counted in (its room may be joined before it is counted).
    channel_counted: Option<String>,
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

/// Completes an accepted handshake before the client is told it is connected: the socket gets
/// its state, its event handlers and its rooms (its user room and the default channel), so that
/// neither an event the client sends nor a message broadcast right after `connect` can miss it.
/// Presence is counted afterwards, in [`on_connect`].
async fn admit(s: &SocketRef<Adapter>, state: &AppState, session: &Session) {
    let conn = Arc::new(Conn::new(session));
    s.join(user_room(conn.user_id));
    if let Some(channel) = default_channel(state).await {
        s.join(channel_room(&channel.name));
        conn.set_channel(Some((channel.name.clone(), channel.id)));
    }
    s.extensions.insert(conn);
    events::register(s);
    s.on_disconnect(on_disconnect);
}

/// The public default channel, looked up once.
async fn default_channel(state: &AppState) -> Option<Channel> {
    let name = state.config.default_channel()?;
    let found = state
        .default_channel
        .get_or_try_init(|| async { crate::access::channel(state, name).await })
        .await;
    match found {
        Ok(channel) if !channel.is_private() => Some(channel.clone()),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "default channel not joined");
            None
        }
    }
}

/// Counts the new connection in cluster presence and announces a user who came online.
async fn on_connect(s: SocketRef<Adapter>, State(state): State<AppState>, io: SocketIo<Adapter>) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        let _ = s.disconnect();
        return;
    };
    tracing::info!(sid = %s.id, user_id = %conn.user_id, transport = ?s.transport_type(), "socket connected");
    let mut life = conn.lifecycle.lock().await;
    if life.closed {
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
    // A `channel.join` may have run first and counted its channel already.
    if life.channel_counted.is_none() {
        if let Some((name, _)) = conn.channel() {
            if let Some(change) = count_join(&state, &mut life, &conn, &name).await {
                channels.push((name, change.online));
            }
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

/// Uncounts the socket from presence and announces a user who went offline.
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
    conn.set_channel(None);
    let mut channels = Vec::new();
    if let Some((name, change)) = count_leave(&state, &mut life, &conn).await {
        channels.push((name, change.online));
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

/// Counts the socket in a channel's presence. Presence is best effort: when Redis fails, the
/// socket stays in the room uncounted.
async fn count_join(
    state: &AppState,
    life: &mut Lifecycle,
    conn: &Conn,
    channel: &str,
) -> Option<ChannelChange> {
    match state.presence.join_channel(conn.user_id, channel).await {
        Ok(change) => {
            life.channel_counted = Some(channel.to_owned());
            Some(change)
        }
        Err(e) => {
            tracing::warn!(error = %e, "channel presence unavailable");
            None
        }
    }
}

/// Uncounts the socket from the channel it is counted in, if any.
async fn count_leave(
    state: &AppState,
    life: &mut Lifecycle,
    conn: &Conn,
) -> Option<(String, ChannelChange)> {
    let channel = life.channel_counted.take()?;
    match state.presence.leave_channel(conn.user_id, &channel).await {
        Ok(change) => Some((channel, change)),
        Err(e) => {
            tracing::warn!(error = %e, "channel presence unavailable");
            None
        }
    }
}

/// Moves a socket into `channel`, leaving its previous channel first (one active channel per
/// socket), and returns the channel's online count. Joining the channel it is already in
/// changes nothing.
async fn switch_channel(
    state: &AppState,
    s: &SocketRef<Adapter>,
    conn: &Conn,
    channel: &Channel,
) -> AppResult<u64> {
    let mut life = conn.lifecycle.lock().await;
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
    }
    count_leave(state, &mut life, conn).await;
    s.join(channel_room(&channel.name));
    conn.set_channel(Some((channel.name.clone(), channel.id)));
    // Before the connection is counted (just after the handshake), `on_connect` counts it.
    if !life.counted {
        return Ok(state
            .presence
            .channel_online(&channel.name)
            .await
            .unwrap_or(0));
    }
    let change = count_join(state, &mut life, conn, &channel.name).await;
    Ok(change.map(|c| c.online).unwrap_or(0))
}

/// Takes a socket out of its channel, if it is the one named.
async fn leave_channel(state: &AppState, s: &SocketRef<Adapter>, conn: &Conn, name: &str) -> bool {
    let mut life = conn.lifecycle.lock().await;
    match conn.channel() {
        Some((current, _)) if current == name => {
            s.leave(channel_room(name));
            conn.set_channel(None);
            count_leave(state, &mut life, conn).await;
            true
        }
        _ => false,
    }
}
