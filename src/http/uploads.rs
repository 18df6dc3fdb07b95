//! Attachments over HTTP.
//!
//! - `POST /api/uploads {name, type, size}`: announces an upload; the answer says where to PUT
//!   the bytes (a presigned S3 URL, or a signed banter URL with local storage).
//! - `PUT /api/uploads/{key}?expires=…&sig=…`: the bytes of an announced upload, for local
//!   storage (the signed URL is the credential, as a presigned S3 URL is).
//! - `POST /api/upload/upload` (multipart field `file`): SocketChat's one-step upload.
//! - `GET /uploads/{key}` and `GET /uploads/{key}/thumbnail`: a stored file, for its owner and
//!   for whoever may read a channel where it was sent.

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

use super::ApiJson;
use crate::auth::AuthUser;
use crate::clientip::ClientAddr;
use crate::contract::FileRef;
use crate::error::{AppError, AppResult, Code};
use crate::state::AppState;
use crate::store::uploads;
use crate::uploads::{file_ref, inspect, storage, Ticket};

/// Room for a multipart request's boundaries and headers beside the file.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// How long a file's bytes may take to arrive, at the most.
const BODY_DEADLINE: Duration = Duration::from_secs(120);
/// How fast a file's bytes must keep arriving: after [`BODY_GRACE`], at least this many bytes a
/// second on average, so that a client trickling bytes gives its turn back.
pub const MIN_BYTES_PER_SEC: u64 = 16 * 1024;
/// The start of a body, when no pace is asked for.
const BODY_GRACE: Duration = Duration::from_secs(10);

fn too_slow() -> AppError {
    AppError::invalid(format!(
        "the file arrived too slowly (at least {} KiB/s after the first {} s, all of it within {} s); try again",
        MIN_BYTES_PER_SEC / 1024,
        BODY_GRACE.as_secs(),
        BODY_DEADLINE.as_secs()
    ))
}

/// The pace a body's bytes must keep.
struct Pace {
    start: Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            start: Instant::now(),
        }
    }

    /// Waits for `next` (the next part of a body, `received` bytes in): `too_slow` once the
    /// body falls behind the pace or the deadline.
    async fn next<T>(&self, received: usize, next: impl Future<Output = T>) -> AppResult<T> {
        let earned = Duration::from_secs_f64(received as f64 / MIN_BYTES_PER_SEC as f64);
        let due = (self.start + BODY_GRACE + earned).min(self.start + BODY_DEADLINE);
        tokio::time::timeout_at(due, next)
            .await
            .map_err(|_| too_slow())
    }
}

/// `POST /api/uploads` (announcing an upload: a small JSON body, under the REST limit).
pub fn router() -> Router<AppState> {
    Router::new().route("/uploads", post(announce))
}

/// The routes that carry a file's bytes (their own body limit: the upload size).
pub fn bytes_router(max_bytes: u64) -> Router<AppState> {
    let limit = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD);
    Router::new()
        .route("/uploads/{key}", put(receive))
        .route("/upload/upload", post(multipart))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// The routes that serve stored files.
pub fn files_router() -> Router<AppState> {
    Router::new()
        .route("/uploads/{key}", get(file))
        .route("/uploads/{key}/thumbnail", get(thumbnail))
}

#[derive(Deserialize)]
struct AnnounceBody {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: u64,
}

/// Counts an upload against the user's hourly allowance.
async fn count_upload(state: &AppState, user: Uuid) -> AppResult<()> {
    let cap = state.config.uploads_per_user_per_hour;
    match state.limiter.upload_started(&user.to_string(), cap).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => Err(AppError::rate_limited(wait)),
        // Redis away: uploads still have the size limit and the quota.
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable, upload allowed");
            Ok(())
        }
    }
}

