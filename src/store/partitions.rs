//! The monthly partitions of `messages` (`messages_yYYYYmMM`, by `created_at` in UTC; see the
//! migration `partition_messages`): created ahead of time, and dropped whole by retention once
//! every message in one is past the instance's age limit.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Months after the current one whose partitions always exist (a send never waits for one).
pub const MONTHS_AHEAD: i32 = 2;

/// Creates the partitions missing from the current month to [`MONTHS_AHEAD`] after it; returns
/// how many it created. Every instance runs it at start and with each retention tick.
pub async fn ensure(db: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT ensure_message_partitions(now(), $1) AS "made!""#,
        MONTHS_AHEAD
    )
    .fetch_one(db)
    .await
}

/// One monthly partition.
#[derive(Clone, Debug)]
pub struct Partition {
    pub name: String,
    /// Where its range ends: every message in it was created before.
    pub end: DateTime<Utc>,
    /// Where an earlier drop stopped: attached, half-detached, or detached and not dropped.
    pub state: State,
}

/// How far a partition is from being dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Attached,
    Detaching,
    Detached,
}

/// The end of the month a partition name stands for, if it is one of ours.
fn month_end(name: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix("messages_y")?;
    let (year, month) = rest.split_once('m')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let (year, month): (i32, u32) = (year.parse().ok()?, month.parse().ok()?);
    let start = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some(next.and_hms_opt(0, 0, 0)?.and_utc())
}

/// The monthly partitions, oldest first.
pub async fn list(db: &PgPool) -> Result<Vec<Partition>, sqlx::Error> {
    // Tables detached by an interrupted drop are listed too, to be dropped.
    let rows = sqlx::query!(
        r#"SELECT c.relname::text AS "name!", i.inhdetachpending AS "detaching?"
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
           WHERE c.relkind = 'r' AND c.relname ~ '^messages_y[0-9]{4}m[0-9]{2}$'"#
    )
    .fetch_all(db)
    .await?;
    let mut partitions: Vec<Partition> = rows
        .into_iter()
        .filter_map(|r| {
            Some(Partition {
                end: month_end(&r.name)?,
                name: r.name,
                state: match r.detaching {
                    None => State::Detached,
                    Some(true) => State::Detaching,
                    Some(false) => State::Attached,
                },
            })
        })
        .collect();
    partitions.sort_by_key(|p| p.end);
    Ok(partitions)
}

/// What dropping a partition removed.
pub struct Dropped {
    pub messages: u64,
    /// Stored files its messages carried (some may still be carried by kept messages).
    pub file_keys: Vec<Uuid>,
}

/// Drops a partition whose every message retention removes: each channel's `first_seq` is
/// raised past its messages in it first (history stops showing them at once), their
/// idempotency keys go, and the partition is detached without blocking sends (`DETACH
/// CONCURRENTLY`) and dropped. Each step can be repeated, so an interrupted drop is finished
/// by the next pass.
pub async fn drop_partition(db: &PgPool, partition: &Partition) -> Result<Dropped, sqlx::Error> {
    // The name comes from the catalog and matched `messages_yYYYYmMM`: safe to interpolate.
    let name = &partition.name;
    if month_end(name).is_none() {
        return Err(sqlx::Error::Protocol(format!(
            "{name} is not a message partition"
        )));
    }
    let mut dropped = Dropped {
        messages: 0,
        file_keys: Vec::new(),
    };
    if partition.state == State::Attached {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE channels c SET first_seq = GREATEST(c.first_seq, p.top + 1)
             FROM (SELECT channel_id, max(seq) AS top FROM {name} GROUP BY channel_id) p
             WHERE c.id = p.channel_id"
        )))
        .execute(db)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM message_keys k USING {name} m
             WHERE k.sender_id = m.sender_id AND k.client_message_id = m.client_message_id"
        )))
        .execute(db)
        .await?;
        dropped.file_keys = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT file_key FROM {name} WHERE file_key IS NOT NULL"
        )))
        .fetch_all(db)
        .await?;
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
                .fetch_one(db)
                .await?;
        dropped.messages = count.max(0) as u64;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE messages DETACH PARTITION {name} CONCURRENTLY"
        )))
        .execute(db)
        .await?;
    } else if partition.state == State::Detaching {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE messages DETACH PARTITION {name} FINALIZE"
        )))
        .execute(db)
        .await?;
    }
    // Their reactions and mentions go with them (in every state: the table is still there).
    for table in ["message_reactions", "message_mentions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} r USING {name} m
             WHERE r.channel_id = m.channel_id AND r.seq = m.seq"
        )))
        .execute(db)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(db)
        .await?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::month_end;

    #[test]
    fn partition_names_give_the_end_of_their_month() {
        assert_eq!(
            month_end("messages_y2026m12").map(|t| t.to_rfc3339()),
            Some("2027-01-01T00:00:00+00:00".to_owned())
        );
        assert_eq!(
            month_end("messages_y2027m02").map(|t| t.to_rfc3339()),
            Some("2027-03-01T00:00:00+00:00".to_owned())
        );
        assert!(month_end("messages_y2027m13").is_none());
        assert!(month_end("messages_default").is_none());
        assert!(month_end("messages_y2027m1; DROP").is_none());
    }
}
