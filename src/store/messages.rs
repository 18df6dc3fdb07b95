//! The `messages` table: the idempotent, gap-free insert and the cursor queries behind
//! history and `messages.sync`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// A file attached to a message (a link; banter stores no file bodies).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A message as the wire contract shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub id: Uuid,
    pub channel: String,
    pub seq: i64,
    pub text: String,
    pub sender: String,
    pub sender_id: Option<Uuid>,
    pub client_message_id: Uuid,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    channel: String,
    seq: i64,
    text: String,
    sender_name: String,
    sender_id: Option<Uuid>,
    client_message_id: Uuid,
    created_at: DateTime<Utc>,
    file_url: Option<String>,
    file_name: Option<String>,
    file_type: Option<String>,
}

impl From<Row> for Message {
    fn from(r: Row) -> Self {
        let file = match (r.file_url, r.file_name, r.file_type) {
            (Some(url), Some(name), Some(kind)) => Some(FileRef { url, name, kind }),
            _ => None,
        };
        Message {
            id: r.id,
            channel: r.channel,
            seq: r.seq,
            text: r.text,
            sender: r.sender_name,
            sender_id: r.sender_id,
            client_message_id: r.client_message_id,
            created_at: r.created_at,
            file,
        }
    }
}

/// A message to store.
pub struct NewMessage<'a> {
    pub channel_id: Uuid,
    pub channel: &'a str,
    pub sender_id: Uuid,
    pub sender_name: &'a str,
    pub text: &'a str,
    pub client_message_id: Uuid,
    pub file: Option<&'a FileRef>,
}

/// The outcome of an idempotent insert.
pub struct Inserted {
    pub message: Message,
    /// The sender had already used this `client_message_id`: nothing was stored.
    pub duplicate: bool,
}

const SELECT: &str = "SELECT m.id, c.name AS channel, m.seq, m.text, m.sender_name, m.sender_id,
        m.client_message_id, m.created_at, m.file_url, m.file_name, m.file_type
    FROM messages m JOIN channels c ON c.id = m.channel_id";

/// The message a sender stored under a `client_message_id`, if any.
pub async fn find_by_client_id(
    db: &PgPool,
    sender: Uuid,
    client_message_id: Uuid,
) -> Result<Option<Message>, sqlx::Error> {
    sqlx::query_as::<_, Row>(&format!(
        "{SELECT} WHERE m.sender_id = $1 AND m.client_message_id = $2"
    ))
    .bind(sender)
    .bind(client_message_id)
    .fetch_optional(db)
    .await
    .map(|r| r.map(Message::from))
}

/// Stores a message exactly once per `(sender, client_message_id)`.
///
/// Callers look the id up with [`find_by_client_id`] first (the cheap, common answer to a
/// retry); this insert still settles races between concurrent retries.
///
/// The channel row is locked by bumping `last_seq`, so inserts into one channel are serialized
/// and their seqs follow commit order with no gap. A duplicate (already stored, or stored by a
/// concurrent call while this one waited for the lock) rolls back, so it consumes no seq.
pub async fn insert_idempotent(db: &PgPool, new: NewMessage<'_>) -> Result<Inserted, sqlx::Error> {
    let mut tx = db.begin().await?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE channels SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(new.channel_id)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query_as::<_, Row>(
        "INSERT INTO messages (id, channel_id, seq, sender_id, sender_name, text,
                               client_message_id, file_url, file_name, file_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (sender_id, client_message_id) DO NOTHING
         RETURNING id, $11::text AS channel, seq, text, sender_name, sender_id,
                   client_message_id, created_at, file_url, file_name, file_type",
    )
    .bind(Uuid::now_v7())
    .bind(new.channel_id)
    .bind(seq)
    .bind(new.sender_id)
    .bind(new.sender_name)
    .bind(new.text)
    .bind(new.client_message_id)
    .bind(new.file.map(|f| f.url.as_str()))
    .bind(new.file.map(|f| f.name.as_str()))
    .bind(new.file.map(|f| f.kind.as_str()))
    .bind(new.channel)
    .fetch_optional(&mut *tx)
    .await?;
    match row {
        Some(row) => {
            tx.commit().await?;
            Ok(Inserted {
                message: row.into(),
                duplicate: false,
            })
        }
        None => {
            tx.rollback().await?;
            let message = find_by_client_id(db, new.sender_id, new.client_message_id)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            Ok(Inserted {
                message,
                duplicate: true,
            })
        }
    }
}

/// Which page of a channel's history to read.
#[derive(Clone, Copy, Debug)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// The messages just older than this seq.
    Before(i64),
    /// The messages just newer than this seq.
    After(i64),
}

/// One page of history, oldest first.
pub async fn page(
    db: &PgPool,
    channel_id: Uuid,
    page: Page,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let (filter, order, cursor) = match page {
        Page::Latest => ("", "DESC", 0),
        Page::Before(seq) => ("AND m.seq < $3", "DESC", seq),
        Page::After(seq) => ("AND m.seq > $3", "ASC", seq),
    };
    let sql = format!("{SELECT} WHERE m.channel_id = $1 {filter} ORDER BY m.seq {order} LIMIT $2");
    let mut query = sqlx::query_as::<_, Row>(&sql).bind(channel_id).bind(limit);
    if !filter.is_empty() {
        query = query.bind(cursor);
    }
    let mut messages: Vec<Message> = query
        .fetch_all(db)
        .await?
        .into_iter()
        .map(Message::from)
        .collect();
    if order == "DESC" {
        messages.reverse();
    }
    Ok(messages)
}
