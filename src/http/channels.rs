//! `/api/channels`: list and create channels, and read a channel's history by `seq` cursors.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::ApiJson;
use crate::access;
use crate::auth::{hash_password, AuthUser};
use crate::error::{AppError, AppResult, ResultExt};
use crate::store::channels::{self, ChannelView};
use crate::store::messages::{self, Message, Page};
use crate::{validate, AppState};

/// Default and largest page of history.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/channels", get(list).post(create))
        .route("/channels/{name}/messages", get(history))
}

/// Default and largest page of `GET /api/channels`.
const DEFAULT_CHANNELS: i64 = 100;
const MAX_CHANNELS: i64 = 200;

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

/// Channels by name, a page at a time: `?after=<last name seen>&limit=N`. A full page carries
/// `X-Next-After` (the cursor of the next page).
async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> AppResult<(axum::http::HeaderMap, Json<Vec<ChannelView>>)> {
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let limit = int_param("limit", q.limit.as_deref())?.unwrap_or(DEFAULT_CHANNELS);
    if !(1..=MAX_CHANNELS).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit must be 1 to {MAX_CHANNELS}"
        )));
    }
    let after = match q.after.as_deref() {
        Some(raw) => Some(validate::channel_name(raw)?),
        None => None,
    };
    let page = channels::list(&state.db, after.as_deref(), limit).await?;
    let mut headers = axum::http::HeaderMap::new();
    if page.len() as i64 == limit {
        if let Some(Ok(next)) = page.last().map(|c| c.name.parse()) {
            headers.insert("x-next-after", next);
        }
    }
    Ok((headers, Json(page.iter().map(|c| c.view()).collect())))
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    password: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<(StatusCode, Json<ChannelView>)> {
    let name = validate::channel_name(body.name.as_deref().unwrap_or_default())?;
    let description = validate::description(body.description.as_deref().unwrap_or_default())?;
    let password = body.password.filter(|p| !p.is_empty());
    if let Some(p) = &password {
        validate::password("password", p)?;
    }
    // Only a valid request counts, before the costly hash.
    let cap = state.config.channels_per_user_per_hour;
    if let Some(wait) = state
        .limiter
        .channel_created(&user.id.to_string(), cap)
        .await?
    {
        return Err(AppError::rate_limited(wait));
    }
    let password_hash = match password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let channel = channels::create(
        &state.db,
        &name,
        &description,
        password_hash.as_deref(),
        user.id,
    )
    .await
    .conflict_on_unique("a channel with that name already exists")?;
    tracing::info!(channel = %channel.name, private = channel.is_private(), user_id = %user.id, "channel created");
    Ok((StatusCode::CREATED, Json(channel.view())))
}

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Parses an optional non-negative integer query parameter.
fn int_param(name: &str, raw: Option<&str>) -> AppResult<Option<i64>> {
    raw.map(|v| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| AppError::invalid(format!("{name} must be a non-negative integer")))
    })
    .transpose()
}

async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> AppResult<Json<Vec<Message>>> {
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let before = int_param("before", q.before.as_deref())?;
    let after = int_param("after", q.after.as_deref())?;
    let limit = int_param("limit", q.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let page = match (before, after) {
        (None, None) => Page::Latest,
        (Some(b), None) => Page::Before(b),
        (None, Some(a)) => Page::After(a),
        (Some(_), Some(_)) => return Err(AppError::invalid("give before or after, not both")),
    };
    let channel = access::readable_channel(&state, &name, user.id).await?;
    Ok(Json(
        messages::page(&state.db, channel.id, page, limit).await?,
    ))
}
