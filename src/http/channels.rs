//! `/api/channels`: list and create channels, and read a channel's history by `seq` cursors.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::ApiJson;
use crate::auth::{hash_password, AuthUser};
use crate::contract::{server, ChannelCreated, ChannelView, Message};
use crate::error::{AppError, AppResult, Code, FieldError, ResultExt};
use crate::state::AppState;
use crate::store::channels::{self, Retention};
use crate::store::messages::{self, Page};
use crate::validate;
use crate::{access, budget};

/// Default and largest page of history.
const MAX_PAGE: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/channels", get(list).post(create))
        .route("/channels/{name}", axum::routing::patch(update))
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
    user: AuthUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> AppResult<(axum::http::HeaderMap, Json<Vec<ChannelView>>)> {
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    state.budget.charge(user.id, budget::PAGE_COST)?;
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
    // From the replica when there is one (a channel created a moment ago may be missing
    // there for as long as it lags); from the primary when the replica is away.
    let page = match channels::list(state.reads.any(), after.as_deref(), limit).await {
        Ok(page) => page,
        Err(e) if state.reads.has_replica() => {
            tracing::warn!(error = %e, "read replica unavailable, reading from the primary");
            channels::list(&state.db, after.as_deref(), limit).await?
        }
        Err(e) => return Err(e.into()),
    };
    let mut headers = axum::http::HeaderMap::new();
    if page.len() as i64 == limit {
        if let Some(Ok(next)) = page.last().map(|c| c.name.parse()) {
            headers.insert("x-next-after", next);
        }
    }
    // The user's read positions and unread counts, from the primary (a position set a moment
    // ago shows at once).
    let views = channels::views_for(&state.db, user.id, &page.iter().collect::<Vec<_>>()).await?;
    Ok((headers, Json(views)))
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    password: Option<String>,
    retention_max_age_secs: Option<i64>,
    retention_max_messages: Option<i64>,
}

/// Shortest and longest retention a channel may set for itself: a minute to ten years.
const RETENTION_AGE: std::ops::RangeInclusive<i64> = 60..=315_360_000;
/// Fewest and most messages a channel may set itself to keep.
const RETENTION_MESSAGES: std::ops::RangeInclusive<i64> = 1..=1_000_000_000;

/// Checks a channel's own retention limits.
fn retention(max_age_secs: Option<i64>, max_messages: Option<i64>) -> AppResult<Retention> {
    let mut errors = Vec::new();
    if max_age_secs.is_some_and(|v| !RETENTION_AGE.contains(&v)) {
        errors.push(FieldError {
            field: "retention_max_age_secs".into(),
            message: format!(
                "must be {} to {} seconds, or null for the server's setting",
                RETENTION_AGE.start(),
                RETENTION_AGE.end()
            ),
        });
    }
    if max_messages.is_some_and(|v| !RETENTION_MESSAGES.contains(&v)) {
        errors.push(FieldError {
            field: "retention_max_messages".into(),
            message: format!(
                "must be {} to {} messages, or null for the server's setting",
                RETENTION_MESSAGES.start(),
                RETENTION_MESSAGES.end()
            ),
        });
    }
    if errors.is_empty() {
        Ok(Retention {
            max_age_secs,
            max_messages,
        })
    } else {
        Err(AppError::fields(errors))
    }
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateBody>,
) -> AppResult<(StatusCode, Json<ChannelView>)> {
    let name = validate::channel_name(body.name.as_deref().unwrap_or_default())?;
    if name.starts_with(channels::DM_PREFIX) {
        return Err(AppError::from(FieldError {
            field: "name".into(),
            message: format!(
                "names starting with {} are kept for direct messages",
                channels::DM_PREFIX
            ),
        }));
    }
    let description = validate::description(body.description.as_deref().unwrap_or_default())?;
    let password = body.password.filter(|p| !p.is_empty());
    if let Some(p) = &password {
        validate::password("password", p)?;
    }
    let retention = retention(body.retention_max_age_secs, body.retention_max_messages)?;
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
        retention,
    )
    .await
    .conflict_on_unique("a channel with that name already exists")?;
    tracing::info!(channel = %channel.name, private = channel.is_private(), user_id = %user.id, "channel created");
    // Every channel list stays whole without a reload.
    let created = ChannelCreated {
        channel: channel.view(),
    };
    state
        .delivery
        .broadcast(Vec::new(), server::CHANNEL_CREATED, &created)
        .await;
    Ok((StatusCode::CREATED, Json(channel.view())))
}

/// `PATCH /api/channels/{name}`: the channel's creator changes its retention limits. A field
/// that is present is set (`null` returns to the server's setting); an absent one is kept.
#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    retention_max_age_secs: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    retention_max_messages: Option<Option<i64>>,
}

/// A field that is present, possibly `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> AppResult<Json<ChannelView>> {
    let channel = access::readable_channel(&state, &name, user.id).await?;
    if channel.owner() != Some(user.id) {
        return Err(AppError::new(
            Code::Forbidden,
            "only the channel's creator may change its settings",
        ));
    }
    let retention = retention(
        body.retention_max_age_secs
            .unwrap_or(channel.retention_max_age_secs),
        body.retention_max_messages
            .unwrap_or(channel.retention_max_messages),
    )?;
    let channel = channels::set_retention(&state.db, channel.id, retention).await?;
    tracing::info!(channel = %channel.name, user_id = %user.id, ?retention, "channel retention changed");
    Ok(Json(channel.view()))
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
) -> AppResult<(axum::http::HeaderMap, Json<Vec<Message>>)> {
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let before = int_param("before", q.before.as_deref())?;
    let after = int_param("after", q.after.as_deref())?;
    let limit =
        int_param("limit", q.limit.as_deref())?.unwrap_or(state.config.history_default_limit);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let page = match (before, after) {
        (None, None) => Page::Latest,
        (Some(b), None) => Page::Before(b),
        (None, Some(a)) => Page::After(a),
        (Some(_), Some(_)) => return Err(AppError::invalid("give before or after, not both")),
    };
    state.budget.charge(user.id, budget::PAGE_COST)?;
    let channel = access::readable_channel(&state, &name, user.id).await?;
    let db = state.reads.messages(channel.id).await?;
    let mut paged = messages::page(db, channel.id, page, limit, Some(user.id)).await?;
    // Cut by bytes too, keeping the end the reader goes on from: `first_seq` tells whether
    // there is more before, `after` reads on until a page comes back empty.
    let keep = match page {
        Page::After(_) => messages::Keep::First,
        Page::Latest | Page::Before(_) => messages::Keep::Last,
    };
    messages::fit_page(&mut paged.messages, keep);
    // Where history begins, read after the page; what a retention pass removed meanwhile
    // leaves the page too, so that it holds nothing older.
    let first_seq = channels::first_seq(db, channel.id).await?;
    paged.messages.retain(|m| m.seq >= first_seq);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-first-seq", first_seq.into());
    // The change cursor as of before the page: every change up to it shows in the page.
    headers.insert("x-last-change", paged.last_change.into());
    Ok((headers, Json(paged.messages)))
}
