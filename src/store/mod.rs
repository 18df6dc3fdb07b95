//! Postgres access: plain SQL next to the types it returns, one file per table group.

pub mod changes;
pub mod channels;
pub mod messages;
pub mod moderation;
pub mod partitions;
pub mod reads;
pub mod uploads;
pub mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Opens the pool. Acquiring a connection is bounded so that a Postgres outage turns into a
/// prompt `unavailable` instead of a hanging request.
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    pool_options()
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(connect_options(url)?)
        .await
}

/// Opens the commit loop's pool: `lanes` connections, each used by one batch at a time.
pub async fn connect_lanes(url: &str, lanes: usize) -> Result<PgPool, sqlx::Error> {
    pool_options()
        .max_connections(lanes as u32)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(connect_options(url)?)
        .await
}

/// Opens a pool without connecting yet (a read replica: its failures fall back to the
/// primary, so it waits at most 1 s for a connection).
pub fn connect_lazy(url: &str) -> Result<PgPool, sqlx::Error> {
    Ok(pool_options()
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(connect_options(url)?))
}

/// What every banter connection sets: its name, a statement timeout, generic plans.
fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    Ok(options.application_name("banter").options([
        ("statement_timeout", "10s"),
        ("plan_cache_mode", "force_generic_plan"),
    ]))
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(16)
        // No ping before every use: a broken connection fails its query and is replaced.
        .test_before_acquire(false)
}

/// Longest wait for one database step of a message send before the client is told
/// `unavailable`: a hung Postgres must not leave acks hanging. (A send that timed out may still
/// commit; the client's retry with the same `client_message_id` then gets it as a duplicate.)
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Runs a database step under [`DEADLINE`].
pub async fn bounded<T>(
    step: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(DEADLINE, step)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Applies the embedded migrations. sqlx takes a Postgres advisory lock for the duration, so
/// instances starting at the same moment apply them exactly once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
