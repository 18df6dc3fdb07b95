//! The state every request and event handler reads: the services of one instance, built by
//! [`crate::App::build`] and shared behind one `Arc`.

use std::ops::Deref;
use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::Sessions;
use crate::config::Config;
use crate::filter::WordFilter;
use crate::kv::Redis;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;
use crate::realtime::commit::Committer;
use crate::realtime::delivery::Delivery;
use crate::realtime::Membership;
use crate::shutdown::Shutdown;
use crate::{budget, store, uploads};

/// Everything a request or event handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

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
    /// The records of recoverable Socket.IO sessions (connection state recovery).
    pub recovery: Arc<crate::realtime::recovery::Recovery>,
    /// The instance's background tasks, and the signal that stops them.
    pub shutdown: Shutdown,
    /// What each user's requests may cost this instance.
    pub budget: budget::Budget,
    /// Attachments: their storage, checks and limits.
    pub uploads: uploads::Uploads,
    /// The default channel, looked up once (channels are never renamed or removed).
    pub default_channel: tokio::sync::OnceCell<store::channels::Channel>,
    /// Reports, the agent check, drains and rebalancing.
    pub ops: Arc<crate::ops::Ops>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
