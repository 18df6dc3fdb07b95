//! The Redis connection: one Redis (`REDIS_URL`) or a Redis Cluster (`REDIS_CLUSTER_NODES`).
//!
//! [`Redis`] is what every service holds to run commands and scripts, either way; in cluster
//! mode the `redis` crate routes each command (and each script, by its first key) to the master
//! of its slot and follows redirections. Its own recovery after a master dies is not to be
//! relied on (redis 1.8.1 was seen to time out every command for good once a failover
//! completed), so a command that fails for want of a connection also renews the whole cluster
//! connection from the seed nodes, at most once a second: the new one reads the slot map as it
//! is after the failover. Every script
//! banter runs touches keys of one hash tag only ([`crate::keys`]), so it runs on one slot.
//! [`RedisTarget`] opens connections of either kind, including the pub/sub connections of
//! [`crate::realtime::Bus`] (sharded pub/sub in cluster mode).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};

use crate::config::Config;
use crate::shutdown::Shutdown;

/// A connection a command fails on within about this long while Redis (or a master) is away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest time between two renewals of a cluster connection.
const RENEW_PERIOD: Duration = Duration::from_secs(1);

/// Where Redis is: one server, or the seed nodes of a cluster.
#[derive(Clone)]
pub enum RedisTarget {
    Single(redis::Client),
    Cluster(Vec<ConnectionInfo>),
}

/// A command connection to one Redis or to a Redis Cluster. Cheap to clone; reconnects by
/// itself.
#[derive(Clone)]
pub enum Redis {
    Single(ConnectionManager),
    Cluster(Arc<ClusterLink>),
}

/// A cluster connection that is replaced by a new one when commands fail for want of a
/// connection.
pub struct ClusterLink {
    nodes: Vec<ConnectionInfo>,
    /// Where a renewal runs (it is dropped when shutdown begins).
    tasks: Shutdown,
    conn: RwLock<ClusterConnection>,
    renewing: AtomicBool,
    renewed: Mutex<Instant>,
}

impl ClusterLink {
    fn current(&self) -> ClusterConnection {
        match self.conn.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Starts a renewal in the background, unless one runs or the last was under a second ago.
    fn renew(self: &Arc<Self>) {
        let recent = self
            .renewed
            .lock()
            .map(|t| t.elapsed() < RENEW_PERIOD)
            .unwrap_or(false);
        if recent || self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        self.tasks.spawn_until_stopped(async move {
            let fresh = tokio::time::timeout(RESPONSE_TIMEOUT * 2, async {
                cluster_builder(&link.nodes)
                    .build()?
                    .get_async_connection()
                    .await
            })
            .await;
            match fresh {
                Ok(Ok(conn)) => {
                    match link.conn.write() {
                        Ok(mut c) => *c = conn,
                        Err(p) => *p.into_inner() = conn,
                    }
                    tracing::info!("Redis Cluster connection renewed");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "Redis Cluster connection not renewed"),
                Err(_) => tracing::debug!("Redis Cluster connection not renewed: timed out"),
            }
            if let Ok(mut t) = link.renewed.lock() {
                *t = Instant::now();
            }
            link.renewing.store(false, Ordering::Release);
        });
    }
}

/// Whether a failed command says the connection (or the cluster's layout) is broken, rather
/// than the command itself.
fn broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || e.is_unrecoverable_error()
}

impl RedisTarget {
    /// The target `config` names: `REDIS_CLUSTER_NODES` if set, else `REDIS_URL`.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let nodes: Vec<&str> = config.redis_cluster_nodes().collect();
        if nodes.is_empty() {
            Self::single(&config.redis_url)
        } else {
            Self::cluster(&nodes)
        }
    }

    /// One Redis at `url` (a plain `redis://` URL).
    pub fn single(url: &str) -> anyhow::Result<Self> {
        Ok(Self::Single(redis::Client::open(info(url)?).map_err(
            |e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"),
        )?))
    }

    /// A Redis Cluster reached through `nodes` (any of its nodes; the rest are discovered).
    pub fn cluster(nodes: &[&str]) -> anyhow::Result<Self> {
        let infos = nodes
            .iter()
            .map(|n| info(n))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("REDIS_CLUSTER_NODES: {e}"))?;
        Ok(Self::Cluster(infos))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A command connection with bounded waits: while Redis is away, a command fails within
    /// about two seconds (and the caller degrades as documented) instead of hanging.
    /// A cluster connection's renewals run as tasks of `tasks`.
    pub async fn connect(&self, tasks: &Shutdown) -> RedisResult<Redis> {
        match self {
            Self::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Redis::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(nodes) => {
                let conn = cluster_builder(nodes)
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok(Redis::Cluster(Arc::new(ClusterLink {
                    nodes: nodes.clone(),
                    tasks: tasks.clone(),
                    conn: RwLock::new(conn),
                    renewing: AtomicBool::new(false),
                    renewed: Mutex::new(Instant::now()),
                })))
            }
        }
    }
}

/// The builder of cluster connections: RESP3, bounded waits, and retries that span a failover
/// (a replica is promoted within the cluster's node timeout) without holding a caller long.
pub(crate) fn cluster_builder(nodes: &[ConnectionInfo]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(3)
        .min_retry_wait(100)
        .max_retry_wait(1000)
}

/// `url` as connection info: RESP3 (pub/sub shares the connection with commands) and
/// TCP_NODELAY (commands are small and latency-bound; Nagle's algorithm would hold them back
/// behind delayed ACKs).
fn info(url: &str) -> anyhow::Result<ConnectionInfo> {
    Ok(resp3_url(url.trim())
        .into_connection_info()
        .map_err(|e| anyhow::anyhow!("{url:?} is not a valid Redis URL: {e}"))?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
}

/// The adapter needs RESP3 (pub/sub on the same connection); users give a plain URL.
fn resp3_url(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

impl Redis {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The command that publishes on banter's pub/sub channels: sharded on a cluster (each
    /// channel on the master of its slot), plain on one Redis.
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(link) => Box::pin(async move {
                let result = link.current().req_packed_command(cmd).await;
                if result.as_ref().is_err_and(broken) {
                    link.renew();
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(link) => Box::pin(async move {
                let result = link
                    .current()
                    .req_packed_commands(pipeline, offset, count)
                    .await;
                if result.as_ref().is_err_and(broken) {
                    link.renew();
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}
