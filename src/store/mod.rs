//! Postgres access: plain SQL next to the types it returns, one file per table group.

pub mod channels;
pub mod messages;
pub mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Opens the pool. Acquiring a connection is bounded so that a Postgres outage turns into a
/// prompt `unavailable` instead of a hanging request.
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .application_name("banter")
        .options([("statement_timeout", "10s")]);
    PgPoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
}

/// Applies the embedded migrations. sqlx takes a Postgres advisory lock for the duration, so
/// instances starting at the same moment apply them exactly once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}
