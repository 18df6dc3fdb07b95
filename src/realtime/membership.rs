//! [`Membership`]: who is connected to this instance and where. It owns the per-socket state
//! ([`Conn`]), the sockets' rooms, the per-user and per-address caps, the counting of every
//! socket in cluster presence, channel switching, the release of every socket at shutdown and
//! the rebuild of this instance's presence after Redis lost it.
//!
//! Presence is best effort: what fails (Redis away) stays uncounted, the instance is marked
//! stale, and the next successful heartbeat rebuilds this instance's share from its sockets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;
use uuid::Uuid;

use super::announce::Announcer;
use super::rooms::{channel_room, session_room, user_room, LocalRooms};
use super::Adapter;
use crate::error::{AppError, AppResult, Code};
use crate::presence::{ChannelChange, Presence};
use crate::store::channels::Channel;

/// How long an Engine.IO session may stay without a namespace CONNECT.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The signed-in user of a socket, as the handshake found it.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: Uuid,
    pub username: String,
    /// The token's session id (logout disconnects the session's sockets).
    pub jti: Uuid,
    /// A guest (guests' sends also count against their client address).
    pub guest: bool,
    /// The client address (through trusted proxies).
    pub address: IpAddr,
}

/// Per-socket state, kept in the socket's extensions.
pub struct Conn {
    pub user_id: Uuid,
    pub username: String,
    /// A guest: sends also count against the client address.
    pub guest: bool,
    /// The client address (through trusted proxies).
    pub address: IpAddr,
    /// This socket's place under the per-user socket cap, held as long as the socket's state.
    _reservation: Reservation,
    /// The socket's one active channel (the room it is in).
    channel: Mutex<Option<JoinedChannel>>,
    /// What cluster presence holds for this socket. Changed only together with the Redis
    /// counters, under the presence gate (see [`Membership::gate`]).
    counted: Mutex<Counted>,
    /// Serializes joins, leaves and the disconnect cleanup of this socket; true once the socket
    /// has disconnected (nothing may be counted for it any more).
    closed: tokio::sync::Mutex<bool>,
    /// This socket's typing state as relayed, and as last asked for (typing is throttled).
    pub typing: Mutex<Typing>,
    /// Client events of this socket being handled now (bounded: see [`Conn::start_event`]).
    in_flight: AtomicU32,
    /// When this socket was last sent an `error` event (see [`Conn::error_event_due`]).
    last_error_event: Mutex<Option<Instant>>,
}

/// `error` events (failures of events sent without an ack) are sent at most this often per
/// socket: a client flooding events that fail must not fill its own send buffer with answers,
/// where its acks would be dropped.
pub const ERROR_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Removals queued for this instance's sockets before the task that applies them drops more.
const REMOVALS_QUEUED: usize = 4096;

/// Where removals from a channel go (a user's sockets on this instance are to leave it):
/// [`Delivery`](super::delivery::Delivery) sends those made here and those relayed from other
/// instances; the task [`super::start`] runs on the [`RemovalQueue`] applies them.
#[derive(Clone)]
pub struct Removals(tokio::sync::mpsc::Sender<(Uuid, String)>);

/// The receiving side of [`Removals`], consumed by [`super::start`].
pub struct RemovalQueue(pub(super) tokio::sync::mpsc::Receiver<(Uuid, String)>);

/// A new removal channel.
pub fn removals() -> (Removals, RemovalQueue) {
    let (tx, rx) = tokio::sync::mpsc::channel(REMOVALS_QUEUED);
    (Removals(tx), RemovalQueue(rx))
}

impl Removals {
    /// Queues the removal of `user`'s sockets on this instance from `channel`.
    pub fn removed(&self, user: Uuid, channel: String) {
        if let Err(e) = self.0.try_send((user, channel)) {
            tracing::warn!(user_id = %user, error = %e, "a removal from a channel was not applied on this instance");
        }
    }
}

/// The channel a socket is in, as it was when the socket joined it (a channel's kind and owner
/// never change), so that handlers need not look it up again.
#[derive(Clone, Debug)]
pub struct JoinedChannel {
    pub name: String,
    pub id: Uuid,
    /// A direct-message channel: its two members, no owner.
    pub dm: bool,
    /// Its owner (its creator), who moderates it; a direct message has none.
    pub owner: Option<Uuid>,
}

impl JoinedChannel {
    pub fn of(channel: &Channel) -> Self {
        JoinedChannel {
            name: channel.name.clone(),
            id: channel.id,
            dm: channel.is_dm(),
            owner: channel.owner(),
        }
    }
}

