//! Who may read a channel: everyone for a public channel, members for a private one.

use uuid::Uuid;

use crate::error::{AppError, AppResult, Code};
use crate::store::channels::{self, Channel};
use crate::validate;
use crate::AppState;

/// Loads a channel by (unvalidated) name; `not_found` when it does not exist.
pub async fn channel(state: &AppState, raw_name: &str) -> AppResult<Channel> {
    let name = validate::channel_name(raw_name)?;
    channels::find(&state.db, &name)
        .await?
        .ok_or_else(|| AppError::not_found("channel"))
}

/// Loads a channel the user may read; `forbidden` for a private channel they are not in.
pub async fn readable_channel(state: &AppState, raw_name: &str, user: Uuid) -> AppResult<Channel> {
    let channel = channel(state, raw_name).await?;
    if channel.is_private() && !channels::is_member(&state.db, channel.id, user).await? {
        return Err(AppError::new(
            Code::Forbidden,
            "this channel is private: join it with its password first",
        ));
    }
    Ok(channel)
}
