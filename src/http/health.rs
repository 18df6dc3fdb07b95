//! `/health` (the process is alive) and `/ready` (its dependencies answer).

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{AppError, Code};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when Postgres and Redis both answer within two seconds, else 503 naming what is down;
/// 503 while the instance drains (balancers and Kubernetes take it out).
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    if state.ops.drain.is_draining() {
        return Err(AppError::new(
            Code::Unavailable,
            "not ready: this instance is draining",
        ));
    }
    let limit = Duration::from_secs(2);
    let db = tokio::time::timeout(limit, sqlx::query!("SELECT 1 AS one").fetch_one(&state.db));
    let mut conn = state.redis.clone();
    let ping = redis::cmd("PING");
    let redis = tokio::time::timeout(limit, ping.query_async::<String>(&mut conn));
    let (db, redis) = tokio::join!(db, redis);
    let mut down = Vec::new();
    if !matches!(db, Ok(Ok(_))) {
        down.push("postgres");
    }
    if !matches!(redis, Ok(Ok(_))) {
        down.push("redis");
    }
    if down.is_empty() {
        Ok(Json(json!({ "status": "ok" })))
    } else {
        Err(AppError::new(
            Code::Unavailable,
            format!("not ready: {} unavailable", down.join(" and ")),
        ))
    }
}
