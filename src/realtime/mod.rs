//! The Socket.IO side: the server setup, the handshake, connection lifecycle and presence.
//! Each client event has its handler in [`events`].

mod bus;
pub mod commit;
pub mod emit;
mod events;
pub mod fanout;
mod handshake;
pub mod payload;
pub mod presence_events;
mod reply;

use std::collections::HashMap;
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

pub use bus::Bus;
pub use handshake::Session;

/// The room of one user's sockets, cluster-wide.
pub fn user_room(user: Uuid) -> String {
    format!("user:{user}")
}

/// The room of one session's sockets (a token's `jti`), cluster-wide: logout ends them.
pub fn session_room(jti: Uuid) -> String {
    format!("session:{jti}")
}

/// Disconnects every socket in `room` on every instance (through the adapter), in the
/// background. A Socket.IO client does not reconnect after a server-side disconnect.
pub fn disconnect_room(state: &AppState, room: String) {
    let Some(namespace) = state.namespace.get().cloned() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = namespace.to(room.clone()).disconnect().await {
            tracing::warn!(%room, error = %e, "sockets could not be disconnected everywhere");
        }
    });
}

/// The notification channel on which Postgres announces a removed user (see the migrations).
const USER_REMOVED: &str = "banter_user_removed";

/// A Postgres connection listening for removed users.
async fn listen_removed(db: &sqlx::PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(db).await?;
    listener.listen(USER_REMOVED).await?;
    Ok(listener)
}

/// Listens for removed users and disconnects their sockets on this instance (every instance
/// listens). Listening is in place when this returns (or, if Postgres refused it, retried in
/// the background); the listener reconnects by itself after Postgres comes back.
async fn watch_removed_users(state: &AppState) {
    let first = listen_removed(&state.db).await;
    let state = state.clone();
    tokio::spawn(async move {
        let mut listener = match first {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for removed users; retrying");
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    match listen_removed(&state.db).await {
                        Ok(l) => break l,
                        Err(e) => tracing::warn!(error = %e, "cannot listen for removed users"),
                    }
                }
            }
        };
        loop {
            match listener.recv().await {
                Ok(note) => {
                    let Ok(user) = Uuid::parse_str(note.payload()) else {
                        continue;
                    };
                    let Some(namespace) = state.namespace.get().cloned() else {
                        continue;
                    };
                    tracing::info!(user_id = %user, "user removed: disconnecting their sockets");
                    if let Err(e) = namespace.local().to(user_room(user)).disconnect().await {
                        tracing::debug!(error = %e, "removed user's sockets not disconnected");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "removed-user listener lost Postgres; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// The room of a channel.
pub fn channel_room(channel: &str) -> String {
    format!("channel:{channel}")
}

/// Per-socket state, kept in the socket's extensions.
pub struct Conn {
    pub user_id: Uuid,
    pub username: String,
    /// A guest: sends also count against the client address.
    pub guest: bool,
    /// The client address (through trusted proxies).
    pub address: std::net::IpAddr,
    /// This socket's place under the per-user socket cap, held as long as the socket's state.
    _reservation: Reservation,
    /// The socket's one active channel: name and id (the room it is in).
    channel: Mutex<Option<(String, Uuid)>>,
    /// What cluster presence holds for this socket. Changed only together with the Redis
    /// counters, under the presence gate (see [`crate::Shared::presence_gate`]).
    counted: Mutex<Counted>,
    /// Serializes joins, leaves and the disconnect cleanup of this socket; true once the socket
    /// has disconnected (nothing may be counted for it any more).
    closed: tokio::sync::Mutex<bool>,
    /// This socket's typing state as relayed, and as last asked for (typing is throttled).
    pub typing: Mutex<Typing>,
}

/// A socket's typing state: what the channel was last told, and when.
#[derive(Default)]
pub struct Typing {
    /// The state last relayed, with its channel.
    pub relayed: Option<(String, bool)>,
    /// The state the client asked for last.
    pub wanted: Option<(String, bool)>,
    /// When a state was last relayed.
    pub at: Option<Instant>,
    /// A trailing relay is scheduled.
    pub scheduled: bool,
}

/// The presence this socket holds.
#[derive(Clone, Default)]
struct Counted {
    /// The connection is counted in the user's cluster-wide connections.
    user: bool,
    /// The channel whose presence counts this socket.
    channel: Option<String>,
}

impl Conn {
    fn new(session: &Session, reservation: Reservation) -> Self {
        Self {
            user_id: session.user_id,
            username: session.username.clone(),
            guest: session.guest,
            address: session.address,
            _reservation: reservation,
            channel: Mutex::new(None),
            counted: Mutex::new(Counted::default()),
            closed: tokio::sync::Mutex::new(false),
            typing: Mutex::new(Typing::default()),
        }
    }

    /// The socket's active channel (name and id).
    pub fn channel(&self) -> Option<(String, Uuid)> {
        self.channel.lock().ok().and_then(|c| c.clone())
    }

    fn set_channel(&self, state: &AppState, value: Option<(String, Uuid)>) {
        if let Ok(mut c) = self.channel.lock() {
            state.local_rooms.moved(
                c.as_ref().map(|(name, _)| name.as_str()),
                value.as_ref().map(|(name, _)| name.as_str()),
            );
            *c = value;
        }
    }

    fn counted(&self) -> Counted {
        self.counted.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn update_counted(&self, f: impl FnOnce(&mut Counted)) {
        if let Ok(mut c) = self.counted.lock() {
            f(&mut c);
        }
    }
}

/// Builds the Socket.IO layer on the Redis adapter and registers the `/` namespace.
/// Initial websocket read buffer per connection.
const WS_READ_BUFFER: usize = 1024;
/// How long an Engine.IO session may stay without a namespace CONNECT.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Packets queued per socket before further deliveries to it are dropped (a slow consumer).
const SEND_BUFFER_PACKETS: usize = 64;

pub async fn build(
    state: &AppState,
    redis: &redis::Client,
    commit_queue: commit::CommitQueue,
) -> anyhow::Result<(SocketIoLayer<Adapter>, SocketIo<Adapter>)> {
    let bus = bus::Bus::connect(redis.clone()).await?;
    let adapter = RedisAdapterCtr::new_with_driver(
        bus,
        RedisAdapterConfig::new().with_prefix(state.keys.adapter()),
    );
    let (layer, io) = SocketIo::builder()
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
        .with_state(state.clone())
        .with_adapter::<Adapter>(adapter)
        .build_layer();
    io.ns("/", on_connect.with(handshake::authenticate))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the Socket.IO adapter: {e}"))?;
    if let Some(namespace) = io.of("/") {
        let _ = state.namespace.set(namespace);
    }
    fanout::start(state, redis.clone()).await?;
    commit::start(state, commit_queue);
    watch_removed_users(state).await;
    Ok((layer, io))
}

/// This instance's sockets per user, reserved at the handshake (under one lock, so that a burst
/// of handshakes cannot pass the cap together) and released when the reservation is dropped:
/// with the socket's state, whichever way the socket ends, or with a refused handshake.
#[derive(Default)]
pub struct UserSockets(Mutex<HashMap<Uuid, u32>>);

/// One socket's place in [`UserSockets`], given back on drop.
pub struct Reservation {
    sockets: Arc<UserSockets>,
    user: Uuid,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.sockets.release(self.user);
    }
}

impl UserSockets {
    /// Reserves one more socket for `user` unless it already holds `max` here.
    fn reserve(self: &Arc<Self>, user: Uuid, max: u32) -> Option<Reservation> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Reservation {
            sockets: self.clone(),
            user,
        })
    }

    fn release(&self, user: Uuid) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(n) = m.get_mut(&user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&user);
                }
            }
        }
    }
}

