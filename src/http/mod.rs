//! The REST API: one module per resource, merged here, plus the layers every response gets.

mod admin;
mod auth;
mod channels;
mod health;
mod metrics;
mod people;
mod presence;
mod uploads;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
use crate::error::{AppError, Code};
use crate::state::AppState;

/// Largest accepted REST request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// All routes, with their state.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(channels::router())
        .merge(presence::router())
        .merge(people::router())
        .merge(admin::router())
        .merge(uploads::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The bytes of files: their own, larger body limit.
        .merge(uploads::bytes_router(state.config.upload_max_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_foreign_origin,
        ))
        .layer(tower_cookies::CookieManagerLayer::new());
    Router::new()
        .nest("/api", api)
        .merge(uploads::files_router())
        .merge(health::router())
        .merge(metrics::router())
        .fallback(|| async { AppError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            AppError::new(Code::MethodNotAllowed, "method not allowed on this route")
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_failures,
        ))
        .with_state(state)
}

/// Counts the dependency behind every failed request (the error travels in the response).
async fn count_failures(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(error) = response.extensions().get::<AppError>() {
        state.metrics.failed(error);
    }
    response
}

/// Every error answer is JSON of the contract (`{code, message}`), also the ones that do not
/// come from banter's handlers: an extractor's rejection (a path that is not UTF-8), a body
/// over a limit, an Engine.IO refusal. A non-JSON error body (plain text, or none) is replaced
/// by the error of its status, with its text as the message.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejections are a line of text; anything longer is not shown.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let code = Code::of_status(status);
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase()
    });
    let mut answer = AppError::new(code, message).into_response();
    *answer.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        // The rejection's own headers (Allow, Retry-After, ...), but not its body's.
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// An error answer to a request that carries a body ends the connection (`Connection: close`):
/// the body may not have been read (one over its limit is refused from its start), and hyper then
/// closes the connection after the answer. Without the header a proxy keeps the connection for
/// its next request and finds it closed: nginx answers that request 502.
async fn close_after_refused_body(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0");
    let mut response = next.run(req).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Layers around everything, Socket.IO included: JSON error answers, CORS for the allowed
/// origins (with credentials) and security headers.
pub fn outer_layers(router: Router, config: &Config) -> Router {
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::CONTENT_TYPE])
        // The cursors a page of channels or history carries, readable by a client on another
        // allowed origin too.
        .expose_headers([
            header::HeaderName::from_static("x-next-after"),
            header::HeaderName::from_static("x-first-seq"),
            header::HeaderName::from_static("x-last-change"),
            header::HeaderName::from_static("x-next-before"),
        ]);
    router
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(close_after_refused_body))
        .layer(cors)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

/// A new Engine.IO session (a `/socket.io/` request without `sid`) is refused 429
/// `rate_limited` while its client address has `MAX_PENDING_SESSIONS_PER_ADDRESS` sessions that
/// have not completed an authenticated CONNECT (they close after 5 s), and 503 `unavailable`
/// while the instance drains or sheds sockets (`crate::ops::drain`).
pub async fn cap_pending_sessions(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let engine_io = req.uri().path().starts_with("/socket.io");
    let new_session = engine_io
        && !req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|p| p.starts_with("sid="));
    if engine_io && state.ops.drain.refusing_sessions() {
        // The balancer sends the handshake to another instance (HAProxy's retry-on 503 with
        // redispatch, nginx's proxy_next_upstream http_503); a client that reached this
        // instance directly retries by itself.
        if new_session {
            return draining();
        }
        // A session this instance does not hold (Engine.IO's 400 "Session ID unknown"): one
        // that the balancer moved to another instance, whose later requests still reach this
        // one (nginx hashes by address; there is no cookie to follow). Nothing was done with
        // it, so it may go to the next instance too.
        let response = next.run(req).await;
        if response.status() == axum::http::StatusCode::BAD_REQUEST {
            return draining();
        }
        return response;
    }
    if new_session {
        let address = state
            .config
            .trusted_proxies
            .client_of(req.extensions(), req.headers());
        if !state
            .membership
            .open_session(address, state.config.max_pending_sessions_per_address)
        {
            let wait = crate::realtime::CONNECT_TIMEOUT.as_millis() as u64;
            return AppError::rate_limited(wait).into_response();
        }
    }
    next.run(req).await
}

/// The answer of a draining instance to what must go to another instance.
fn draining() -> Response {
    let mut response = AppError::new(
        Code::Unavailable,
        "this instance is draining: connect again",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Cookie sessions make cross-site POSTs dangerous (CSRF): a state-changing request that
/// carries a browser Origin outside the allowlist is refused.
async fn refuse_foreign_origin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let allowed = origin
                .to_str()
                .map(|o| state.config.origin_allowed(o))
                .unwrap_or(false);
            if !allowed {
                return AppError::new(Code::ForbiddenOrigin, "this origin is not allowed")
                    .into_response();
            }
        }
    }
    next.run(req).await
}

/// `axum::Json` whose rejections are `invalid_payload` errors of the contract.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        let message = match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON (Content-Type: application/json)".to_owned()
            }
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
            JsonRejection::JsonDataError(e) => {
                format!("the body has the wrong shape: {}", e.body_text())
            }
            JsonRejection::BytesRejection(_) => {
                format!("the body could not be read (at most {MAX_BODY_BYTES} bytes)")
            }
            other => other.body_text(),
        };
        AppError::invalid(message)
    }
}
