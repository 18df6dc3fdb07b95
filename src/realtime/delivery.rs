//! [`Delivery`]: every outbound path of an instance, in one place.
//!
//! - `message.new` goes through the ordered fan-out ([`super::fanout`]): published in seq
//!   order through Redis, and delivered by every instance (the sender's included) to its own
//!   sockets in the order Redis gives. When Redis is away, the sender delivers to its own
//!   sockets directly.
//! - Every other server event (presence, typing, notices) goes to this instance's sockets
//!   directly and to the other instances through Redis pub/sub, on the events channel of the
//!   fan-out bucket of its first room (`{<prefix>:fo:<bucket>}:events`, a shard channel on a
//!   cluster); each instance delivers to its own sockets, so a drop anywhere is
//!   counted. When Redis is down the event still reaches this instance's sockets; the other
//!   instances' clients see a `seq` gap on their next message and fill it with `messages.sync`.
//! - A socket's send buffer is full (a slow consumer): socketioxide drops the packet for that
//!   socket only. Every such drop is counted and logged (at most one line per 10 s); the client
//!   detects the `seq` gap and syncs.
//! - Instructions to every instance (disconnect a user or a session, leave a channel) do not
//!   travel here but as Postgres notifications ([`super::instructions`]).

use std::sync::Arc;

use crate::kv::Redis;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::{BroadcastError, SocketError, SocketIo};
use socketioxide_redis::drivers::Driver;
use uuid::Uuid;

use super::bus::Bus;
use super::fanout::{RawBatch, Sequencer, SWEEP_PERIOD};
use super::membership::Removals;
use super::positions::{Positions, Step, RECOVERING_ROOM};
use super::rooms::{channel_room, user_room, LocalRooms};
use super::Adapter;
use crate::contract::Message;
use crate::contract::{server, Mention};
use crate::keys::Keys;
use crate::metrics::{Metrics, WarnLimit};
use crate::shutdown::Shutdown;

/// Messages and events each subscription may hold for this instance before it drops.
const SUBSCRIPTION_BUFFER: usize = 4096;

/// The outbound side of an instance. Cheap to clone.
#[derive(Clone)]
pub struct Delivery(Arc<Inner>);

struct Inner {
    /// The Socket.IO server: this instance's sockets, and the adapter to the others.
    io: SocketIo<Adapter>,
    redis: Redis,
    keys: Keys,
    /// This instance's id: relayed events it sent itself are not delivered twice.
    instance: String,
    sequencer: Sequencer,
    /// The receivers of a local `message.new` delivery, for the metrics.
    rooms: Arc<LocalRooms>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    /// Relay failures repeat per event; they are logged at a bounded rate.
    relay_warning: WarnLimit,
    /// Where removals from a channel go on this instance (see [`Removals`]).
    removals: Removals,
    /// Each channel's durable stream here: offsets, and sockets catching up.
    positions: Positions,
}

/// How long a disconnected socket's connection has to take its disconnect packet before it is
/// closed from the server's side (a client that stopped reading never takes it).
const DISCONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// An event on its way to the other instances, which deliver it to their own sockets.
#[derive(Serialize)]
struct Relay<'a, T: ?Sized> {
    origin: &'a str,
    rooms: &'a [String],
    event: &'a str,
    data: &'a T,
}

/// A relayed event as received: the data stays raw JSON, serialized once by the sender.
#[derive(serde::Deserialize)]
struct RawRelay {
    origin: String,
    rooms: Vec<String>,
    event: String,
    data: Box<serde_json::value::RawValue>,
}

/// What a [`Delivery`] is built from.
pub struct Parts {
    /// The Socket.IO server: this instance's sockets.
    pub io: SocketIo<Adapter>,
    pub redis: Redis,
    pub keys: Keys,
    /// This instance's id (relayed events it sent itself are not delivered twice).
    pub instance: String,
    /// This instance's sockets per channel.
    pub rooms: Arc<LocalRooms>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// Where removals from a channel go on this instance.
    pub removals: Removals,
}

