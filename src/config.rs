//! Every setting of a banter instance, read from the environment (or flags) in one place.
//!
//! The names and defaults are the table of docs/CONFIGURATION.md; tests build a `Config`
//! from arguments so they never depend on the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

/// Who receives `user.status` when a user comes online or goes offline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PresenceScope {
    /// Only the channels the user's sockets are in (and not the crowded ones).
    Channels,
    /// Everyone connected to the cluster (small deployments).
    Global,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The configuration of one instance.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "banter",
    version,
    about = "A Socket.IO-compatible, distributed chat backend"
)]
pub struct Config {
    /// Listen address.
    #[arg(long, env = "BANTER_ADDR", default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,

    /// Postgres URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Postgres URL of a streaming replica for history, `messages.sync` and the channel list
    /// (reads fall back to the primary when it is behind or away).
    #[arg(long, env = "DATABASE_READ_URL")]
    pub database_read_url: Option<String>,

    /// Plain `redis://` URL of a single Redis; RESP3 is turned on where the adapter needs it.
    /// Required unless `REDIS_CLUSTER_NODES` is set.
    #[arg(long, env = "REDIS_URL", default_value = "")]
    pub redis_url: String,

    /// Redis Cluster mode: comma-separated `redis://host:port` URLs of cluster nodes (a few
    /// are enough; the rest are discovered). Takes the place of `REDIS_URL`.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_delimiter = ',')]
    pub redis_cluster_nodes: Vec<String>,

    /// Prefix of every Redis key and adapter channel.
    #[arg(long, env = "REDIS_PREFIX", default_value = "banter")]
    pub redis_prefix: String,

    /// HS256 secret, at least 32 bytes. Required unless `BANTER_DEV=1`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Development mode: generates a throwaway JWT secret when none is set.
    #[arg(long, env = "BANTER_DEV", default_value_t = false, value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub dev: bool,

    /// Session (JWT and cookie) lifetime in seconds.
    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,

    /// Add `Secure` to the session cookie.
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false, value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub cookie_secure: bool,

    /// Comma-separated CORS and handshake Origin allowlist.
    #[arg(
        long,
        env = "ALLOWED_ORIGINS",
        default_value = "http://localhost:3000,http://localhost:8080",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Channel every socket joins at connect; empty for none.
    #[arg(long, env = "DEFAULT_CHANNEL", default_value = "general")]
    pub default_channel: String,

