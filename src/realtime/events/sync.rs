//! `messages.sync`: the messages after a seq, and the changes to those the client has, by
//! change number.

use std::sync::Arc;

use socketioxide::extract::SocketRef;

use crate::access;
use crate::contract::{SyncMessages, Synced};
use crate::error::AppResult;
use crate::realtime::membership::Conn;
use crate::realtime::Adapter;
use crate::state::AppState;
use crate::store::changes;
use crate::store::channels;
use crate::store::messages::{self, Page};

pub(super) async fn sync(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    request: SyncMessages,
) -> AppResult<Synced> {
    let (after, limit) = (request.after_seq, request.limit());
    let channel = access::readable_channel(&state, &request.channel, conn.user_id).await?;
    let db = state.reads.messages(channel.id).await?;
    let paged = messages::page(
        db,
        channel.id,
        Page::After(after),
        limit + 1,
        Some(conn.user_id),
    )
    .await?;
    let mut page = paged.messages;
    let mut has_more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    has_more |= messages::fit_page(&mut page, messages::Keep::First);
    // Changes to the messages the client already has (up to `after_seq`); the page holds the
    // newer ones as they are now, every change up to `paged.last_change` included.
    let (changes, changes_has_more, last_change) = match request.after_change {
        Some(after_change) if after_change < paged.last_change => {
            let range = (after_change, paged.last_change);
            let mut changed =
                changes::since(db, channel.id, range, after, limit + 1, conn.user_id).await?;
            let mut more = changed.len() as i64 > limit;
            changed.truncate(limit as usize);
            more |= messages::fit_page(&mut changed, messages::Keep::First);
            let cursor = match changed.last().and_then(|m| m.change) {
                Some(last) if more => last,
                _ => paged.last_change,
            };
            (changed, more, cursor)
        }
        _ => (Vec::new(), false, paged.last_change),
    };
    // Read after the page; what a retention pass removed meanwhile leaves the answer too, so
    // that it holds nothing older than its `first_seq`.
    let first_seq = channels::first_seq(db, channel.id).await?;
    page.retain(|m| m.seq >= first_seq);
    let mut changes = changes;
    changes.retain(|m| m.seq >= first_seq);
    Ok(Synced {
        messages: page,
        has_more,
        first_seq,
        changes,
        changes_has_more,
        last_change,
    })
}
