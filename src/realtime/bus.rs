//! The Redis pub/sub driver under the Socket.IO adapter, made to survive Redis restarts.
//!
//! socketioxide-redis's own driver keeps one connection for life: when Redis restarts, publishing
//! fails and the subscriptions are gone, so cross-instance broadcast stops for good. This driver
//! keeps the same subscriber streams (the adapter holds them) but watches its connection: when a
//! ping fails or Redis reports a disconnection, it reconnects with backoff and subscribes every
//! channel again, and broadcasts flow again without a restart.
//!
//! Why not the `redis` crate's own resubscription (`ConnectionManagerConfig::
//! set_automatic_resubscription` with a push sender; redis 1.8.1, `aio/connection_manager.rs`):
//! it starts a reconnection when the connection reports a disconnection, or when a command on it
//! fails. The delivery subscriptions' connection carries no commands of its own (messages are
//! published through another connection), so if the attempts started by the disconnection all
//! fail (Redis down for longer than their retry budget), nothing starts another one and the
//! subscriptions stay lost until the process restarts; and a Redis that stops answering without
//! closing the connection is never noticed at all. This driver pings every second with a
//! deadline and retries until it is back, which `tests/api/faults.rs` exercises with a restarted
//! Redis.
//!
//! On a Redis Cluster the bus uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`): each channel lives
//! on the master of its slot, so the traffic spreads over the masters instead of every master
//! relaying every message. The watchdog then pings every master, and replaces the connection
//! when a ping fails or as soon as a node's connection reports its loss (the other masters
//! still answer a ping while that node's subscriptions are gone): it builds a new cluster
//! connection from the seed nodes and subscribes every channel again, retrying until the
//! cluster answers everywhere. Only the newest connection's messages are delivered, so a
//! replaced connection cannot deliver a message twice; what is lost in the switch is a `seq`
//! gap that clients fill with `messages.sync`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::{mpsc, Notify};

use crate::kv::{cluster_builder, RedisTarget};
use crate::metrics::Drops;
use crate::shutdown::Shutdown;

/// How often the connection is checked, and the longest wait between reconnection attempts.
const CHECK_PERIOD: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A command that takes longer than this counts as a broken connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the bus: Redis errors, or a connection that is being re-established.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// A reconnecting pub/sub driver for the socketioxide Redis adapter.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

struct Shared {
    target: RedisTarget,
    conn: RwLock<PubSub>,
    /// The generation of the current connection: pushes of an older one are ignored.
    generation: Arc<AtomicU64>,
    handlers: Handlers,
    /// False from a detected failure until the connection is back and resubscribed (so that
    /// the loss is logged once).
    healthy: AtomicBool,
    /// Woken by a failed command or a disconnection report, so the watchdog checks at once.
    wake: Arc<Wake>,
    /// Where events that a full subscription could not hold are counted.
    drops: Drops,
}

/// A pub/sub connection: plain pub/sub on one Redis, sharded pub/sub on a cluster.
#[derive(Clone)]
enum PubSub {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl PubSub {
    async fn publish(&mut self, chan: &str, val: &[u8]) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => c.publish::<_, _, redis::Value>(chan, val).await.map(drop),
            Self::Cluster(c) => c.spublish::<_, _, redis::Value>(chan, val).await.map(drop),
        }
    }

    async fn subscribe(&mut self, chan: &str) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => c.subscribe(chan).await,
            Self::Cluster(c) => c.ssubscribe(chan).await,
        }
    }

    async fn unsubscribe(&mut self, chan: &str) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => c.unsubscribe(chan).await,
            Self::Cluster(c) => c.sunsubscribe(chan).await,
        }
    }

    /// Pings Redis (on a cluster, every master).
    async fn ping(&mut self) -> redis::RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Single(c) => ping.query_async::<redis::Value>(c).await.map(drop),
            Self::Cluster(c) => ping.query_async::<redis::Value>(c).await.map(drop),
        }
    }

    /// How many subscribers `chan` has (on a cluster, summed over the nodes).
    async fn subscribers(&mut self, chan: &str) -> redis::RedisResult<u16> {
        let counts: HashMap<String, u16> = match self {
            Self::Single(c) => {
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(chan)
                    .query_async(c)
                    .await?
            }
            Self::Cluster(c) => {
                redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(chan)
                    .query_async(c)
                    .await?
            }
        };
        Ok(counts.get(chan).copied().unwrap_or(0))
    }
}

/// What wakes the watchdog: a failed command (check the connection), or a connection that
/// reported its loss (replace it: on a cluster, the other nodes still answer a ping while the
/// subscriptions of the lost node are gone).
#[derive(Default)]
struct Wake {
    notify: Notify,
    lost: AtomicBool,
}

impl Wake {
    fn check(&self) {
        self.notify.notify_one();
    }

