//! `/api/presence/online`: who has a live connection, cluster-wide or in one channel.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::access;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

const MAX_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/presence/online", get(online))
}

#[derive(Deserialize)]
struct OnlineQuery {
    channel: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct OnlineUser {
    #[serde(rename = "userId")]
    user_id: String,
    username: String,
}

async fn online(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<OnlineQuery>, QueryRejection>,
) -> AppResult<Json<Vec<OnlineUser>>> {
    let Query(q) = query.map_err(|e| AppError::invalid(e.body_text()))?;
    let limit = match q.limit.as_deref() {
        None => MAX_LIMIT,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| AppError::invalid(format!("limit must be 1 to {MAX_LIMIT}")))?,
    };
    let channel = match q.channel.as_deref() {
        Some(raw) => Some(access::readable_channel(&state, raw, user.id).await?.name),
        None => None,
    };
    let users = state
        .presence
        .online_users(channel.as_deref(), limit)
        .await?;
    Ok(Json(
        users
            .into_iter()
            .map(|(user_id, username)| OnlineUser { user_id, username })
            .collect(),
    ))
}
