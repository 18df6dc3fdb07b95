//! `message.send`: checked, stored with others in one group commit, published, then acked.

use std::sync::Arc;
use std::time::Instant;

use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::{check_rate, joined_channel, mentioned, notify_blocked, Blocked};
use crate::contract::Quote;
use crate::contract::{SendMessage, Sent};
use crate::error::{AppError, AppResult};
use crate::realtime::membership::Conn;
use crate::realtime::Adapter;
use crate::state::AppState;
use crate::store;
use crate::store::messages::{self, NewMessage};
use crate::validate;

pub(super) async fn send(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    request: SendMessage,
) -> AppResult<Sent> {
    let file = request.file_ref();
    let SendMessage {
        channel,
        text,
        client_message_id,
        reply_to,
        ..
    } = request;
    let started = Instant::now();
    let result = async {
        let joined = joined_channel(&state, &conn, &channel).await?;
        let text = validate::message_text(&text)?;

        match check_rate(&state, &conn).await {
            Ok(()) => {}
            Err(Blocked {
                retry_after_ms,
                new_block,
            }) => {
                // A retry of a stored message gets that message back, even while blocked.
                if let Some(message) = store::bounded(messages::find_by_client_id(
                    &state.db,
                    conn.user_id,
                    client_message_id,
                ))
                .await?
                {
                    return Ok(Sent {
                        message,
                        duplicate: true,
                    });
                }
                if new_block {
                    notify_blocked(&state, conn.user_id, retry_after_ms).await;
                }
                return Err(AppError::rate_limited(retry_after_ms));
            }
        }
        let text = state.filter.apply(&text);
        let reply_to = match reply_to {
            Some(id) => Some(quote(&state, joined.id, id).await?),
            None => None,
        };
        let mentions = mentioned(&state, conn.user_id, &joined, &text).await?;
        // An upload of the sender's becomes the stored file (its bytes checked now if they
        // went straight to S3); a link stays a link.
        let file = match file {
            Some(file) => Some(state.uploads.resolve(&state.db, conn.user_id, file).await?),
            None => None,
        };

        // Stored with whatever else arrived meanwhile (group commit), published, then acked.
        let inserted = state
            .committer
            .submit(NewMessage {
                channel_id: joined.id,
                channel: joined.name,
                sender_id: conn.user_id,
                sender_name: conn.username.clone(),
                text,
                client_message_id,
                file,
                reply_to,
                mentions,
            })
            .await?;
        Ok(Sent {
            message: inserted.message,
            duplicate: inserted.duplicate,
        })
    }
    .await;
    state
        .metrics
        .send_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The quote of message `id` for a reply: it must be a kept, undeleted message of the channel.
async fn quote(state: &AppState, channel_id: Uuid, id: Uuid) -> AppResult<Quote> {
    let unknown = || {
        AppError::from(crate::error::FieldError {
            field: "reply_to".into(),
            message: "no such message in this channel".into(),
        })
    };
    let message = messages::find_by_id(&state.db, channel_id, id)
        .await?
        .ok_or_else(unknown)?;
    if message.deleted {
        return Err(unknown());
    }
    Ok(Quote {
        id: message.id,
        seq: message.seq,
        sender: Some(message.sender),
        text: Some(messages::excerpt(&message.text)),
        deleted: false,
    })
}
