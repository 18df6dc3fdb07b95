//! banter: a Socket.IO-compatible, distributed chat backend.
//!
//! [`App::build`] turns a [`Config`] into a ready instance (database migrated, Redis and the
//! Socket.IO adapter connected); [`App::serve`] runs it until a shutdown signal. The binary and
//! the integration tests start instances the same way.

pub mod access;
pub mod auth;
pub mod budget;
pub mod clientip;
pub mod config;
pub mod contract;
pub mod error;
pub mod filter;
pub mod http;
pub mod keys;
pub mod kv;
pub mod mentions;
pub mod metrics;
pub mod presence;
pub mod ratelimit;
pub mod realtime;
pub mod retention;
pub mod serve;
pub mod shutdown;
pub mod store;
pub mod uploads;
pub mod validate;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use socketioxide::SocketIo;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;

use crate::auth::Sessions;
use crate::filter::WordFilter;
use crate::keys::Keys;
use crate::kv::{Redis, RedisTarget};
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::realtime::commit::Committer;
use crate::realtime::delivery::Delivery;
use crate::realtime::rooms::LocalRooms;
use crate::realtime::{Announcer, Membership};
use crate::shutdown::Shutdown;

/// The Socket.IO adapter: socketioxide's Redis adapter, which carries broadcasts between
/// instances, on a driver that reconnects when Redis restarts.
pub type Adapter =
    socketioxide_redis::CustomRedisAdapter<socketioxide::adapter::Emitter, realtime::Bus>;

/// Longest accepted Engine.IO payload, the same on polling and websocket: room for a message
/// of the longest text with every character escaped, and for a clear `too_long` answer to
/// oversized messages instead of a dropped connection.
pub const MAX_PAYLOAD_BYTES: usize = 2 * 1024 * 1024;

/// Everything a request or event handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The services of an instance.
pub struct Shared {
    pub config: Config,
    pub db: PgPool,
    /// Where reads that may use a replica go.
    pub reads: store::reads::Reads,
    /// Redis, for the readiness check (each service holds its own handle).
    pub redis: Redis,
    pub sessions: Sessions,
    pub presence: Arc<Presence>,
    pub limiter: RateLimiter,
    pub filter: WordFilter,
    pub metrics: Arc<Metrics>,
    /// Every outbound path: `message.new` in seq order, every other event, disconnects.
    pub delivery: Delivery,
    /// Stores concurrent sends together (group commit).
    pub committer: Committer,
    /// This instance's sockets: their state, rooms, caps and presence.
    pub membership: Arc<Membership>,
    /// The instance's background tasks, and the signal that stops them.
    pub shutdown: Shutdown,
    /// What each user's requests may cost this instance.
    pub budget: budget::Budget,
    /// Attachments: their storage, checks and limits.
    pub uploads: uploads::Uploads,
    /// The default channel, looked up once (channels are never renamed or removed).
    pub default_channel: tokio::sync::OnceCell<store::channels::Channel>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A built instance, ready to serve.
pub struct App {
    state: AppState,
    io: SocketIo<Adapter>,
    router: axum::Router,
}

impl App {
    /// Connects to Postgres and Redis, applies migrations, seeds channels and builds the HTTP
    /// and Socket.IO layers.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.check().map_err(|e| anyhow::anyhow!(e))?;
        let (secret, generated) = config
            .resolve_jwt_secret()
            .map_err(|e| anyhow::anyhow!(e))?;
        if generated {
            tracing::warn!("BANTER_DEV=1 and no JWT_SECRET: using a random secret; sessions end at restart and are not shared between instances");
        }
        let filter = match &config.word_filter_file {
            Some(path) => WordFilter::from_file(path)?,
            None => WordFilter::default(),
        };