/// Engine.IO sessions opened per client address that have not completed an authenticated
/// CONNECT yet (each costs memory until it does or [`CONNECT_TIMEOUT`] closes it).
#[derive(Default)]
pub struct PendingSessions(Mutex<HashMap<std::net::IpAddr, std::collections::VecDeque<Instant>>>);

impl PendingSessions {
    /// Counts a new session from `address` unless `max` are pending already.
    pub fn open(&self, address: std::net::IpAddr, max: usize) -> bool {
        let Ok(mut m) = self.0.lock() else {
            return false;
        };
        if m.len() > 10_000 {
            m.retain(|_, q| {
                q.retain(|t| t.elapsed() < CONNECT_TIMEOUT);
                !q.is_empty()
            });
        }
        let q = m.entry(address).or_default();
        q.retain(|t| t.elapsed() < CONNECT_TIMEOUT);
        if q.len() >= max {
            return false;
        }
        q.push_back(Instant::now());
        true
    }

    /// One session of `address` completed its CONNECT.
    fn connected(&self, address: std::net::IpAddr) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(q) = m.get_mut(&address) {
                q.pop_front();
                if q.is_empty() {
                    m.remove(&address);
                }
            }
        }
    }
}

/// How many of this instance's sockets are in each channel's room (a socket is in one channel
/// at a time): the receivers of a local delivery, and a crowd measure that needs no Redis.
#[derive(Default)]
pub struct LocalRooms(Mutex<HashMap<String, u64>>);

