//! The Socket.IO side, wired together here:
//!
//! - [`handshake`] admits a socket (Origin, session, per-user cap);
//! - [`membership::Membership`] holds every socket's state, rooms and presence;
//! - [`events`] handles each client event;
//! - [`commit`] stores messages (group commit) and hands them to
//! - [`delivery::Delivery`], which owns every outbound path (the ordered `message.new`
//!   fan-out in [`fanout`], the relay of every other event, drop counting);
//! - [`announce`] and [`presence_tasks`] tell the channels about presence.

mod announce;
mod bus;
pub mod commit;
pub mod delivery;
mod events;
pub mod fanout;
mod handshake;
pub mod instructions;
pub mod membership;
pub mod positions;
pub mod presence_tasks;
pub mod recovery;
mod reply;
pub mod rooms;

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::DisconnectReason;
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use uuid::Uuid;

use crate::keys::Keys;
use crate::state::AppState;
use crate::store::channels::Channel;

pub use announce::Announcer;
pub use bus::Bus;
pub use membership::{removals, Conn, Membership, CONNECT_TIMEOUT};

/// The Socket.IO adapter: socketioxide's Redis adapter, which carries broadcasts between
/// instances, on a driver that reconnects when Redis restarts.
pub type Adapter = socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, Bus>;

/// Longest accepted Engine.IO payload, the same on polling and websocket: room for a message
/// of the longest text with every character escaped, and for a clear `too_long` answer to
/// oversized messages instead of a dropped connection.
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;

/// Initial websocket read buffer per connection.
const WS_READ_BUFFER: usize = 1024;
/// Packets queued per socket before further deliveries to it are dropped (a slow consumer).
const SEND_BUFFER_PACKETS: usize = 64;

/// The Engine.IO heartbeat: a ping every `interval`; a connection that has not answered within
/// `timeout` after it is closed (and so is one whose writes stay stuck for both together).
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
}

/// Builds the Socket.IO server on the Redis adapter (socketioxide's, on banter's reconnecting
/// [`Bus`]). The `/` namespace is registered by [`start`], once the instance's services exist.
pub fn socket_layer(
    bus: &Bus,
    keys: &Keys,
    heartbeat: Heartbeat,
) -> (SocketIoLayer<Adapter>, SocketIo<Adapter>) {
    let adapter = RedisAdapterCtr::new_with_driver(
        bus.clone(),
        RedisAdapterConfig::new().with_prefix(keys.adapter()),
    );
    SocketIo::builder()
        .max_payload(MAX_PAYLOAD_BYTES as u64)
        .ws_max_message_size(MAX_PAYLOAD_BYTES)
        .ws_max_frame_size(MAX_PAYLOAD_BYTES)
        // Per-connection memory: a 1 KiB websocket read buffer (it grows for a larger frame)
        // and room for 64 queued packets per socket before deliveries to it are dropped.
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_buffer_size(SEND_BUFFER_PACKETS)
        // An Engine.IO session that has not completed an authenticated CONNECT by then is
        // closed (each costs memory while it waits).
        .connect_timeout(CONNECT_TIMEOUT)
        .ping_interval(heartbeat.interval)
        .ping_timeout(heartbeat.timeout)
        .with_adapter::<Adapter>(adapter)
        .build_layer()
}

