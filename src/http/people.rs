//! People and moderation: direct messages (`/api/dms`), a user's profile with presence and last
//! seen (`/api/users/:name`), removing a member from a channel, and the administrators' routes
//! (bans and the moderation log).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiJson;
use crate::auth::AuthUser;
use crate::contract::ChannelView;
use crate::error::{AppError, AppResult, Code};
use crate::realtime::instructions::{self, Instruction};
use crate::state::AppState;
use crate::store::channels;
use crate::store::moderation;
use crate::store::users::{self, Profile};
use crate::validate;
use crate::{access, budget};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dms", get(list_dms).post(open_dm))
        .route("/users/{name}", get(profile))
        .route("/channels/{name}/members/{user}", delete(remove_member))
        .route("/admin/users/{name}/ban", post(ban).delete(unban))
        .route("/admin/moderation-log", get(moderation_log))
}

/// Most direct-message channels listed.
const MAX_DMS: i64 = 200;

/// A user as others see them: online now (anywhere in the cluster), or when last seen.
#[derive(Debug, Serialize)]
struct Person {
    id: Uuid,
    username: String,
    online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<DateTime<Utc>>,
}

impl Person {
    /// Presence fails open to "not online" when Redis cannot be asked.
    async fn of(
        state: &AppState,
        id: Uuid,
        username: String,
        last_seen: Option<DateTime<Utc>>,
    ) -> Person {
        let online = match state.presence.connections(id).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::debug!(error = %e, "presence unavailable for a profile");
                false
            }
        };
        Person {
            id,
            username,
            online,
            // Shown for users who are away.
            last_seen: if online { None } else { last_seen },
        }
    }
}