impl LocalRooms {
    /// A socket moved from one channel to another (or into or out of none).
    fn moved(&self, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Ok(mut m) = self.0.lock() {
            if let Some(from) = from {
                if let Some(n) = m.get_mut(from) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(from);
                    }
                }
            }
            if let Some(to) = to {
                *m.entry(to.to_owned()).or_insert(0) += 1;
            }
        }
    }

    /// This instance's sockets in a channel.
    pub fn members(&self, channel: &str) -> u64 {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(channel).copied())
            .unwrap_or(0)
    }
}

/// Completes an accepted handshake before the client is told it is connected: the socket gets
/// its state, its event handlers and its rooms (its user room and the default channel), so that
/// neither an event the client sends nor a message broadcast right after `connect` can miss it.
/// Presence is counted afterwards, in [`on_connect`].
async fn admit(
    s: &SocketRef<Adapter>,
    state: &AppState,
    session: &Session,
    reservation: Reservation,
) {
    let conn = Arc::new(Conn::new(session, reservation));
    s.join(vec![user_room(conn.user_id), session_room(session.jti)]);
    if let Some(channel) = default_channel(state).await {
        s.join(channel_room(&channel.name));
        conn.set_channel(state, Some((channel.name.clone(), channel.id)));
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
async fn on_connect(s: SocketRef<Adapter>, State(state): State<AppState>) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        let _ = s.disconnect();
        return;
    };
    tracing::info!(sid = %s.id, user_id = %conn.user_id, transport = ?s.transport_type(), "socket connected");
    let closed = conn.closed.lock().await;
    if *closed {
        return;
    }
    let outcome = count_socket(&state, &conn).await;
    drop(closed);
    if outcome.came_online {
        presence_events::announce_status(
            &state,
            conn.user_id,
            &conn.username,
            true,
            &outcome.channels,
        )
        .await;
    }
}

/// What counting a socket changed.
#[derive(Default)]
pub(crate) struct Counting {
    /// The user's first connection in the cluster.
    pub came_online: bool,
    /// The channel the socket was counted in, with its online count.
    pub channels: Vec<(String, u64)>,
}

/// Counts whatever of this socket presence does not hold yet: the connection, and its channel.
/// Presence is best effort: what fails (Redis away) stays uncounted until the next rebuild.
pub(crate) async fn count_socket(state: &AppState, conn: &Conn) -> Counting {
    let _gate = state.presence_gate.read().await;
    let mut outcome = Counting::default();
    let counted = conn.counted();
    if !counted.user {
        match state
            .presence
            .on_connect(conn.user_id, &conn.username)
            .await
        {
            Ok(online) => {
                outcome.came_online = online;
                conn.update_counted(|c| c.user = true);
                state.live_sockets.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                state.presence_stale.store(true, Ordering::Release);
                tracing::warn!(user_id = %conn.user_id, error = %e, "presence unavailable at connect")
            }
        }
    }
    if counted.channel.is_none() {
        if let Some((name, _)) = conn.channel() {
            if let Some(change) = count_join(state, conn, &name).await {
                outcome.channels.push((name, change.online));
            }
        }
    }
    outcome
}

/// Uncounts the socket from presence and announces a user who went offline.
async fn on_disconnect(
    s: SocketRef<Adapter>,
    State(state): State<AppState>,
    reason: DisconnectReason,
) {
    let Some(conn) = s.extensions.get::<Arc<Conn>>() else {
        return;
    };
    release(&state, &conn).await;
    tracing::info!(sid = %s.id, user_id = %conn.user_id, ?reason, "socket disconnected");
}

/// Uncounts a socket that is going away (once: later calls change nothing) and announces a
/// user who thereby went offline.
async fn release(state: &AppState, conn: &Conn) {
    let mut closed = conn.closed.lock().await;
    if *closed {
        return;
    }
    *closed = true;
    conn.set_channel(state, None);
    let gate = state.presence_gate.read().await;
    let mut channels = Vec::new();
    if let Some((name, change)) = count_leave(state, conn).await {
        channels.push((name, change.online));
    }
    let mut went_offline = false;
    if conn.counted().user {
        conn.update_counted(|c| c.user = false);
        match state.presence.on_disconnect(conn.user_id).await {
            Ok(offline) => went_offline = offline,
            Err(e) => {
                state.presence_stale.store(true, Ordering::Release);
                tracing::warn!(user_id = %conn.user_id, error = %e, "presence unavailable at disconnect")
            }
        }
        state.live_sockets.fetch_sub(1, Ordering::AcqRel);
    }
    drop(gate);
    drop(closed);
    if went_offline {
        let names: Vec<String> = channels.into_iter().map(|(name, _)| name).collect();
        presence_events::went_offline(state, &conn.user_id.to_string(), &conn.username, &names)
            .await;
    }
}