async fn announce(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<AnnounceBody>,
) -> AppResult<(StatusCode, Json<Ticket>)> {
    // Checked before counting: a refused announcement is no upload.
    state.uploads.check_announced(&body.kind, body.size)?;
    count_upload(&state, user.id).await?;
    let upload = state
        .uploads
        .record(&state.db, user.id, &body.name, &body.kind, body.size)
        .await?;
    let ticket = state.uploads.ticket(&upload).await?;
    tracing::info!(user_id = %user.id, key = %upload.key, size = body.size, "upload announced");
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[derive(Deserialize)]
struct SignedQuery {
    expires: Option<i64>,
    sig: Option<String>,
}

/// The answer of an upload whose bytes were stored.
#[derive(Serialize)]
struct Stored {
    file: FileRef,
}

async fn receive(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Path(key): Path<String>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<Stored>> {
    let refused = || {
        AppError::new(
            Code::Forbidden,
            "this upload URL is not valid or has expired",
        )
    };
    let key = Uuid::parse_str(&key).map_err(|_| AppError::not_found("upload"))?;
    let Query(q) = query.map_err(|_| refused())?;
    let (Some(expires), Some(sig)) = (q.expires, q.sig) else {
        return Err(refused());
    };
    if !state.uploads.check_signature(key, expires, &sig) {
        return Err(refused());
    }
    // Gone, or its owner banned since the URL was signed.
    let upload = uploads::awaiting_bytes(&state.db, key)
        .await?
        .ok_or_else(refused)?;
    if upload.ready {
        return Err(AppError::new(
            Code::Conflict,
            "this file was already uploaded",
        ));
    }
    // At most the announced size: the quota counted that.
    let announced = upload.size.max(0) as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > announced) {
        return Err(AppError::too_large(
            "the file (its announced size)",
            announced,
        ));
    }
    let owner = upload.owner_id.unwrap_or_default();
    let _turn = state.uploads.turn(owner, Some(address)).await?;
    let pace = Pace::new();
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = pace.next(bytes.len(), stream.next()).await? {
        let chunk = chunk.map_err(|_| AppError::invalid("the file's bytes could not be read"))?;
        if (bytes.len() + chunk.len()) as u64 > announced {
            return Err(AppError::too_large(
                "the file (its announced size)",
                announced,
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let upload = state
        .uploads
        .accept(&state.db, &upload, bytes.freeze())
        .await?;
    tracing::info!(%key, kind = ?upload.kind, size = upload.size, "upload stored");
    Ok(Json(Stored {
        file: file_ref(&upload),
    }))
}

/// A multipart error: over the size limit, or a malformed body.
fn multipart_error(e: MultipartError, max: u64) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::too_large("the file", max)
    } else {
        AppError::invalid(format!(
            "the multipart body cannot be read: {}",
            e.body_text()
        ))
    }
}

async fn multipart(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(address): ClientAddr,
    mut form: Multipart,
) -> AppResult<Json<serde_json::Value>> {
    let max = state.uploads.max_bytes;
    // The turn is taken before the body is read: it bounds the memory of bodies being read.
    let _turn = state.uploads.turn(user.id, Some(address)).await?;
    // Counted when it starts, whether or not its body ever arrives.
    count_upload(&state, user.id).await?;
    let pace = Pace::new();
    let mut found = None;
    while let Some(mut field) = pace
        .next(0, form.next_field())
        .await?
        .map_err(|e| multipart_error(e, max))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(str::to_owned)
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "file".to_owned());
        let declared = field
            .content_type()
            .map(str::to_owned)
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let mut bytes = BytesMut::new();
        while let Some(chunk) = pace
            .next(bytes.len(), field.chunk())
            .await?
            .map_err(|e| multipart_error(e, max))?
        {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(AppError::too_large("the file", max));
            }
            bytes.extend_from_slice(&chunk);
        }
        found = Some((name, declared, bytes.freeze()));
        break;
    }
    let Some((name, declared, bytes)) = found else {
        return Err(AppError::fields(vec![crate::error::FieldError {
            field: "file".into(),
            message: "send the file in a multipart field named `file`".into(),
        }]));
    };
    if bytes.is_empty() {
        return Err(AppError::invalid("the file is empty"));
    }
    let upload = store_now(&state, user.id, &name, &declared, bytes).await?;
    let file = file_ref(&upload);
    tracing::info!(user_id = %user.id, key = %upload.key, kind = ?upload.kind, size = upload.size, "file uploaded");
    // SocketChat's answer ({url, filename, type}), with what banter adds.
    let mut answer = json!({
        "url": file.url,
        "filename": file.name,
        "type": file.kind,
        "size": file.size,
    });
    if let (Some(w), Some(h), Some(t)) = (file.width, file.height, &file.thumbnail) {
        answer["width"] = json!(w);
        answer["height"] = json!(h);
        answer["thumbnail"] = json!(t);
    }
    answer["file"] = json!(file);
    Ok(Json(answer))
}