/// Registers the `/` namespace, subscribes delivery to Redis, and starts the commit loop and
/// the removed-user listener.
pub async fn start(
    state: &AppState,
    io: &SocketIo<Adapter>,
    bus: Bus,
    commit_queue: commit::CommitQueue,
    removal_queue: membership::RemovalQueue,
) -> anyhow::Result<()> {
    let (on_state, check_state) = (state.clone(), state.clone());
    let on_connect = move |s: SocketRef<Adapter>| {
        let state = on_state.clone();
        async move { connected(&state, s).await }
    };
    let check = move |s: SocketRef<Adapter>, TryData(auth): TryData<Value>| {
        let state = check_state.clone();
        async move {
            let auth = auth.as_ref().ok();
            let (session, reservation) = handshake::authenticate(&state, &s, auth).await?;
            let channel = match recovery::restore(&state, &s, &session, auth).await {
                Some(restored) => {
                    s.set_pid(restored.pid);
                    s.extensions.insert(Recovered);
                    restored.channel
                }
                None => {
                    if state.recovery.enabled() {
                        s.set_pid(recovery::Recovery::new_pid());
                    }
                    default_channel(&state).await
                }
            };
            state
                .membership
                .admit(&s, &session, reservation, channel.as_ref());
            // Recorded before the CONNECT answer, so before any event of the socket (a
            // `channel.join` moves the record on).
            if let Some(pid) = s.pid() {
                let name = channel.as_ref().map(|c| c.name.as_str());
                state
                    .recovery
                    .open(pid, &session, &s.id.to_string(), name)
                    .await;
            }
            events::register(&s, &state);
            let state = state.clone();
            s.on_disconnect(move |s: SocketRef<Adapter>, reason: DisconnectReason| {
                let state = state.clone();
                async move { disconnected(&state, s, reason).await }
            });
            Ok::<(), handshake::Refused>(())
        }
    };
    io.ns("/", on_connect.with(check))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the Socket.IO adapter: {e}"))?;
    state.delivery.start(bus).await?;
    if state.recovery.enabled() {
        recovery::sweep_change_log(state);
    }
    commit::start(state.committer.writer(), commit_queue, &state.shutdown);
    instructions::listen(&state.db, &state.delivery, &state.ops, &state.shutdown).await;
    // Removals from a channel, made here or relayed, for this instance's sockets.
    let (state, mut queue) = (state.clone(), removal_queue);
    state.shutdown.clone().spawn_until_stopped(async move {
        while let Some((user, channel)) = queue.0.recv().await {
            leave_removed_channel(&state, user, &channel).await;
        }
    });
    Ok(())
}

/// Makes `user`'s sockets on this instance that are in `channel` leave it (they were removed
/// from it), and tells them with `channel.removed`.
async fn leave_removed_channel(state: &AppState, user: Uuid, channel: &str) {
    for s in state.delivery.local_sockets(rooms::user_room(user)) {
        let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
            continue;
        };
        if state.membership.leave_channel(&s, &conn, channel).await {
            if let Some(pid) = s.pid() {
                state.recovery.moved(pid, &s.id.to_string(), None).await;
            }
            let body = crate::contract::ChannelRemoved {
                channel: channel.to_owned(),
            };
            state
                .delivery
                .to_socket(&s, crate::contract::server::CHANNEL_REMOVED, &body);
        }
    }
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

/// Marks a socket whose session was recovered (in its extensions).
#[derive(Clone, Copy)]
struct Recovered;

/// A socket completed its CONNECT: a recovered one is sent what it missed, a new one where it
/// joined its channel (with recovery on); it is counted in cluster presence.
async fn connected(state: &AppState, s: SocketRef<Adapter>) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        let _ = s.disconnect();
        return;
    };
    let recovered = s.extensions.remove::<Recovered>().is_some();
    tracing::info!(sid = %s.id, user_id = %conn.user_id, transport = ?s.transport_type(), recovered, "socket connected");
    let channel = conn.channel();
    if recovered {
        recovery::replay(state, &s, conn.user_id).await;
    } else if let Some(joined) = &channel {
        if state.recovery.enabled() {
            recovery::joined(state, &s, joined).await;
        }
    }
    state.membership.connected(&conn).await;
    if recovered {
        // Presence is not replayed but corrected: the channel's online count as it is now.
        if let Some(joined) = &channel {
            let online = state
                .presence
                .channel_online(&joined.name)
                .await
                .unwrap_or(0);
            let body = crate::contract::ChannelPresence {
                channel: &joined.name,
                online,
            };
            state
                .delivery
                .to_socket(&s, crate::contract::server::CHANNEL_PRESENCE, &body);
        }
    }
}

/// A socket went away: it is uncounted from presence.
async fn disconnected(state: &AppState, s: SocketRef<Adapter>, reason: DisconnectReason) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        return;
    };
    // Last seen first: whoever sees the user offline then sees when they were last here. A
    // Postgres that does not answer at once does not hold presence up.
    let touched = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        crate::store::users::touch_last_seen(&state.db, conn.user_id),
    )
    .await;
    if !matches!(touched, Ok(Ok(()))) {
        tracing::debug!(user_id = %conn.user_id, "last seen not recorded");
    }
    if let Some(pid) = s.pid() {
        state.recovery.closed(pid, &s.id.to_string(), reason).await;
        if let Some(channel) = conn.channel() {
            state.delivery.positions().abandon(&s, &channel.name).await;
        }
    }
    state.membership.release(&conn).await;
    tracing::info!(sid = %s.id, user_id = %conn.user_id, ?reason, "socket disconnected");
}