    fn lost(&self) {
        self.lost.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

fn deliver(msg: PushInfo, handlers: &Handlers, wake: &Wake, drops: &Drops) {
    match msg.kind {
        PushKind::Message | PushKind::SMessage if msg.data.len() >= 2 => {
            let mut data = msg.data.into_iter();
            let (Some(chan), Some(payload)) = (data.next(), data.next()) else {
                return;
            };
            let (Ok(chan), Ok(payload)) = (
                String::from_redis_value(chan),
                Vec::<u8>::from_redis_value(payload),
            ) else {
                tracing::warn!("unreadable message on the adapter bus");
                return;
            };
            let sender = handlers.read().ok().and_then(|h| h.get(&chan).cloned());
            if let Some(tx) = sender {
                if tx.try_send((chan, payload)).is_err() {
                    // A whole event lost for this instance's sockets: counted (as one) and
                    // logged at a bounded rate with the other drops.
                    drops.count(1);
                }
            }
        }
        PushKind::Disconnection => wake.lost(),
        _ => {}
    }
}

impl Bus {
    /// Connects and starts the watchdog that reconnects after a failure (until `shutdown`).
    pub async fn connect(
        target: RedisTarget,
        drops: Drops,
        shutdown: &Shutdown,
    ) -> Result<Bus, BusError> {
        let handlers: Handlers = Arc::default();
        let wake = Arc::new(Wake::default());
        let generation = Arc::new(AtomicU64::new(0));
        let conn = open(&target, &handlers, &wake, &drops, &generation).await?;
        let bus = Bus {
            shared: Arc::new(Shared {
                target,
                generation,
                conn: RwLock::new(conn),
                handlers,
                healthy: AtomicBool::new(true),
                wake,
                drops,
            }),
        };
        shutdown.spawn_until_stopped(watchdog(Arc::downgrade(&bus.shared)));
        Ok(bus)
    }

    fn conn(&self) -> PubSub {
        match self.shared.conn.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs a command with a deadline; a failure wakes the watchdog.
    async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BusError> {
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => BusError::Redis(e),
            Err(_) => BusError::Timeout,
        };
        self.shared.wake.check();
        Err(result)
    }
}

/// Opens a pub/sub-capable (RESP3) connection that routes messages to `handlers`, as the
/// newest generation (pushes of older connections are ignored from now on).
async fn open(
    target: &RedisTarget,
    handlers: &Handlers,
    wake: &Arc<Wake>,
    drops: &Drops,
    generation: &Arc<AtomicU64>,
) -> Result<PubSub, BusError> {
    let mine = generation.fetch_add(1, Ordering::AcqRel) + 1;
    let (handlers, wake, drops, current) = (
        handlers.clone(),
        wake.clone(),
        drops.clone(),
        generation.clone(),
    );
    let push = move |msg: PushInfo| {
        if current.load(Ordering::Acquire) == mine {
            deliver(msg, &handlers, &wake, &drops);
        }
        Ok::<(), std::convert::Infallible>(())
    };
    match target {
        RedisTarget::Single(client) => {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(COMMAND_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT))
                .set_push_sender(push);
            Ok(PubSub::Single(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ))
        }
        RedisTarget::Cluster(nodes) => {
            let connect = async {
                cluster_builder(nodes)
                    .push_sender(push)
                    .build()?
                    .get_async_connection()
                    .await
            };
            let conn = tokio::time::timeout(COMMAND_TIMEOUT * 2, connect)
                .await
                .map_err(|_| BusError::Timeout)??;
            Ok(PubSub::Cluster(conn))
        }
    }
}

/// Checks the connection every period (or at once when something failed); on failure,
/// reconnects with backoff and subscribes every channel again.
async fn watchdog(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        tokio::select! {
            _ = tokio::time::sleep(CHECK_PERIOD) => {}
            _ = s.wake.notify.notified() => {}
        }
        let mut conn = match s.conn.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let lost = s.wake.lost.swap(false, Ordering::AcqRel);
        let alive = !lost
            && matches!(
                tokio::time::timeout(COMMAND_TIMEOUT, conn.ping()).await,
                Ok(Ok(()))
            );
        if alive {
            continue;
        }
        if s.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!("adapter bus lost Redis; cross-instance broadcast paused, reconnecting");
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match reconnect(&s).await {
                Ok(channels) => {
                    s.healthy.store(true, Ordering::Release);
                    tracing::info!(
                        channels,
                        "adapter bus reconnected to Redis and resubscribed"
                    );
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "adapter bus reconnection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A new connection with every known channel subscribed, swapped in for the broken one.
async fn reconnect(s: &Shared) -> Result<usize, BusError> {
    let mut conn = open(&s.target, &s.handlers, &s.wake, &s.drops, &s.generation).await?;
    let channels: Vec<String> = s
        .handlers
        .read()
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default();
    for chan in &channels {
        tokio::time::timeout(COMMAND_TIMEOUT, conn.subscribe(chan))
            .await
            .map_err(|_| BusError::Timeout)??;
    }
    // Every master must answer before the new connection counts as whole.
    tokio::time::timeout(COMMAND_TIMEOUT, conn.ping())
        .await
        .map_err(|_| BusError::Timeout)??;
    match s.conn.write() {
        Ok(mut c) => *c = conn,
        Err(p) => *p.into_inner() = conn,
    }
    Ok(channels.len())
}

impl Driver for Bus {
    type Error = BusError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), BusError> {
        let mut conn = self.conn();
        self.run(async move { conn.publish(&chan, &val).await })
            .await
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, BusError> {
        let (tx, rx) = mpsc::channel(size);
        if let Ok(mut handlers) = self.shared.handlers.write() {
            handlers.insert(chan.clone(), tx);
        }
        // Registered first: if Redis is away now, the watchdog subscribes it on reconnection.
        let mut conn = self.conn();
        self.run(async move { conn.subscribe(&chan).await }).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), BusError> {
        if let Ok(mut handlers) = self.shared.handlers.write() {
            handlers.remove(&chan);
        }
        let mut conn = self.conn();
        self.run(async move { conn.unsubscribe(&chan).await }).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, BusError> {
        let mut conn = self.conn();
        self.run(async move { conn.subscribers(chan).await }).await
    }
}