/// Releases every socket of this instance (for a clean shutdown: the Socket.IO server is
/// closed afterwards, and its own disconnect handling may no longer run).
pub async fn release_all(state: &AppState, io: &SocketIo<Adapter>) {
    let conns: Vec<Arc<Conn>> = io
        .local()
        .sockets()
        .into_iter()
        .filter_map(|s| s.extensions.get::<Arc<Conn>>())
        .collect();
    futures_util::future::join_all(conns.iter().map(|conn| release(state, conn))).await;
}

/// Counts the socket in a channel's presence (the caller holds the presence gate).
async fn count_join(state: &AppState, conn: &Conn, channel: &str) -> Option<ChannelChange> {
    match state.presence.join_channel(conn.user_id, channel).await {
        Ok(change) => {
            conn.update_counted(|c| c.channel = Some(channel.to_owned()));
            Some(change)
        }
        Err(e) => {
            state.presence_stale.store(true, Ordering::Release);
            tracing::warn!(error = %e, "channel presence unavailable");
            None
        }
    }
}

/// Uncounts the socket from the channel it is counted in, if any (the caller holds the gate).
async fn count_leave(state: &AppState, conn: &Conn) -> Option<(String, ChannelChange)> {
    let mut channel = None;
    conn.update_counted(|c| channel = c.channel.take());
    let channel = channel?;
    match state.presence.leave_channel(conn.user_id, &channel).await {
        Ok(change) => Some((channel, change)),
        Err(e) => {
            state.presence_stale.store(true, Ordering::Release);
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
    let closed = conn.closed.lock().await;
    if *closed {
        return Err(AppError::new(
            crate::error::Code::Unavailable,
            "the socket is closing",
        ));
    }
    if let Some((current, _)) = conn.channel() {
        if current == channel.name {
            drop(closed);
            return Ok(state.presence.channel_online(&current).await.unwrap_or(0));
        }
        s.leave(channel_room(&current));
    }
    s.join(channel_room(&channel.name));
    conn.set_channel(state, Some((channel.name.clone(), channel.id)));
    let _gate = state.presence_gate.read().await;
    count_leave(state, conn).await;
    // Just after the handshake, before the connection is counted, `on_connect` counts it.
    if !conn.counted().user {
        return Ok(state
            .presence
            .channel_online(&channel.name)
            .await
            .unwrap_or(0));
    }
    let change = count_join(state, conn, &channel.name).await;
    Ok(change.map(|c| c.online).unwrap_or(0))
}

/// Takes a socket out of its channel, if it is the one named.
async fn leave_channel(state: &AppState, s: &SocketRef<Adapter>, conn: &Conn, name: &str) -> bool {
    let _closed = conn.closed.lock().await;
    match conn.channel() {
        Some((current, _)) if current == name => {
            s.leave(channel_room(name));
            conn.set_channel(state, None);
            let _gate = state.presence_gate.read().await;
            count_leave(state, conn).await;
            true
        }
        _ => false,
    }
}

/// Rebuilds this instance's share of cluster presence from its live sockets, after Redis lost
/// it (a restart without persistence) or another instance reaped it (this instance's heartbeat
/// lapsed while Redis was unreachable). Users who thereby come back online are announced.
pub async fn rebuild_presence(state: &AppState, io: &SocketIo<Adapter>) -> redis::RedisResult<()> {
    let gate = state.presence_gate.write().await;
    // Whatever of this instance's bookkeeping survived is subtracted first, then everything is
    // counted again from the sockets, so nothing is counted twice.
    state.presence.reap(state.presence.instance(), true).await?;
    let sockets = io.local().sockets();
    let mut users = 0;
    for socket in &sockets {
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            if conn.counted().user {
                state.live_sockets.fetch_sub(1, Ordering::AcqRel);
            }
            conn.update_counted(|c| *c = Counted::default());
        }
    }
    drop(gate);
    let mut announcements = Vec::new();
    for socket in sockets {
        let Some(conn) = socket.extensions.get::<Arc<Conn>>() else {
            continue;
        };
        let closed = conn.closed.lock().await;
        if *closed {
            continue;
        }
        let outcome = count_socket(state, &conn).await;
        drop(closed);
        users += 1;
        if outcome.came_online {
            announcements.push((conn, outcome.channels));
        }
    }
    tracing::info!(
        sockets = users,
        "presence rebuilt from this instance's sockets"
    );
    for (conn, channels) in announcements {
        presence_events::announce_status(state, conn.user_id, &conn.username, true, &channels)
            .await;
    }
    Ok(())
}