/// Records and stores an upload whose bytes are at hand.
async fn store_now(
    state: &AppState,
    owner: Uuid,
    name: &str,
    declared: &str,
    bytes: Bytes,
) -> AppResult<uploads::Upload> {
    let upload = state
        .uploads
        .record(&state.db, owner, name, declared, bytes.len() as u64)
        .await?;
    state.uploads.accept(&state.db, &upload, bytes).await
}

/// Reads a stored file the user may see.
async fn readable(state: &AppState, key: &str, user: Uuid) -> AppResult<uploads::Upload> {
    let key = Uuid::parse_str(key).map_err(|_| AppError::not_found("file"))?;
    uploads::readable(&state.db, key, user)
        .await?
        .ok_or_else(|| AppError::not_found("file"))
}

async fn file(
    State(state): State<AppState>,
    user: AuthUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    let upload = readable(&state, &key, user.id).await?;
    let kind = upload
        .kind
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let disposition = if inspect::is_image(&kind) {
        "inline"
    } else {
        "attachment"
    };
    serve(
        &state,
        &storage::object(upload.key),
        &kind,
        &content_disposition(disposition, &upload.name),
    )
    .await
}

async fn thumbnail(
    State(state): State<AppState>,
    user: AuthUser,
    Path(key): Path<String>,
) -> AppResult<Response> {
    let upload = readable(&state, &key, user.id).await?;
    if upload.width.is_none() {
        return Err(AppError::not_found("thumbnail"));
    }
    serve(
        &state,
        &storage::thumbnail(upload.key),
        "image/jpeg",
        &content_disposition("inline", &format!("{}.jpg", upload.name)),
    )
    .await
}

/// Streams an object with the headers that keep it from running anything on this origin.
async fn serve(
    state: &AppState,
    path: &object_store::path::Path,
    kind: &str,
    disposition: &str,
) -> AppResult<Response> {
    let found = match state.uploads.storage.get(path).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Err(AppError::not_found("file")),
        Err(e) => return Err(AppError::unavailable("storage", &e)),
    };
    let size = found.meta.size;
    let mut response = Body::from_stream(found.into_stream()).into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(headers, header::CONTENT_TYPE, kind);
    set(headers, header::CONTENT_LENGTH, &size.to_string());
    set(headers, header::CONTENT_DISPOSITION, disposition);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // No script, no form, no plugin, a unique origin: even a file a browser chose to render
    // runs nothing on this origin.
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
    );
    set(
        headers,
        header::CACHE_CONTROL,
        "private, max-age=86400, immutable",
    );
    set(headers, header::REFERRER_POLICY, "no-referrer");
    Ok(response)
}

/// `inline` or `attachment` with the file's name, plain ASCII and RFC 5987 UTF-8.
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ';' | '%') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn dispositions_quote_nothing_a_client_controls() {
        assert_eq!(
            content_disposition("attachment", "a\"b;c\r\n.html"),
            "attachment; filename=\"a_b_c__.html\"; filename*=UTF-8''a%22b%3Bc%0D%0A.html"
        );
        assert_eq!(
            content_disposition("inline", "été.png"),
            "inline; filename=\"_t_.png\"; filename*=UTF-8''%C3%A9t%C3%A9.png"
        );
    }
}
