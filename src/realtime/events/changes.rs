//! Changes to stored messages: `message.edit`, `message.delete`, `reaction.add`,
//! `reaction.remove`.

use std::sync::Arc;

use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::{check_rate, joined_channel, mentioned, notify_blocked};
use crate::contract::{AddReaction, ChangeAck, DeleteMessage, EditMessage, RemoveReaction};
use crate::error::{AppError, AppResult, Code};
use crate::realtime::membership::{Conn, JoinedChannel};
use crate::realtime::Adapter;
use crate::state::AppState;
use crate::store;
use crate::store::changes::{self, Actor, Change, Refusal, Rule};
use crate::validate;

pub(super) async fn edit(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    EditMessage { channel, id, text }: EditMessage,
) -> AppResult<ChangeAck> {
    let text = validate::message_text(&text)?;
    let text = state.filter.apply(&text);
    // Its mentions are resolved by `change_message`, in the channel the change applies to.
    let change = Change::Edit {
        text,
        mentions: Vec::new(),
    };
    change_message(&state, &conn, &channel, id, change).await
}

pub(super) async fn delete(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    DeleteMessage { channel, id }: DeleteMessage,
) -> AppResult<ChangeAck> {
    change_message(&state, &conn, &channel, id, Change::Delete).await
}

pub(super) async fn add_reaction(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    AddReaction { channel, id, emoji }: AddReaction,
) -> AppResult<ChangeAck> {
    let change = Change::React { emoji, add: true };
    change_message(&state, &conn, &channel, id, change).await
}

pub(super) async fn remove_reaction(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    RemoveReaction { channel, id, emoji }: RemoveReaction,
) -> AppResult<ChangeAck> {
    let change = Change::React { emoji, add: false };
    change_message(&state, &conn, &channel, id, change).await
}

/// Edits, deletes or reacts to message `id` of a channel this socket has joined; a change
/// counts against the sender's rate limit like a send. What changed goes to the channel in
/// change order; the ack is the message as it now is.
async fn change_message(
    state: &AppState,
    conn: &Conn,
    raw_channel: &str,
    id: Uuid,
    mut change: Change,
) -> AppResult<ChangeAck> {
    let joined = joined_channel(state, conn, raw_channel).await?;
    let (channel, channel_id) = (&joined.name, joined.id);
    if let Err(blocked) = check_rate(state, conn).await {
        if blocked.new_block {
            notify_blocked(state, conn.user_id, blocked.retry_after_ms).await;
        }
        return Err(AppError::rate_limited(blocked.retry_after_ms));
    }
    // An edit's mentions: users who may read this channel, the one whose message it changes
    // (never the channel the socket happens to be in meanwhile).
    if let Change::Edit { text, mentions } = &mut change {
        *mentions = mentioned(state, conn.user_id, &joined, text).await?;
    }
    let moderator = change.rule() == Rule::SenderOrModerator && may_moderate(state, conn, &joined);
    let actor = Actor {
        id: conn.user_id,
        name: conn.username.clone(),
        moderator,
    };
    let changed = state
        .committer
        .change((channel_id, channel), id, &actor, &change)
        .await?
        .map_err(|refusal| refused_change(refusal, &change))?;
    // A delete takes the file off its message: the file goes too, unless another kept message
    // carries it.
    if let Some(key) = changed.file_key {
        match store::uploads::delete_unreferenced(&state.db, &[key]).await {
            Ok(gone) => state.uploads.delete_objects(&gone).await,
            Err(e) => {
                tracing::warn!(error = %e, "a deleted message's file was not removed; retention removes it")
            }
        }
    }
    Ok(ChangeAck {
        message: changed.message,
    })
}

/// Whether the user may delete others' messages in `channel`: an administrator, or the
/// channel's owner (its creator; a direct message has none).
fn may_moderate(state: &AppState, conn: &Conn, channel: &JoinedChannel) -> bool {
    state.config.is_admin(&conn.username, conn.guest) || channel.owner == Some(conn.user_id)
}

/// The answer to a refused change.
fn refused_change(refusal: Refusal, change: &Change) -> AppError {
    match refusal {
        Refusal::NotFound => AppError::not_found("message"),
        Refusal::Deleted => AppError::new(Code::NotFound, "this message was deleted"),
        Refusal::NotYours => AppError::new(Code::Forbidden, change.not_yours()),
        Refusal::TooManyReactions => AppError::new(
            Code::Conflict,
            format!(
                "a message holds at most {} different reactions",
                changes::MAX_REACTIONS
            ),
        ),
    }
}