        let db = store::connect(&config.database_url)
            .await
            .context("cannot connect to Postgres (DATABASE_URL)")?;
        store::migrate(&db)
            .await
            .context("database migration failed")?;
        store::partitions::ensure(&db)
            .await
            .context("cannot create the message partitions of the coming months")?;
        let replica = match config
            .database_read_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            Some(url) => Some(
                store::connect_lazy(url)
                    .context("DATABASE_READ_URL is not a valid Postgres URL")?,
            ),
            None => None,
        };
        let reads = store::reads::Reads::new(db.clone(), replica);
        store::users::backfill_username_keys(&db)
            .await
            .context("cannot fill in username keys")?;
        let seeds: Vec<String> = config
            .seed_channels()
            .map(validate::channel_name)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("SEED_CHANNELS: {}", e.message))?;
        store::channels::seed(&db, &seeds)
            .await
            .context("cannot create seed channels")?;

        let redis_target = RedisTarget::from_config(&config)?;
        let redis = redis_target.connect().await.with_context(|| {
            if redis_target.is_cluster() {
                "cannot connect to the Redis Cluster (REDIS_CLUSTER_NODES)"
            } else {
                "cannot connect to Redis (REDIS_URL)"
            }
        })?;
        let keys = Keys::for_target(&config.redis_prefix, redis_target.is_cluster());
        let instance = config
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());

        let shutdown = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let presence = Arc::new(Presence::new(
            redis.clone(),
            keys.clone(),
            instance.clone(),
            Duration::from_secs(config.presence_heartbeat_secs.max(1)),
            Duration::from_secs(config.presence_offline_grace_secs),
        ));
        if !presence.claim().await? {
            anyhow::bail!(
                "INSTANCE_ID {instance:?} is in use by a live instance: give each instance its own id"
            );
        }
        let (socket_layer, io) =
            realtime::socket_layer(&redis_target, &keys, metrics.drops.clone(), &shutdown).await?;
        let rooms = Arc::new(LocalRooms::default());
        let delivery = Delivery::new(
            io.clone(),
            redis.clone(),
            keys.clone(),
            instance,
            rooms.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        let announcer = Announcer::new(
            presence.clone(),
            delivery.clone(),
            rooms.clone(),
            config.presence_scope,
            config.presence_fanout_max,
        );
        let membership = Arc::new(Membership::new(
            presence.clone(),
            announcer,
            rooms,
            metrics.sockets.clone(),
        ));
        let storage =
            uploads::Storage::open(&config.storage_url, config.storage_endpoint.as_deref())?;
        tracing::info!(storage = storage.description(), "uploads storage");
        let uploads = uploads::Uploads::new(
            storage,
            &secret,
            config.upload_max_bytes,
            config.upload_quota_bytes,
            config.image_max_pixels,
            metrics.clone(),
        );
        let (committer, commit_queue) = Committer::new();
        let state = AppState(Arc::new(Shared {
            sessions: Sessions::new(
                &secret,
                config.session_ttl_secs,
                redis.clone(),
                keys.clone(),
            )
            .context("JWT_SECRET cannot be a signing key")?,
            presence,
            limiter: RateLimiter::new(
                redis.clone(),
                keys.clone(),
                config.rate_limit_messages,
                config.rate_limit_window_secs,
                config.rate_limit_block_secs,
            ),
            filter,
            metrics,
            delivery,
            committer,
            membership,
            shutdown,
            db,
            reads,
            redis,
            budget: budget::Budget::new(config.event_budget, config.event_budget_per_sec),
            config,
            uploads,
            default_channel: tokio::sync::OnceCell::new(),
        }));
        realtime::start(&state, &io, &redis_target, commit_queue).await?;
        let router = http::router(state.clone()).layer(socket_layer).layer(
            axum::middleware::from_fn_with_state(state.clone(), http::cap_pending_sessions),
        );
        let router = http::outer_layers(router, &state.config);
        Ok(App { state, io, router })
    }

    /// This instance's presence id.
    pub fn instance_id(&self) -> &str {
        self.state.presence.instance()
    }

    /// Serves until `shutdown` completes, then closes every socket cleanly (presence
    /// decremented, offline announced) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App { state, io, router } = self;
        // Leftovers of an earlier life of this instance id are stale by definition.
        let leftovers = state.presence.reap(state.presence.instance(), true).await?;
        state.membership.announcer().reaped(leftovers).await;
        // The first heartbeat of this life: there is nothing to rebuild yet.
        let _ = state.presence.heartbeat().await?;
        realtime::presence_tasks::spawn(
            state.presence.clone(),
            state.membership.clone(),
            state.delivery.clone(),
            io.clone(),
            &state.shutdown,
        );
        retention::spawn(&state);

        // On the signal, the listener stops accepting at once while the sockets are closed
        // beside it; upgraded websockets are not awaited by the server, so the closer is.
        let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
        let closer = tokio::spawn({
            let (state, io) = (state.clone(), io.clone());
            async move {
                if closing_rx.await.is_ok() {
                    close_sockets(&state, &io).await;
                }
            }
        });
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, closing sockets");
            let _ = closing_tx.send(());
        };
        let addr = listener.local_addr()?;
        tracing::info!(%addr, instance = state.presence.instance(), "banter listening");
        let header_timeout = Duration::from_secs(state.config.http_header_timeout_secs.max(1));
        serve::serve(listener, router, header_timeout, graceful).await?;
        let _ = closer.await;

        // Every background task stops; queued messages are still stored and acked first.
        state.shutdown.stop().await;
        let leftovers = state.presence.reap(state.presence.instance(), true).await?;
        if !leftovers.offline.is_empty() {
            tracing::warn!(
                users = leftovers.offline.len(),
                "presence left after shutdown was reaped"
            );
        }
        state.presence.stop_heartbeat().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Releases this instance's sockets from cluster presence (announcing users who go offline),
/// within a bound, then closes the Socket.IO server. The transports are closed rather than the
/// sockets disconnected: a Socket.IO client reconnects by itself (to another instance) after a
/// closed transport, but not after a server-side disconnect.
async fn close_sockets(state: &AppState, io: &SocketIo<Adapter>) {
    let released = state.membership.release_all(io);
    if tokio::time::timeout(Duration::from_secs(3), released)
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.membership.live_sockets(),
            "presence release timed out; the rest is reaped below"
        );
    }
    io.close().await;
}

/// Wall-clock milliseconds since the epoch: the time base of deadlines kept in Redis, which
/// every instance reads.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