/// A client event being handled: counted in its socket's events in flight until dropped.
pub struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
            in_flight: AtomicU32::new(0),
            last_error_event: Mutex::new(None),
        }
    }

    /// Whether an `error` event may be sent to this socket now (at most one per
    /// [`ERROR_EVENT_INTERVAL`]); if so, it counts as sent.
    pub fn error_event_due(&self) -> bool {
        let Ok(mut last) = self.last_error_event.lock() else {
            return false;
        };
        let due = last.is_none_or(|at| at.elapsed() >= ERROR_EVENT_INTERVAL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Counts a client event in flight, unless `max` are already: then `None`.
    pub fn start_event(&self, max: u32) -> Option<InFlight<'_>> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(&self.in_flight))
    }

    /// The socket's active channel (name and id).
    pub fn channel(&self) -> Option<JoinedChannel> {
        self.channel.lock().ok().and_then(|c| c.clone())
    }

    fn set_channel(&self, rooms: &LocalRooms, value: Option<JoinedChannel>) {
        if let Ok(mut c) = self.channel.lock() {
            rooms.moved(
                c.as_ref().map(|c| c.name.as_str()),
                value.as_ref().map(|c| c.name.as_str()),
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

/// This instance's sockets per user, reserved at the handshake (under one lock, so that a burst
/// of handshakes cannot pass the cap together) and released when the reservation is dropped:
/// with the socket's state, whichever way the socket ends, or with a refused handshake.
#[derive(Default)]
struct UserSockets(Mutex<HashMap<Uuid, u32>>);

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
struct PendingSessions(Mutex<HashMap<IpAddr, VecDeque<Instant>>>);

impl PendingSessions {
    fn open(&self, address: IpAddr, max: usize) -> bool {
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

    fn connected(&self, address: IpAddr) {
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

/// What counting a socket changed.
#[derive(Default)]
struct Counting {
    /// The user's first connection in the cluster.
    came_online: bool,
    /// The channel the socket was counted in, with its online count.
    channels: Vec<(String, u64)>,
}

/// This instance's sockets: their state, rooms, caps and presence.
pub struct Membership {
    presence: Arc<Presence>,
    announcer: Announcer,
    rooms: Arc<LocalRooms>,
    user_sockets: Arc<UserSockets>,
    pending: PendingSessions,
    /// Held shared by every change of a socket's presence, and exclusively by a presence
    /// rebuild, so that a rebuild never counts a socket twice or misses one.
    gate: tokio::sync::RwLock<()>,
    /// Set when a presence change failed (Redis unreachable): the next successful heartbeat
    /// rebuilds this instance's presence from its sockets.
    stale: AtomicBool,
    /// Sockets whose presence is counted and whose disconnect cleanup has not finished
    /// (exported as `banter_sockets`); shutdown waits for it to reach zero.
    live: Gauge,
}

impl Membership {
    pub fn new(
        presence: Arc<Presence>,
        announcer: Announcer,
        rooms: Arc<LocalRooms>,
        live: Gauge,
    ) -> Self {
        Self {
            presence,
            announcer,
            rooms,
            user_sockets: Arc::default(),
            pending: PendingSessions::default(),
            gate: tokio::sync::RwLock::new(()),
            stale: AtomicBool::new(false),
            live,
        }
    }

    /// What the channels are told about presence.
    pub fn announcer(&self) -> &Announcer {
        &self.announcer
    }

    /// Distinct users with a socket on this instance.
    pub fn users_here(&self) -> u64 {
        self.user_sockets
            .0
            .lock()
            .map(|m| m.len() as u64)
            .unwrap_or(0)
    }

    /// This instance's sockets in `channel`.
    pub fn sockets_in(&self, channel: &str) -> u64 {
        self.rooms.members(channel)
    }

    /// This instance's busiest channels by sockets in them.
    pub fn busiest_rooms(&self, n: usize) -> Vec<(String, u64)> {
        self.rooms.busiest(n)
    }

    /// Sockets counted in presence and not yet released.
    pub fn live_sockets(&self) -> i64 {
        self.live.get()
    }

    /// Counts a new Engine.IO session from `address` unless `max` are waiting for their
    /// CONNECT already.
    pub fn open_session(&self, address: IpAddr, max: usize) -> bool {
        self.pending.open(address, max)
    }

    /// A session of `address` completed its authenticated CONNECT: it no longer counts as
    /// pending.
    pub fn session_connected(&self, address: IpAddr) {
        self.pending.connected(address);
    }

    /// Takes a socket's place under the per-user cap: at most `max` sockets of the user on
    /// this instance exactly, and (as presence counts them) in the cluster. `None` when full.
    pub async fn reserve(&self, session: &Session, max: u32) -> Option<Reservation> {
        let reservation = self.user_sockets.reserve(session.user_id, max)?;
        let cluster = self
            .presence
            .connections(session.user_id)
            .await
            .unwrap_or(0);
        (cluster < u64::from(max)).then_some(reservation)
    }

    /// Completes an accepted handshake before the client is told it is connected: the socket
    /// gets its state and its rooms (its user and session rooms and its channel: the default
    /// one, or a recovered one whose room it is in already), so that neither an event the
    /// client sends nor a message broadcast right after `connect` can miss it. Presence is
    /// counted afterwards, in [`Membership::connected`].
    pub fn admit(
        &self,
        s: &SocketRef<Adapter>,
        session: &Session,
        reservation: Reservation,
        channel: Option<&Channel>,
    ) {
        let conn = Arc::new(Conn::new(session, reservation));
        s.join(vec![user_room(conn.user_id), session_room(session.jti)]);
        if let Some(channel) = channel {
            s.join(channel_room(&channel.name));
            conn.set_channel(&self.rooms, Some(JoinedChannel::of(channel)));
        }
        s.extensions.insert(conn);
    }

    /// Counts a connected socket in cluster presence and announces a user who came online.
    pub async fn connected(&self, conn: &Conn) {
        let closed = conn.closed.lock().await;
        if *closed {
            return;
        }
        let outcome = self.count_socket(conn).await;
        drop(closed);
        if outcome.came_online {
            self.announcer
                .status(conn.user_id, &conn.username, true, &outcome.channels)
                .await;
        }
    }

    /// Counts whatever of this socket presence does not hold yet: the connection, and its
    /// channel.
    async fn count_socket(&self, conn: &Conn) -> Counting {
        let _gate = self.gate.read().await;
        let mut outcome = Counting::default();
        let counted = conn.counted();
        if !counted.user {
            match self.presence.on_connect(conn.user_id, &conn.username).await {
                Ok(online) => {
                    outcome.came_online = online;
                    conn.update_counted(|c| c.user = true);
                    self.live.inc();
                }
                Err(e) => {
                    self.mark_stale();
                    tracing::warn!(user_id = %conn.user_id, error = %e, "presence unavailable at connect")
                }
            }
        }
        if counted.channel.is_none() {
            if let Some(JoinedChannel { name, .. }) = conn.channel() {
                if let Some(change) = self.count_join(conn, &name).await {
                    outcome.channels.push((name, change.online));
                }
            }
        }
        outcome
    }

    /// Uncounts a socket that is going away (once: later calls change nothing) and announces a
    /// user who thereby went offline.
    pub async fn release(&self, conn: &Conn) {
        let mut closed = conn.closed.lock().await;
        if *closed {
            return;
        }
        *closed = true;
        conn.set_channel(&self.rooms, None);
        let gate = self.gate.read().await;
        let mut channels = Vec::new();
        if let Some((name, _)) = self.count_leave(conn).await {
            channels.push(name);
        }
        let mut went_offline = false;
        if conn.counted().user {
            conn.update_counted(|c| c.user = false);
            match self.presence.on_disconnect(conn.user_id).await {
                Ok(offline) => went_offline = offline,
                Err(e) => {
                    self.mark_stale();
                    tracing::warn!(user_id = %conn.user_id, error = %e, "presence unavailable at disconnect")
                }
            }
            self.live.dec();
        }
        drop(gate);
        drop(closed);
        if went_offline {
            self.announcer
                .went_offline(&conn.user_id.to_string(), &conn.username, &channels)
                .await;
        }
    }

    /// Releases every socket of this instance (for a clean shutdown: the Socket.IO server is
    /// closed afterwards, and its own disconnect handling may no longer run).
    pub async fn release_all(&self, io: &SocketIo<Adapter>) {
        let conns: Vec<Arc<Conn>> = io
            .local()
            .sockets()
            .into_iter()
            .filter_map(|s| s.extensions.get::<Arc<Conn>>())
            .collect();
        futures_util::future::join_all(conns.iter().map(|conn| self.release(conn))).await;
    }

    /// Counts the socket in a channel's presence (the caller holds the presence gate).
    async fn count_join(&self, conn: &Conn, channel: &str) -> Option<ChannelChange> {
        match self.presence.join_channel(conn.user_id, channel).await {
            Ok(change) => {
                conn.update_counted(|c| c.channel = Some(channel.to_owned()));
                Some(change)
            }
            Err(e) => {
                self.mark_stale();
                tracing::warn!(error = %e, "channel presence unavailable");
                None
            }
        }
    }

    /// Uncounts the socket from the channel it is counted in, if any (the caller holds the
    /// gate).
    async fn count_leave(&self, conn: &Conn) -> Option<(String, ChannelChange)> {
        let mut channel = None;
        conn.update_counted(|c| channel = c.channel.take());
        let channel = channel?;
        match self.presence.leave_channel(conn.user_id, &channel).await {
            Ok(change) => Some((channel, change)),
            Err(e) => {
                self.mark_stale();
                tracing::warn!(error = %e, "channel presence unavailable");
                None
            }
        }
    }

    /// Moves a socket into `channel`, leaving its previous channel first (one active channel
    /// per socket), and returns the channel's online count. Joining the channel it is already
    /// in changes nothing.
    pub async fn switch_channel(
        &self,
        s: &SocketRef<Adapter>,
        conn: &Conn,
        channel: &Channel,
    ) -> AppResult<u64> {
        let closed = conn.closed.lock().await;
        if *closed {
            return Err(AppError::new(Code::Unavailable, "the socket is closing"));
        }
        if let Some(JoinedChannel { name: current, .. }) = conn.channel() {
            if current == channel.name {
                drop(closed);
                return Ok(self.presence.channel_online(&current).await.unwrap_or(0));
            }
            s.leave(channel_room(&current));
        }
        s.join(channel_room(&channel.name));
        conn.set_channel(&self.rooms, Some(JoinedChannel::of(channel)));
        let _gate = self.gate.read().await;
        self.count_leave(conn).await;
        // Just after the handshake, before the connection is counted, `connected` counts it.
        if !conn.counted().user {
            return Ok(self
                .presence
                .channel_online(&channel.name)
                .await
                .unwrap_or(0));
        }
        let change = self.count_join(conn, &channel.name).await;
        Ok(change.map(|c| c.online).unwrap_or(0))
    }

    /// Takes a socket out of its channel, if it is the one named.
    pub async fn leave_channel(&self, s: &SocketRef<Adapter>, conn: &Conn, name: &str) -> bool {
        let _closed = conn.closed.lock().await;
        match conn.channel() {
            Some(current) if current.name == name => {
                s.leave(channel_room(name));
                conn.set_channel(&self.rooms, None);
                let _gate = self.gate.read().await;
                self.count_leave(conn).await;
                true
            }
            _ => false,
        }
    }

    /// A presence change failed: the next successful heartbeat rebuilds.
    fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Whether a presence change failed since the last call (and clears the mark).
    pub fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::AcqRel)
    }

    /// Rebuilds this instance's share of cluster presence from its live sockets, after Redis
    /// lost it (a restart without persistence) or another instance reaped it (this instance's
    /// heartbeat lapsed while Redis was unreachable). Users who thereby come back online are
    /// announced. On failure the instance stays marked stale, for the next period.
    pub async fn rebuild(&self, io: &SocketIo<Adapter>) -> redis::RedisResult<()> {
        let result = self.rebuild_once(io).await;
        if result.is_err() {
            self.mark_stale();
        }
        result
    }

    async fn rebuild_once(&self, io: &SocketIo<Adapter>) -> redis::RedisResult<()> {
        let gate = self.gate.write().await;
        // Whatever of this instance's bookkeeping survived is subtracted first, then
        // everything is counted again from the sockets, so nothing is counted twice.
        self.presence.reap(self.presence.instance(), true).await?;
        let sockets = io.local().sockets();
        for socket in &sockets {
            if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
                if conn.counted().user {
                    self.live.dec();
                }
                conn.update_counted(|c| *c = Counted::default());
            }
        }
        drop(gate);
        let mut counted = 0;
        let mut announcements = Vec::new();
        for socket in sockets {
            let Some(conn) = socket.extensions.get::<Arc<Conn>>() else {
                continue;
            };
            let closed = conn.closed.lock().await;
            if *closed {
                continue;
            }
            let outcome = self.count_socket(&conn).await;
            drop(closed);
            counted += 1;
            if outcome.came_online {
                announcements.push((conn, outcome.channels));
            }
        }
        tracing::info!(
            sockets = counted,
            "presence rebuilt from this instance's sockets"
        );
        for (conn, channels) in announcements {
            self.announcer
                .status(conn.user_id, &conn.username, true, &channels)
                .await;
        }
        Ok(())
    }
}
