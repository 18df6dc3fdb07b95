//! `/api/auth/*`: register, login, guest, logout, me.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_cookies::cookie::{time, SameSite};
use tower_cookies::{Cookie, Cookies};

use super::ApiJson;
use crate::auth::{hash_password, verify_password, AuthUser, COOKIE_NAME};
use crate::clientip::ClientAddr;
use crate::error::{AppError, AppResult, Code, ResultExt};
use crate::realtime::instructions::{self, Instruction};
use crate::state::AppState;
use crate::store::users::{self, PublicUser};
use crate::validate;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/guest", post(guest))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct LoginBody {
    email: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default)]
struct GuestBody {
    username: Option<String>,
}

/// Sets the session cookie for a user and returns the response body.
fn sign_in(
    state: &AppState,
    cookies: &Cookies,
    user: &PublicUser,
    message: &str,
) -> AppResult<Value> {
    let token = state.sessions.issue(user.id, &user.username)?;
    let cookie = Cookie::build((COOKIE_NAME, token))
        .http_only(true)
        .path("/")
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure)
        .max_age(time::Duration::seconds(
            i64::try_from(state.sessions.ttl_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    cookies.add(cookie);
    Ok(json!({ "message": message, "user": user }))
}

/// How long after a ban new guests from the banned user's last address are refused.
pub const BANNED_ADDRESS_SECS: i64 = 24 * 3600;

/// Records where a user signed in from (what a ban of theirs keeps guests out of); a failure
/// only logs: signing in does not depend on it.
async fn signed_in_from(state: &AppState, user: uuid::Uuid, address: std::net::IpAddr) {
    if let Err(e) = users::signed_in_from(&state.db, user, &address.to_string()).await {
        tracing::warn!(error = %e, "sign-in address not recorded");
    }
}

async fn register(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    cookies: Cookies,
    ApiJson(body): ApiJson<RegisterBody>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let mut errors = Vec::new();
    let username = match validate::username(body.username.as_deref().unwrap_or_default()) {
        Ok(u) => Some(u),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let email = match validate::email(body.email.as_deref().unwrap_or_default()) {
        Ok(e) => Some(e),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let password = body.password.unwrap_or_default();
    if let Err(e) = validate::password("password", &password) {
        errors.push(e);
    }
    let (Some(username), Some(email), true) = (username, email, errors.is_empty()) else {
        return Err(AppError::fields(errors));
    };
    let hash = hash_password(password).await?;
    let user = users::insert(&state.db, &username, Some(&email), Some(&hash))
        .await
        .conflict_on_unique(
            "that username or email is already taken (or the name looks like a taken one)",
        )?;
    tracing::info!(user_id = %user.id, "user registered");
    signed_in_from(&state, user.id, address).await;
    let body = sign_in(&state, &cookies, &user, "registered")?;
    Ok((StatusCode::CREATED, Json(body)))
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    cookies: Cookies,
    ApiJson(body): ApiJson<LoginBody>,
) -> AppResult<Json<Value>> {
    let password = body.password.unwrap_or_default();
    let (by_email, identifier) = match (body.email, body.username) {
        (Some(e), _) if !e.trim().is_empty() => (true, e.trim().to_owned()),
        (_, Some(u)) if !u.trim().is_empty() => (false, u.trim().to_owned()),
        _ => {
            return Err(AppError::fields(vec![crate::error::FieldError {
                field: "email".into(),
                message: "give an email or a username".into(),
            }]))
        }
    };
    let identifier_field = if by_email { "email" } else { "username" };
    for (name, text) in [
        (identifier_field, identifier.as_str()),
        ("password", password.as_str()),
    ] {
        validate::no_controls(name, text, false)?;
    }
    if password.is_empty() || identifier.len() > validate::MAX_EMAIL || password.len() > 1024 {
        return Err(AppError::new(
            Code::InvalidCredentials,
            "wrong email, username or password",
        ));
    }
    let user = users::find_for_login(&state.db, by_email, &identifier).await?;
    // Failures count per account whichever name it was asked by (or per name when no such
    // account exists), and per client address.
    let account = match &user {
        Some(u) => u.id.to_string(),
        None => identifier.to_lowercase(),
    };
    let client = address;
    let address = address.to_string();
    // Counted before the hash, in one step: concurrent attempts cannot all pass.
    if let Some(wait) = state.limiter.login_attempt(&account, &address).await? {
        return Err(AppError::rate_limited(wait));
    }
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    if !verify_password(password, hash).await? {
        tracing::info!("login failed");
        return Err(AppError::new(
            Code::InvalidCredentials,
            "wrong email, username or password",
        ));
    }
    let Some(user) = user else {
        return Err(AppError::new(
            Code::InvalidCredentials,
            "wrong email, username or password",
        ));
    };
    if let Err(e) = state.limiter.login_succeeded(&account, &address).await {
        tracing::debug!(error = %e, "login attempts not forgiven");
    }
    // Told only to whoever knows the password.
    if user.banned {
        tracing::info!(user_id = %user.id, "login of a banned user refused");
        return Err(AppError::new(Code::Forbidden, "this account is banned"));
    }
    tracing::info!(user_id = %user.id, since = %user.created_at, "user logged in");
    signed_in_from(&state, user.id, client).await;
    Ok(Json(sign_in(
        &state,
        &cookies,
        &user.public(),
        "logged in",
    )?))
}

async fn guest(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    cookies: Cookies,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> AppResult<(StatusCode, Json<Value>)> {
    let body = body.map_err(|_| {
        AppError::invalid(format!(
            "the body could not be read (at most {} bytes)",
            super::MAX_BODY_BYTES
        ))
    })?;
    // The body is optional: none at all means "pick a name for me".
    let body: GuestBody = if body.iter().all(u8::is_ascii_whitespace) {
        GuestBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| AppError::invalid("the body must be a JSON object {username?}"))?
    };
    // A name that breaks the rules costs nothing; every attempt to create one counts.
    let requested = body
        .username
        .as_deref()
        .map(validate::username)
        .transpose()?;
    // A user banned a moment ago is not back at once as a guest from the same address. A
    // loopback address is a local proxy whose clients are not told apart (no TRUSTED_PROXIES):
    // one ban must not keep every guest out.
    if !address.is_loopback()
        && users::address_banned(&state.db, &address.to_string(), BANNED_ADDRESS_SECS).await?
    {
        return Err(AppError::new(
            Code::Forbidden,
            "guests cannot sign in from this address for now: an account banned here used it",
        ));
    }
    let cap = state.config.guests_per_address_per_hour;
    if let Some(wait) = state
        .limiter
        .guest_created(&address.to_string(), cap)
        .await?
    {
        return Err(AppError::rate_limited(wait));
    }
    let user = match requested {
        Some(name) => users::insert(&state.db, &name, None, None)
            .await
            .conflict_on_unique("that username is already taken (or looks like a taken one)")?,
        None => insert_random_guest(&state).await?,
    };
    tracing::info!(user_id = %user.id, "guest signed in");
    signed_in_from(&state, user.id, address).await;
    let body = sign_in(&state, &cookies, &user, "signed in as a guest")?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// A guest named `guest-xxxx`, with a longer suffix if short ones keep colliding.
async fn insert_random_guest(state: &AppState) -> AppResult<PublicUser> {
    for len in [4, 4, 6, 8, 12] {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("guest-{}", &suffix[..len]);
        if let Some(user) = users::insert(&state.db, &name, None, None)
            .await
            .none_on_unique()?
        {
            return Ok(user);
        }
    }
    Err(AppError::new(
        Code::Conflict,
        "could not find a free guest name, try again",
    ))
}

async fn logout(State(state): State<AppState>, cookies: Cookies) -> AppResult<Json<Value>> {
    if let Some(token) = cookies.get(COOKIE_NAME).map(|c| c.value().to_owned()) {
        // A Redis failure here is a 503: the client must not believe it is logged out while
        // the token still works.
        if let Ok(claims) = state.sessions.decode(&token) {
            state.sessions.revoke(&claims).await?;
            // The session's open sockets end too: here at once, on the other instances when
            // the instruction reaches them.
            state
                .delivery
                .disconnect_local(crate::realtime::rooms::session_room(claims.jti))
                .await;
            let end = Instruction::DisconnectSession {
                session: claims.jti,
            };
            if let Err(e) = instructions::send(&state.db, &end).await {
                tracing::warn!(error = %e, "logout not sent to the other instances");
            }
            tracing::info!(user_id = %claims.sub, "user logged out");
        }
    }
    let mut removal = Cookie::build((COOKIE_NAME, "")).path("/").build();
    removal.make_removal();
    cookies.add(removal);
    Ok(Json(json!({ "message": "logged out" })))
}

/// The signed-in user, and whether they administer this deployment (`ADMIN_USERS`).
#[derive(serde::Serialize)]
struct Me {
    #[serde(flatten)]
    user: PublicUser,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    admin: bool,
}

async fn me(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Me>> {
    let admin = state.config.is_admin(&user.username, user.guest);
    users::find(&state.db, user.id)
        .await?
        .map(|user| Json(Me { user, admin }))
        .ok_or_else(AppError::unauthorized)
}
