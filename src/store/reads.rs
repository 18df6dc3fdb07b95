//! Where reads go: a streaming replica (`DATABASE_READ_URL`) for history, `messages.sync` and
//! the channel list, without ever hiding a message the primary had already stored when the
//! read began.
//!
//! A channel's messages are read from the replica only when the replica's copy of the channel
//! row has the primary's `last_seq`, `last_change` and `first_seq` (one primary-key lookup on
//! each side): a replica that is behind (a message, a change, or a retention pass that removed
//! messages), or away, sends the read to the primary. The page and its `first_seq` then come from
//! one server, so they agree.

use sqlx::PgPool;
use uuid::Uuid;

/// The primary and, when configured, the replica.
#[derive(Clone, Debug)]
pub struct Reads {
    primary: PgPool,
    replica: Option<PgPool>,
}

impl Reads {
    pub fn new(primary: PgPool, replica: Option<PgPool>) -> Self {
        Reads { primary, replica }
    }

    /// The pool for reads that may be slightly behind (the channel list).
    pub fn any(&self) -> &PgPool {
        self.replica.as_ref().unwrap_or(&self.primary)
    }

    /// The pool to read a channel's messages from: the replica when it holds every message
    /// the primary held at the start of the read, else the primary.
    pub async fn messages(&self, channel: Uuid) -> Result<&PgPool, sqlx::Error> {
        let Some(replica) = &self.replica else {
            return Ok(&self.primary);
        };
        let on_primary = last_seq(&self.primary, channel).await?;
        match last_seq(replica, channel).await {
            Ok(on_replica)
                if on_replica.0 >= on_primary.0
                    && on_replica.1 >= on_primary.1
                    && on_replica.2 >= on_primary.2 =>
            {
                Ok(replica)
            }
            Ok(_) => Ok(&self.primary),
            Err(e) => {
                tracing::warn!(error = %e, "read replica unavailable, reading from the primary");
                Ok(&self.primary)
            }
        }
    }

    /// Whether reads may go to a replica.
    pub fn has_replica(&self) -> bool {
        self.replica.is_some()
    }
}

/// A channel's newest seq, change number and oldest kept seq: a replica with all three at least
/// the primary's holds every message and change the primary had, and none that retention
/// removed from it.
async fn last_seq(db: &PgPool, channel: Uuid) -> Result<(i64, i64, i64), sqlx::Error> {
    Ok(sqlx::query!(
        "SELECT last_seq, last_change, first_seq FROM channels WHERE id = $1",
        channel
    )
    .fetch_optional(db)
    .await?
    .map(|r| (r.last_seq, r.last_change, r.first_seq))
    // A channel the replica does not have yet: behind.
    .unwrap_or((-1, -1, -1)))
}
