//! Who may read a channel: one answer for every read of channel content. Postgres holds it
//! (`may_read(channel, reader)`, migrations/20261207000001_may_read.sql): a public channel is
//! read by every user who is not banned, a private one (a password, or a direct message) by its
//! members who are not banned. Queries that show channel content to a user (files, unread
//! counts, mentions) call it in SQL; handlers that take a channel by name call
//! [`readable_channel`], which asks the same function.

use uuid::Uuid;

use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;
use crate::store::channels::{self, Channel};
use crate::validate;

/// Loads a channel by (unvalidated) name; `not_found` when it does not exist.
pub async fn channel(state: &AppState, raw_name: &str) -> AppResult<Channel> {
    let name = validate::channel_name(raw_name)?;
    channels::find(&state.db, &name)
        .await?
        .ok_or_else(|| AppError::not_found("channel"))
}

/// Loads a channel by (unvalidated) name with whether `user` may read it; `not_found` when it
/// does not exist.
pub async fn channel_for(
    state: &AppState,
    raw_name: &str,
    user: Uuid,
) -> AppResult<(Channel, bool)> {
    let name = validate::channel_name(raw_name)?;
    channels::find_for(&state.db, &name, user)
        .await?
        .ok_or_else(|| AppError::not_found("channel"))
}

/// Loads a channel the user may read; `forbidden` otherwise.
pub async fn readable_channel(state: &AppState, raw_name: &str, user: Uuid) -> AppResult<Channel> {
    match channel_for(state, raw_name, user).await? {
        (channel, true) => Ok(channel),
        (_, false) => Err(AppError::new(
            Code::Forbidden,
            "this channel is private: join it with its password first",
        )),
    }
}