impl Delivery {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            io,
            redis,
            keys,
            instance,
            rooms,
            metrics,
            shutdown,
            removals,
        } = parts;
        Delivery(Arc::new(Inner {
            sequencer: Sequencer::new(redis.clone(), keys.clone()),
            positions: Positions::new(rooms.clone()),
            io,
            redis,
            keys,
            instance,
            rooms,
            metrics,
            shutdown,
            relay_warning: WarnLimit::default(),
            removals,
        }))
    }

    /// Subscribes this instance to the fan-out and the event relay of every bucket on `bus`,
    /// and starts delivering what they bring and releasing parked batches.
    pub async fn start(&self, bus: Bus) -> anyhow::Result<()> {
        let mut messages = Vec::new();
        let mut events = Vec::new();
        for bucket in self.0.keys.buckets() {
            messages.push(
                bus.subscribe(self.0.keys.fanout(bucket), SUBSCRIPTION_BUFFER)
                    .await?,
            );
            events.push(
                bus.subscribe(self.0.keys.events(bucket), SUBSCRIPTION_BUFFER)
                    .await?,
            );
        }
        // Each bucket keeps its order; buckets are independent of each other.
        let mut messages = futures_util::stream::select_all(messages);
        let mut events = futures_util::stream::select_all(events);
        let this = self.clone();
        self.0.shutdown.spawn_until_stopped(async move {
            while let Some((_, payload)) = events.next().await {
                this.deliver_relayed(&payload).await;
            }
        });
        let this = self.clone();
        self.0.shutdown.spawn_until_stopped(async move {
            // The bus must live as long as its subscriptions.
            let _bus = bus;
            while let Some((_, payload)) = messages.next().await {
                let Ok(batch) = serde_json::from_slice::<RawBatch>(&payload) else {
                    tracing::warn!("unreadable batch on the fan-out");
                    continue;
                };
                for (i, message) in batch.messages.iter().enumerate() {
                    let seq = match batch.first {
                        Some(first) => first + i as i64,
                        None => number_in(message, "seq"),
                    };
                    this.deliver_message(&batch.channel, seq, message).await;
                }
                if let Some(change) = &batch.change {
                    let number = change
                        .number
                        .unwrap_or_else(|| number_in(&change.data, "change"));
                    this.deliver_change(&batch.channel, number, &change.event, &change.data)
                        .await;
                }
            }
        });
        let this = self.clone();
        self.0.shutdown.spawn_until_stopped(async move {
            loop {
                tokio::time::sleep(SWEEP_PERIOD).await;
                if let Err(e) = this.0.sequencer.sweep().await {
                    tracing::debug!(error = %e, "fan-out sweep failed");
                }
            }
        });
        Ok(())
    }

    /// Sends newly stored messages as `message.new` to every socket of their channels, on every
    /// instance, in seq order per channel.
    pub async fn messages(&self, fresh: &[&Message]) {
        for message in self.0.sequencer.publish(fresh).await {
            match serde_json::value::to_raw_value(message) {
                Ok(raw) => {
                    self.deliver_message(&message.channel, message.seq, &raw)
                        .await
                }
                Err(e) => tracing::warn!(error = %e, "a message could not be serialized"),
            }
        }
        for message in fresh {
            if !message.mentions.is_empty() {
                self.mention(&message.mentions, message).await;
            }
        }
    }

    /// Tells each of `users`, on all their sockets on every instance (in the channel or not),
    /// that `message` mentions them.
    pub async fn mention(&self, users: &[Uuid], message: &Message) {
        let rooms = users.iter().map(|u| user_room(*u)).collect();
        let body = Mention {
            channel: message.channel.clone(),
            message: message.clone(),
        };
        self.broadcast(rooms, server::MENTION, &body).await;
    }

    /// Sends change `number` of a channel's messages (`message.updated`, `message.deleted`,
    /// `message.reactions`) to every socket of the channel, on every instance, in change order.
    pub async fn change<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        number: i64,
        event: &'static str,
        payload: &T,
    ) {
        self.0.metrics.broadcast(event);
        if !self
            .0
            .sequencer
            .publish_change(channel, number, event, payload)
            .await
        {
            match serde_json::value::to_raw_value(payload) {
                Ok(raw) => self.deliver_change(channel, number, event, &raw).await,
                Err(e) => tracing::warn!(event, error = %e, "a change could not be serialized"),
            }
        }
    }

    /// Sends `event` to one socket of this instance (an answer to what it did, such as
    /// `channel.joined`); a full send buffer counts as a drop, as for every delivery.
    pub fn to_socket<T: Serialize + ?Sized>(
        &self,
        s: &SocketRef<Adapter>,
        event: &'static str,
        payload: &T,
    ) {
        self.0.metrics.broadcast(event);
        match s.emit(event, payload) {
            Ok(()) => {}
            Err(socketioxide::SendError::Socket(SocketError::InternalChannelFull)) => {
                self.0.metrics.drops.count(1)
            }
            Err(e) => tracing::debug!(sid = %s.id, event, error = %e, "not delivered"),
        }
    }

    /// Sends `event` to the sockets in `rooms` on every instance (to every socket when `rooms`
    /// is empty).
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        rooms: Vec<String>,
        event: &'static str,
        payload: &T,
    ) {
        self.broadcast_from(None, rooms, event, payload).await;
    }

    /// Sends `event` to the sockets in `rooms` on every instance, the sending socket (if any)
    /// excepted. This instance's sockets get it at once; the others' get it through Redis
    /// (the events channel of its first room's bucket), each instance delivering to its own
    /// sockets, so that every dropped
    /// delivery is counted where it happens. If Redis cannot carry it, this instance's sockets
    /// still get it.
    pub async fn broadcast_from<T: Serialize + ?Sized>(
        &self,
        sender: Option<&SocketRef<Adapter>>,
        rooms: Vec<String>,
        event: &'static str,
        payload: &T,
    ) {
        self.0.metrics.broadcast(event);
        // This instance's sockets first: they need no round trip.
        match sender {
            Some(s) => {
                let op = if rooms.is_empty() {
                    s.local().broadcast()
                } else {
                    s.local().to(rooms.clone())
                };
                self.report(op.emit(event, payload).await, event);
            }
            None => self.broadcast_local(rooms.clone(), event, payload).await,
        }
        self.relay(&rooms, event, payload).await;
    }

    /// Hands `event` for `rooms` to the other instances (through the events channel of the
    /// first room's bucket), which deliver it to their own sockets.
    async fn relay<T: Serialize + ?Sized>(&self, rooms: &[String], event: &str, payload: &T) {
        let relay = Relay {
            origin: &self.0.instance,
            rooms,
            event,
            data: payload,
        };
        match serde_json::to_vec(&relay) {
            Ok(body) => {
                let mut conn = self.0.redis.clone();
                let bucket = self
                    .0
                    .keys
                    .bucket(rooms.first().map(String::as_str).unwrap_or(""));
                let published: redis::RedisResult<i64> = redis::cmd(conn.publish_command())
                    .arg(self.0.keys.events(bucket))
                    .arg(body)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = published {
                    self.0.relay_warning.run(
                        || tracing::warn!(event, error = %e, "Redis unavailable: events reach this instance's sockets only"),
                    );
                }
            }
            Err(e) => tracing::warn!(event, error = %e, "event could not be serialized"),
        }
    }

    /// Makes `user`'s sockets on this instance leave `channel` (a removal from the channel;
    /// [`super::instructions`] carries it to the other instances).
    pub fn leave_here(&self, user: Uuid, channel: String) {
        self.0.removals.removed(user, channel);
    }

    /// Disconnects this instance's sockets in `room`: each is sent its disconnect packet, and
    /// its connection is closed [`DISCONNECT_GRACE`] later from the server's side, whatever
    /// state its transport is in (a socket whose outbound queue is full takes no packet, and
    /// one whose client stopped reading never sends it; both are ended all the same).
    pub async fn disconnect_local(&self, room: String) {
        let sockets = self.local_sockets(room);
        if sockets.is_empty() {
            return;
        }
        let mut connections = Vec::with_capacity(sockets.len());
        for s in sockets {
            connections.extend(
                s.req_parts()
                    .extensions
                    .get::<engineioxide::socket::SessionCloser>()
                    .cloned(),
            );
            if let Err(e) = s.disconnect() {
                tracing::debug!(error = %e, "disconnect packet not queued");
            }
        }
        self.0.shutdown.spawn(async move {
            tokio::time::sleep(DISCONNECT_GRACE).await;
            for connection in connections {
                connection.close(engineioxide::DisconnectReason::ClosingServer);
            }
        });
    }

    /// Every socket of this instance.
    pub fn all_local_sockets(&self) -> Vec<SocketRef<Adapter>> {
        match self.namespace() {
            Some(namespace) => namespace.local().sockets(),
            None => Vec::new(),
        }
    }

    /// Moves `sockets` to other instances: each is sent `instance.draining`, and `notice` later
    /// its connection is closed from the server's side as at a shutdown, so that the client
    /// reconnects by itself (elsewhere: this instance refuses new sessions meanwhile) and its
    /// session stays recoverable.
    pub async fn move_away(&self, sockets: Vec<SocketRef<Adapter>>, notice: std::time::Duration) {
        let body = crate::contract::InstanceDraining { reconnect: true };
        let mut connections = Vec::with_capacity(sockets.len());
        for s in &sockets {
            self.to_socket(s, server::INSTANCE_DRAINING, &body);
            connections.extend(
                s.req_parts()
                    .extensions
                    .get::<engineioxide::socket::SessionCloser>()
                    .cloned(),
            );
        }
        tokio::time::sleep(notice).await;
        for connection in connections {
            connection.close(engineioxide::DisconnectReason::ClosingServer);
        }
    }

    /// This instance's sockets in `room`.
    pub fn local_sockets(&self, room: String) -> Vec<SocketRef<Adapter>> {
        match self.namespace() {
            Some(namespace) => namespace.local().to(room).sockets(),
            None => Vec::new(),
        }
    }

    /// The `/` namespace, while the Socket.IO server is open.
    fn namespace(&self) -> Option<BroadcastOperators<Adapter>> {
        self.0.io.of("/")
    }

    /// Sends one `message.new` to this instance's sockets in `channel`, with its offset.
    async fn deliver_message(&self, channel: &str, seq: i64, message: &RawValue) {
        let receivers = self.0.rooms.members(channel);
        self.0.metrics.deliveries.inc_by(receivers);
        self.deliver_durable(channel, Step::Message(seq), server::MESSAGE_NEW, message)
            .await;
    }

    /// Delivers change `number` of `channel` to this instance's sockets in the channel.
    async fn deliver_change(&self, channel: &str, number: i64, event: &str, data: &RawValue) {
        if !server::CHANGES.contains(&event) {
            self.0
                .relay_warning
                .run(|| tracing::warn!(event, "unknown change event on the fan-out"));
            return;
        }
        self.deliver_durable(channel, Step::Change(number), event, data)
            .await;
    }

    /// Sends a durable event (a message or a change) to this instance's sockets in `channel`,
    /// with its offset (see [`Positions`]).
    async fn deliver_durable(&self, channel: &str, step: Step, event: &str, data: &RawValue) {
        let Some(namespace) = self.namespace() else {
            return;
        };
        let room = namespace
            .local()
            .to(channel_room(channel))
            .except(RECOVERING_ROOM);
        let result = self
            .0
            .positions
            .deliver(channel, step, event, data, room)
            .await;
        self.report(result, event);
    }

    /// Each channel's durable stream on this instance (offsets, sockets catching up).
    pub fn positions(&self) -> &Positions {
        &self.0.positions
    }

    /// Delivers an event relayed by another instance to this instance's sockets.
    async fn deliver_relayed(&self, payload: &[u8]) {
        let Ok(relay) = serde_json::from_slice::<RawRelay>(payload) else {
            self.0
                .relay_warning
                .run(|| tracing::warn!("unreadable event on the relay channel"));
            return;
        };
        if relay.origin == self.0.instance {
            return;
        }
        self.broadcast_local(relay.rooms, &relay.event, &relay.data)
            .await;
    }

    /// Sends `event` to this instance's sockets in `rooms` only (to all of them when `rooms`
    /// is empty).
    async fn broadcast_local<T: Serialize + ?Sized>(
        &self,
        rooms: Vec<String>,
        event: &str,
        payload: &T,
    ) {
        let Some(namespace) = self.namespace() else {
            return;
        };
        let local = namespace.local();
        let op = if rooms.is_empty() {
            local
        } else {
            local.to(rooms)
        };
        self.report(op.emit(event, payload).await, event);
    }

    fn report(&self, result: Result<(), BroadcastError>, event: &str) {
        match result {
            Ok(()) => {}
            Err(BroadcastError::Socket(errors)) => {
                // A socket that closed meanwhile is not a drop; a full buffer is.
                let full = errors
                    .iter()
                    .filter(|e| matches!(e, SocketError::InternalChannelFull))
                    .count();
                if full > 0 {
                    self.0.metrics.drops.count(full);
                }
            }
            Err(e) => self
                .0
                .relay_warning
                .run(|| tracing::warn!(event, error = %e, "broadcast failed")),
        }
    }
}

/// A number field of a raw event body (for batches from instances that did not send it
/// alongside); 0 when it has none.
fn number_in(data: &RawValue, field: &str) -> i64 {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(data.get())
        .ok()
        .and_then(|m| m.get(field).and_then(serde_json::Value::as_i64))
        .unwrap_or(0)
}
