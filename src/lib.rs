//! banter: a Socket.IO-compatible, distributed chat backend.
//!
//! [`App::build`] turns a [`Config`] into a ready instance (database migrated, Redis and the
//! Socket.IO adapter connected); [`App::serve`] runs it until a shutdown signal. The binary and
//! the integration tests start instances the same way.

pub(crate) mod access;
pub(crate) mod auth;
pub(crate) mod budget;
pub(crate) mod clientip;
pub(crate) mod clock;
pub mod config;
pub mod contract;
pub(crate) mod error;
pub(crate) mod filter;
pub(crate) mod http;
pub(crate) mod keys;
pub(crate) mod kv;
pub(crate) mod mentions;
pub(crate) mod metrics;
pub(crate) mod ops;
pub(crate) mod presence;
pub(crate) mod ratelimit;
pub(crate) mod realtime;
pub(crate) mod retention;
pub(crate) mod serve;
pub(crate) mod shutdown;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod uploads;
pub mod validate;

// Beyond the contract, the configuration and the input rules, what the fuzz targets and the
// integration tests use; everything else is internal to the crate, so that code nothing uses
// shows up as unused.
pub use clientip::TrustedProxies;
pub use uploads::inspect;

/// What the integration tests reach inside an instance's Redis.
pub mod testing {
    pub use crate::keys::Keys;
    pub use crate::kv::{Redis, RedisTarget};
    pub use crate::ratelimit::{RateLimiter, SendLimit, Verdict};
    pub use crate::retention::LOCK_KEY;
    pub use crate::shutdown::Shutdown;
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use socketioxide::SocketIo;
use tokio::net::TcpListener;

pub use config::Config;

use crate::auth::Sessions;
use crate::filter::WordFilter;
use crate::keys::Keys;
use crate::kv::RedisTarget;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::realtime::commit::Committer;
use crate::realtime::delivery::Delivery;
use crate::realtime::rooms::LocalRooms;
use crate::realtime::{Adapter, Announcer, Membership};
use crate::shutdown::Shutdown;
use crate::state::{AppState, Shared};

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
        let lanes = store::connect_lanes(&config.database_url, realtime::commit::PIPELINE)
            .await
            .context("cannot connect to Postgres (DATABASE_URL)")?;
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
        let shutdown = Shutdown::new();
        let redis = redis_target.connect(&shutdown).await.with_context(|| {
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
        // One pub/sub connection (reconnecting) per instance: the Socket.IO adapter's channels
        // and the fan-out and event relay of delivery share it.
        let bus =
            realtime::Bus::connect(redis_target.clone(), metrics.drops.clone(), &shutdown).await?;
        let (socket_layer, io) = realtime::socket_layer(
            &bus,
            &keys,
            realtime::Heartbeat {
                interval: Duration::from_secs(config.ping_interval_secs),
                timeout: Duration::from_secs(config.ping_timeout_secs),
            },
        );
        let rooms = Arc::new(LocalRooms::default());
        let (removals, removal_queue) = realtime::removals();
        let recovery = Arc::new(realtime::recovery::Recovery::new(
            redis.clone(),
            keys.clone(),
            Duration::from_secs(config.recovery_max_disconnect_secs),
            Duration::from_secs(config.session_ttl_secs),
            instance.clone(),
        ));
        let delivery = Delivery::new(realtime::delivery::Parts {
            io: io.clone(),
            redis: redis.clone(),
            keys: keys.clone(),
            instance,
            rooms: rooms.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            removals,
        });
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
            config.upload_allowed_types.clone(),
            metrics.clone(),
        );
        let ops = Arc::new(ops::Ops::new(
            metrics.clone(),
            keys.clone(),
            presence.instance().to_owned(),
        ));
        let (committer, commit_queue) = Committer::new(realtime::commit::Writer {
            db: db.clone(),
            lanes,
            delivery: delivery.clone(),
            metrics: metrics.clone(),
        });
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
                ratelimit::SendLimit {
                    messages: config.rate_limit_messages,
                    window_secs: config.rate_limit_window_secs,
                    block_secs: config.rate_limit_block_secs,
                    hold_secs: config.rate_limit_hold_secs,
                },
                &shutdown,
            ),
            filter,
            metrics,
            delivery,
            committer,
            membership,
            recovery,
            shutdown,
            db,
            reads,
            redis,
            budget: budget::Budget::new(config.event_budget, config.event_budget_per_sec),
            config,
            uploads,
            default_channel: tokio::sync::OnceCell::new(),
            ops,
        }));
        realtime::start(&state, &io, bus, commit_queue, removal_queue).await?;
        ops::start(&state).await?;
        let router = http::router(state.clone()).layer(socket_layer).layer(
            axum::middleware::from_fn_with_state(state.clone(), http::cap_pending_sessions),
        );
        let router = http::outer_layers(router, &state.config);
        Ok(App { state, io, router })
    }

    /// Starts a drain of this instance (SIGUSR1 in the binary): no new sessions, and its
    /// sockets moved to the other instances.
    pub fn drain_handle(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let drain = self.state.ops.drain.clone();
        move |why: &str| drain.start(why)
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
            state.recovery.clone(),
            &state.shutdown,
        );
        retention::spawn(&state);

        // On the signal, the listener stops accepting at once while the sockets are closed
        // beside it; upgraded websockets are not awaited by the server, so the closer is.
        let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
        let closer = {
            let (state, io) = (state.clone(), io.clone());
            async move {
                if closing_rx.await.is_ok() {
                    close_sockets(&state, &io).await;
                }
            }
        };
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, closing sockets");
            let _ = closing_tx.send(());
        };
        let addr = listener.local_addr()?;
        tracing::info!(%addr, instance = state.presence.instance(), "banter listening");
        let header_timeout = Duration::from_secs(state.config.http_header_timeout_secs.max(1));
        let serving = serve::serve(listener, router, header_timeout, graceful, &state.shutdown);
        let (served, ()) = tokio::join!(serving, closer);
        served?;

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
    // Its sockets may recover elsewhere, counted as disconnected from now.
    if state.recovery.enabled() {
        state.recovery.gone(state.presence.instance()).await;
    }
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