    /// Comma-separated channels created at start when missing.
    #[arg(
        long,
        env = "SEED_CHANNELS",
        default_value = "general",
        value_delimiter = ','
    )]
    pub seed_channels: Vec<String>,

    /// This instance's id in presence bookkeeping; random when unset.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Presence heartbeat period; the heartbeat key lives three periods.
    #[arg(long, env = "PRESENCE_HEARTBEAT_SECS", default_value_t = 3)]
    pub presence_heartbeat_secs: u64,

    /// Seconds an offline announcement waits for the user to come back (a reload, a failover).
    #[arg(long, env = "PRESENCE_OFFLINE_GRACE_SECS", default_value_t = 5)]
    pub presence_offline_grace_secs: u64,

    /// Engine.IO heartbeat: the server pings every connection this often...
    #[arg(long, env = "PING_INTERVAL_SECS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval_secs: u64,

    /// ...and closes one that has not answered within this long after a ping. A connection
    /// whose writes are stuck is closed after both together.
    #[arg(long, env = "PING_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_timeout_secs: u64,

    /// Who receives `user.status`.
    #[arg(long, env = "PRESENCE_SCOPE", value_enum, default_value = "channels")]
    pub presence_scope: PresenceScope,

    /// Channels with more online users get counts only, no per-user `user.status`.
    #[arg(long, env = "PRESENCE_FANOUT_MAX", default_value_t = 500)]
    pub presence_fanout_max: u64,

    /// Messages a user may send per window (at least 1).
    #[arg(long, env = "RATE_LIMIT_MESSAGES", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_messages: u64,

    /// Rate-limit window in seconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW_SECS", default_value_t = 10)]
    pub rate_limit_window_secs: u64,

    /// How long a user who went over the limit stays blocked, in seconds.
    #[arg(long, env = "RATE_LIMIT_BLOCK_SECS", default_value_t = 30)]
    pub rate_limit_block_secs: u64,

    /// How long a send over the limit is held for its turn before it is refused, in seconds
    /// (0: refused at once). At most 60.
    #[arg(long, env = "RATE_LIMIT_HOLD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub rate_limit_hold_secs: u64,

    /// How long after a disconnect a socket's session can be recovered (Socket.IO connection
    /// state recovery: its channel restored and what it missed replayed), in seconds; 0 turns
    /// recovery off. At most 3600.
    #[arg(long, env = "RECOVERY_MAX_DISCONNECT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub recovery_max_disconnect_secs: u64,

    /// Where this instance answers HAProxy's agent check (`host:port`): its weight from its
    /// load, or `drain` while draining. Empty: off.
    #[arg(long, env = "AGENT_CHECK_ADDR", default_value = "", value_parser = parse_optional_addr)]
    pub agent_check_addr: OptionalAddr,

    /// Sockets at which this instance counts as full: the agent check's weight falls from 100 %
    /// (no sockets) to 1 % (this many).
    #[arg(long, env = "INSTANCE_SOCKET_CAPACITY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub instance_socket_capacity: u64,

    /// How many sockets a second a drain (or a rebalance) moves to the other instances.
    #[arg(long, env = "DRAIN_SOCKETS_PER_SEC", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub drain_sockets_per_sec: u32,

    /// Seconds between the start of a drain and its first moved socket (balancers see the
    /// instance draining first). At most 60.
    #[arg(long, env = "DRAIN_GRACE_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub drain_grace_secs: u64,

    /// Whether an instance with more sockets than the cluster's mean (by `REBALANCE_MARGIN`)
    /// moves the excess to the others.
    #[arg(long, env = "REBALANCE", default_value_t = false, value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub rebalance: bool,

    /// How far above the cluster's mean sockets an instance may be before it rebalances, as a
    /// fraction of the mean (0.2: 20 %).
    #[arg(long, env = "REBALANCE_MARGIN", default_value_t = 0.2, value_parser = parse_margin)]
    pub rebalance_margin: f64,

    /// Seconds between two comparisons of an instance's sockets with the cluster's mean (with
    /// `REBALANCE`).
    #[arg(long, env = "REBALANCE_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rebalance_interval_secs: u64,

    /// How many sockets a second a rebalance moves.
    #[arg(long, env = "REBALANCE_SOCKETS_PER_SEC", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rebalance_sockets_per_sec: u32,

    /// What one user's requests may cost an instance at once, in cost units (every client
    /// event and history read has its cost, PROTOCOL.md "Budgets"); 0 turns the budget off.
    #[arg(long, env = "EVENT_BUDGET", default_value_t = 300)]
    pub event_budget: u32,

    /// Cost units a second that refill a user's budget.
    #[arg(long, env = "EVENT_BUDGET_PER_SEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_budget_per_sec: u32,

    /// Client events of one socket handled at once; more are refused `rate_limited` at once.
    #[arg(long, env = "EVENTS_IN_FLIGHT_PER_SOCKET", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub events_in_flight_per_socket: u32,

    /// Comma-separated CIDRs of proxies whose X-Forwarded-For / X-Real-IP give the client
    /// address (empty: none, the peer address is the client's).
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = crate::clientip::TrustedProxies::parse)]
    pub trusted_proxies: crate::clientip::TrustedProxies,

    /// Seconds a connection may take to send a complete request head; an idle keep-alive
    /// connection is closed after as long.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECS", default_value_t = 5)]
    pub http_header_timeout_secs: u64,

    /// Sockets one user may hold open in the cluster; more are refused `too_many_connections`.
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = 20)]
    pub max_sockets_per_user: u32,

    /// Engine.IO sessions one client address may have waiting for their authenticated CONNECT.
    #[arg(long, env = "MAX_PENDING_SESSIONS_PER_ADDRESS", default_value_t = 50)]
    pub max_pending_sessions_per_address: usize,

    /// Channels one user may create per hour.
    #[arg(long, env = "CHANNELS_PER_USER_PER_HOUR", default_value_t = 10)]
    pub channels_per_user_per_hour: u64,

    /// Guests one client address may create per hour.
    #[arg(long, env = "GUESTS_PER_ADDRESS_PER_HOUR", default_value_t = 30)]
    pub guests_per_address_per_hour: u64,

    /// Messages the guests of one client address may send together per rate-limit window.
    #[arg(long, env = "GUEST_MESSAGES_PER_ADDRESS", default_value_t = 60)]
    pub guest_messages_per_address: u64,

    /// Administrators: comma-separated usernames (registered users only; matched
    /// case-insensitively). They may delete any message and remove members of any channel, ban
    /// users, and read the moderation log.
    #[arg(long, env = "ADMIN_USERS", value_delimiter = ',')]
    pub admin_users: Vec<String>,

    /// Whether guests may take part in direct messages (open them, or be written to).
    #[arg(long, env = "DM_GUESTS", default_value_t = true, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub dm_guests: bool,

    /// Word filter list: one word or phrase a line.
    #[arg(long, env = "WORD_FILTER_FILE")]
    pub word_filter_file: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Where uploaded files are kept: a local folder (`file:///path`, or a plain path) or
    /// `s3://bucket/prefix` (credentials and region from the usual AWS variables).
    #[arg(long, env = "STORAGE_URL", default_value = "uploads")]
    pub storage_url: String,

    /// Endpoint of an S3-compatible service (MinIO, Ceph, R2…) for an `s3://` STORAGE_URL.
    #[arg(long, env = "STORAGE_ENDPOINT")]
    pub storage_endpoint: Option<String>,

    /// Largest accepted upload, in bytes.
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub upload_max_bytes: u64,

    /// Uploads one user may start per hour.
    #[arg(long, env = "UPLOADS_PER_USER_PER_HOUR", default_value_t = 60)]
    pub uploads_per_user_per_hour: u64,

    /// Largest image, in pixels, that is decoded for its thumbnail; a larger one is refused
    /// (`too_large`) before it is decoded. Decodes together hold at most this many pixels'
    /// worth of memory (10 bytes a pixel) at once.
    #[arg(long, env = "IMAGE_MAX_PIXELS", default_value_t = 25_000_000, value_parser = clap::value_parser!(u64).range(1..=144_000_000))]
    pub image_max_pixels: u64,

    /// The types of file that may be shared, as a comma-separated list of MIME types as the
    /// bytes are sniffed as (`text/plain` stands for every text, served as plain text).
    #[arg(long, env = "UPLOAD_ALLOWED_TYPES", default_value = crate::uploads::inspect::DEFAULT_ALLOWED, value_parser = crate::uploads::inspect::Allowed::parse)]
    pub upload_allowed_types: crate::uploads::inspect::Allowed,

    /// Messages in a page of history when the request names no `limit` (1 to 200).
    #[arg(long, env = "HISTORY_DEFAULT_LIMIT", default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=200))]
    pub history_default_limit: i64,

    /// Bytes one user may keep stored in uploads.
    #[arg(long, env = "UPLOAD_QUOTA_BYTES", default_value_t = 500 * 1024 * 1024)]
    pub upload_quota_bytes: u64,

    /// Messages older than this many seconds are removed (0: kept however old). A channel
    /// may set a stricter limit of its own.
    #[arg(long, env = "RETENTION_MAX_AGE_SECS", default_value_t = 0)]
    pub retention_max_age_secs: u64,

    /// A channel keeps at most this many of its newest messages (0: no limit). A channel may
    /// set a stricter limit of its own.
    #[arg(long, env = "RETENTION_MAX_MESSAGES", default_value_t = 0)]
    pub retention_max_messages: u64,

    /// How often retention is enforced, in seconds.
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value_t = 60)]
    pub retention_interval_secs: u64,
}