/// A looked-up user, or `not_found`.
async fn find_user(state: &AppState, raw: &str) -> AppResult<Profile> {
    let name = validate::username(raw).map_err(AppError::from)?;
    users::profile(&state.db, &name)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

async fn profile(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(name): Path<String>,
) -> AppResult<Json<Person>> {
    let p = find_user(&state, &name).await?;
    Ok(Json(
        Person::of(&state, p.id, p.username, p.last_seen_at).await,
    ))
}

#[derive(Deserialize)]
struct OpenDm {
    username: Option<String>,
}

/// A direct-message channel with the other member and the reader's unread counts.
#[derive(Debug, Serialize)]
struct Dm {
    channel: ChannelView,
    user: Person,
}

/// `POST /api/dms {username}`: opens the direct-message channel with that user, or returns
/// it. Guests take part only when `DM_GUESTS` allows it.
async fn open_dm(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<OpenDm>,
) -> AppResult<Json<Dm>> {
    let other = find_user(&state, body.username.as_deref().unwrap_or_default()).await?;
    if other.id == user.id {
        return Err(AppError::invalid("a direct message needs another user"));
    }
    if !state.config.dm_guests && (user.guest || other.is_guest) {
        return Err(AppError::new(
            Code::Forbidden,
            "direct messages with guests are turned off",
        ));
    }
    if other.banned {
        return Err(AppError::not_found("user"));
    }
    // A new one counts toward the user's hourly channel cap (one may not make a channel with
    // every user in a burst).
    let name = channels::dm_name(user.id, other.id);
    if channels::find(&state.db, &name).await?.is_none() {
        let cap = state.config.channels_per_user_per_hour;
        if let Some(wait) = state
            .limiter
            .channel_created(&user.id.to_string(), cap)
            .await?
        {
            return Err(AppError::rate_limited(wait));
        }
    }
    let channel = channels::open_dm(&state.db, user.id, other.id).await?;
    tracing::info!(channel = %channel.name, user_id = %user.id, "direct messages opened");
    let view = channels::views_for(&state.db, user.id, &[&channel])
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(Json(Dm {
        channel: view,
        user: Person::of(&state, other.id, other.username, other.last_seen_at).await,
    }))
}

/// `GET /api/dms`: the user's direct-message channels, the most recently active first.
async fn list_dms(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<Dm>>> {
    state.budget.charge(user.id, budget::PAGE_COST)?;
    let dms = channels::direct_channels(&state.db, user.id, MAX_DMS).await?;
    let views = channels::views_for(
        &state.db,
        user.id,
        &dms.iter().map(|d| &d.channel).collect::<Vec<_>>(),
    )
    .await?;
    let mut out = Vec::with_capacity(dms.len());
    for (d, view) in dms.into_iter().zip(views) {
        out.push(Dm {
            channel: view,
            user: Person::of(&state, d.user_id, d.username, d.last_seen_at).await,
        });
    }
    Ok(Json(out))
}

/// Whether the user administers the instance.
fn is_admin(state: &AppState, user: &AuthUser) -> bool {
    state.config.is_admin(&user.username, user.guest)
}

fn admins_only() -> AppError {
    AppError::new(Code::Forbidden, "only administrators may do this")
}

#[derive(Debug, Serialize)]
struct Removed {
    removed: bool,
}

/// `DELETE /api/channels/:name/members/:user`: the channel's owner or an administrator removes
/// a user from it: no longer a member (a private channel then needs its password again), and
/// out of it at once on every instance (`channel.removed` to their sockets there).
async fn remove_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((name, target)): Path<(String, String)>,
) -> AppResult<Json<Removed>> {
    // Owners and administrators, whether or not they read the channel: an administrator
    // moderates a private channel without being in it.
    let (channel, readable) = access::channel_for(&state, &name, user.id).await?;
    let admin = is_admin(&state, &user);
    if !readable && !admin {
        return Err(AppError::new(
            Code::Forbidden,
            "this channel is private: join it with its password first",
        ));
    }
    if channel.is_dm() {
        return Err(AppError::new(
            Code::Forbidden,
            "nobody is removed from direct messages",
        ));
    }
    if channel.owner() != Some(user.id) && !admin {
        return Err(AppError::new(
            Code::Forbidden,
            "only the channel's owner or an administrator may remove members",
        ));
    }
    let target = find_user(&state, &target).await?;
    if target.id == user.id {
        return Err(AppError::invalid("leave the channel instead"));
    }
    let was_member = channels::remove_member(&state.db, channel.id, target.id).await?;
    audit(
        &state,
        &user,
        "channel.remove_member",
        Some((channel.id, &channel.name)),
        &target,
    )
    .await?;
    // This instance's sockets leave at once; the others when the instruction reaches them.
    state.delivery.leave_here(target.id, channel.name.clone());
    let leave = Instruction::Leave {
        user: target.id,
        channel: channel.name.clone(),
    };
    if let Err(e) = instructions::send(&state.db, &leave).await {
        tracing::warn!(error = %e, "removal from the channel not sent to the other instances");
    }
    tracing::info!(channel = %channel.name, user_id = %target.id, by = %user.id, "member removed");
    Ok(Json(Removed {
        removed: was_member,
    }))
}

#[derive(Debug, Serialize)]
struct BanState {
    user: Uuid,
    username: String,
    banned: bool,
}

/// `POST /api/admin/users/:name/ban`: the user's sessions stop working, their sockets close on
/// every instance, and their login is refused until `DELETE` lifts the ban.
async fn ban(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> AppResult<Json<BanState>> {
    set_ban(state, user, name, true).await
}

async fn unban(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
) -> AppResult<Json<BanState>> {
    set_ban(state, user, name, false).await
}

async fn set_ban(
    state: AppState,
    user: AuthUser,
    name: String,
    banned: bool,
) -> AppResult<Json<BanState>> {
    if !is_admin(&state, &user) {
        return Err(admins_only());
    }
    let target = find_user(&state, &name).await?;
    if state.config.is_admin(&target.username, target.is_guest) {
        return Err(AppError::new(
            Code::Forbidden,
            "administrators cannot be banned",
        ));
    }
    if users::set_banned(&state.db, target.id, banned).await? {
        let action = if banned { "user.ban" } else { "user.unban" };
        audit(&state, &user, action, None, &target).await?;
        tracing::info!(user_id = %target.id, by = %user.id, banned, "ban changed");
    }
    Ok(Json(BanState {
        user: target.id,
        username: target.username,
        banned,
    }))
}

/// Records a moderation action on a user.
async fn audit(
    state: &AppState,
    actor: &AuthUser,
    action: &str,
    channel: Option<(Uuid, &str)>,
    target: &Profile,
) -> AppResult<()> {
    let action = moderation::Action {
        actor_id: actor.id,
        actor_name: &actor.username,
        action,
        channel,
        target: Some(target.id),
        message: None,
    };
    moderation::record(&state.db, &action).await?;
    Ok(())
}

#[derive(Deserialize)]
struct LogQuery {
    before: Option<String>,
    limit: Option<String>,
}

/// Default and largest page of the moderation log.
const DEFAULT_LOG: i64 = 50;
const MAX_LOG: i64 = 200;

/// `GET /api/admin/moderation-log?before=<id>&limit=N`: administrators only, newest first; a
/// full page carries `X-Next-Before`.
async fn moderation_log(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> AppResult<(axum::http::HeaderMap, Json<Vec<moderation::Entry>>)> {
    if !is_admin(&state, &user) {
        return Err(admins_only());
    }
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LOG).contains(n))
            .ok_or_else(|| AppError::invalid(format!("limit must be 1 to {MAX_LOG}")))?,
        None => DEFAULT_LOG,
    };
    let before = match q.before.as_deref() {
        Some(raw) => Some(
            Uuid::parse_str(raw).map_err(|_| AppError::invalid("before must be an entry's id"))?,
        ),
        None => None,
    };
    let entries = moderation::page(&state.db, before, limit).await?;
    let mut headers = axum::http::HeaderMap::new();
    if entries.len() as i64 == limit {
        if let Some(Ok(next)) = entries.last().map(|e| e.id.to_string().parse()) {
            headers.insert("x-next-before", next);
        }
    }
    Ok((headers, Json(entries)))
}
