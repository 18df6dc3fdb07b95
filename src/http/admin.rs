//! The operators' routes, administrators only: the cluster as its instances report it
//! (`GET /api/admin/cluster`), and draining an instance or calling its drain off
//! (`POST` / `DELETE /api/admin/instances/:id/drain`). See `crate::ops`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::AuthUser;
use crate::budget;
use crate::contract::{ClusterView, DrainAnswer};
use crate::error::{AppError, AppResult, Code};
use crate::ops::stats;
use crate::realtime::instructions::{self, Instruction};
use crate::state::AppState;

/// Longest instance id accepted in a path (ids are `INSTANCE_ID`s or 32 hex digits).
const MAX_INSTANCE_ID: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/cluster", get(cluster)).route(
        "/admin/instances/{id}/drain",
        post(start_drain).delete(stop_drain),
    )
}

fn admin(state: &AppState, user: &AuthUser) -> AppResult<()> {
    if state.config.is_admin(&user.username, user.guest) {
        Ok(())
    } else {
        Err(AppError::new(
            Code::Forbidden,
            "only administrators may do this",
        ))
    }
}

/// `GET /api/admin/cluster`: every instance's last report, the busiest channels, the
/// dependencies' health and the newest moderation entries.
async fn cluster(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<ClusterView>> {
    admin(&state, &user)?;
    state.budget.charge(user.id, budget::PAGE_COST)?;
    Ok(Json(stats::cluster(&state).await?))
}

async fn start_drain(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<DrainAnswer>)> {
    set_drain(&state, &user, id, true).await
}

async fn stop_drain(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<DrainAnswer>)> {
    set_drain(&state, &user, id, false).await
}

/// Tells instance `id` (this one, or another through the instructions channel) to drain or
/// to take sessions again; 202: the instance acts on it within moments.
async fn set_drain(
    state: &AppState,
    user: &AuthUser,
    id: String,
    drain: bool,
) -> AppResult<(StatusCode, Json<DrainAnswer>)> {
    admin(state, user)?;
    state.budget.charge(user.id, budget::PAGE_COST)?;
    if id.is_empty() || id.len() > MAX_INSTANCE_ID {
        return Err(AppError::not_found("instance"));
    }
    if drain {
        // The registered instances, each with its report or silent: one read of the set.
        let (reports, silent) = stats::reports(state).await?;
        if !reports.iter().any(|r| r.id == id) && !silent.contains(&id) {
            return Err(AppError::not_found("instance"));
        }
        // Draining the last instance that takes sessions would leave none for anyone.
        if !reports.iter().any(|r| r.id != id && !r.draining) {
            return Err(AppError::new(
                Code::Conflict,
                "no other instance takes sessions: start one before draining this one",
            ));
        }
    } else if !state.presence.instances().await?.contains(&id) {
        return Err(AppError::not_found("instance"));
    }
    tracing::info!(admin = %user.username, instance = %id, drain, "drain requested");
    let instruction = Instruction::Drain {
        instance: id.clone(),
        drain,
    };
    if id == state.ops.instance {
        instructions::apply(&state.delivery, &state.ops, instruction).await;
    } else {
        instructions::send(&state.db, &instruction).await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(DrainAnswer {
            instance: id,
            draining: drain,
        }),
    ))
}