/// A listening address that may be left empty (off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(raw: &str) -> Result<OptionalAddr, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(OptionalAddr(None));
    }
    raw.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|_| format!("{raw:?} is not host:port (an IP address and a port), nor empty"))
}

/// A rebalancing margin: a fraction of the mean from 0.05 to 10.
fn parse_margin(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(m) if (0.05..=10.0).contains(&m) => Ok(m),
        _ => Err("a fraction from 0.05 to 10 (0.2: 20 % above the mean)".to_owned()),
    }
}

/// Shortest accepted `JWT_SECRET`, in bytes (HS256 wants at least its output size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Least estimated entropy of an accepted `JWT_SECRET`, in bits.
pub const MIN_JWT_SECRET_BITS: f64 = 128.0;

/// Why a secret is unfit although long enough: the placeholder of `.env.example`, a short
/// pattern repeated, or too little entropy (estimated from its character frequencies, which
/// over-estimates human-chosen text, so what fails this is certainly weak).
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    if ["change-me", "changeme", "replace-me", "your-secret"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return Some("is the example placeholder");
    }
    let bytes = secret.as_bytes();
    let repeats = (1..=bytes.len() / 2).any(|period| {
        bytes.len().is_multiple_of(period) && bytes.chunks(period).all(|c| c == &bytes[..period])
    });
    if repeats {
        return Some("is a short pattern repeated");
    }
    let mut counts = [0usize; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2() * n
        })
        .sum();
    (bits < MIN_JWT_SECRET_BITS).then_some("has too little entropy")
}

impl Config {
    /// Refusals that stop an instance before it starts (exit status 2): an unfit secret, an
    /// empty `INSTANCE_ID`.
    /// Whether `username` (of a registered user, not a guest) is an administrator.
    pub fn is_admin(&self, username: &str, guest: bool) -> bool {
        !guest
            && self
                .admin_users
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(username))
    }

    pub fn check(&self) -> Result<(), String> {
        self.resolve_jwt_secret()?;
        if self.redis_cluster_nodes().next().is_none() && self.redis_url.trim().is_empty() {
            return Err(
                "set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster)".into(),
            );
        }
        if self
            .instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err("INSTANCE_ID is set but empty: give each instance its own id, or leave it unset for a random one".into());
        }
        Ok(())
    }

    /// The default channel, or `None` when it is configured empty.
    pub fn default_channel(&self) -> Option<&str> {
        let name = self.default_channel.trim();
        (!name.is_empty()).then_some(name)
    }

    /// Redis Cluster node URLs with blanks removed (none: a single Redis at `REDIS_URL`).
    pub fn redis_cluster_nodes(&self) -> impl Iterator<Item = &str> {
        self.redis_cluster_nodes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// Seed channel names with blanks removed.
    pub fn seed_channels(&self) -> impl Iterator<Item = &str> {
        self.seed_channels
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// Whether a browser Origin is in the allowlist: the same scheme, host and port (as URLs
    /// compare them: a default port may be left out, the host's case does not matter).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let Ok(origin) = url::Url::parse(origin) else {
            return false;
        };
        self.allowed_origins
            .iter()
            .filter_map(|o| url::Url::parse(o.trim()).ok())
            .any(|allowed| allowed.origin() == origin.origin())
    }

    /// The JWT secret to use, or a one-line explanation of why the instance cannot start.
    ///
    /// In development mode a missing secret is replaced by a random one (sessions then do not
    /// survive a restart and are not shared between instances, which the caller warns about).
    pub fn resolve_jwt_secret(&self) -> Result<(String, bool), String> {
        match &self.jwt_secret {
            Some(s) if s.len() < MIN_JWT_SECRET_BYTES => Err(format!(
                "JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes long"
            )),
            Some(s) => weak_secret(s)
                .map(|why| {
                    Err(format!(
                        "JWT_SECRET {why}: give it a random secret, e.g. `openssl rand -hex 32`"
                    ))
                })
                .unwrap_or_else(|| Ok((s.clone(), false))),
            None if self.dev => Ok((
                format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
                true,
            )),
            None => Err(format!(
                "JWT_SECRET is not set: give it a random secret of at least {MIN_JWT_SECRET_BYTES} bytes, or set BANTER_DEV=1 to generate a throwaway one"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{weak_secret, Config};

    #[test]
    fn origins_compare_as_urls() {
        let config = Config::parse_from([
            "banter",
            "--database-url",
            "postgres://x",
            "--redis-url",
            "redis://x",
            "--allowed-origins",
            "http://localhost:3000,https://chat.example.com/",
        ]);
        for allowed in [
            "http://localhost:3000",
            "http://LOCALHOST:3000",
            "https://chat.example.com",
            "https://chat.example.com:443",
        ] {
            assert!(config.origin_allowed(allowed), "{allowed}");
        }
        for refused in [
            "http://localhost:30001",
            "https://localhost:3000",
            "http://chat.example.com",
            "https://chat.example.com.evil.io",
            "null",
            "",
        ] {
            assert!(!config.origin_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn weak_secrets() {
        assert!(
            weak_secret("change-me-to-64-hex-characters-from-openssl-rand-hex-32-xxxxxxx")
                .is_some()
        );
        assert!(weak_secret(&"a".repeat(64)).is_some());
        assert!(weak_secret(&"0123456789abcdef".repeat(4)).is_some());
        assert!(weak_secret("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab").is_some());
        assert!(
            weak_secret("3f9c1e0b7a5d42e8c6b1f0a9d37e5c2b8a4f1d6e0c9b7a3e5d2f8c1b0a6e4d9f")
                .is_none()
        );
        assert!(weak_secret("test-secret-test-secret-test-secret-0123456789").is_none());
    }
}
