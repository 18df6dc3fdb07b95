//! Attachments: announcing an upload (quota, rate, size and declared type checked), receiving
//! its bytes (through banter, or straight into S3 with a presigned URL), checking what the
//! bytes are, and turning an upload into the `file` of a message.
//!
//! Every upload is an `uploads` row plus an object in the storage. The bytes are checked once
//! (sniffed type against the allowlist, image size and thumbnail) before any message may carry
//! them: at once when they come through banter, at the first `message.send` that names them
//! when they went to S3.

pub mod inspect;
pub mod storage;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::contract::FileRef;
use crate::error::{AppError, AppResult, Code, FieldError};
use crate::store::uploads::{self, Upload};
use crate::validate;
pub use storage::Storage;

/// How long an upload URL stays valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Uploads whose bytes are handled at once by one instance (each is held in memory).
const CONCURRENT_UPLOADS: usize = 8;
/// How long an upload waits for its turn before it is refused (`rate_limited`).
const PERMIT_WAIT: Duration = Duration::from_secs(5);
/// Uploads one user may have under way on an instance at once: one user cannot take every turn.
pub const IN_FLIGHT_PER_USER: usize = 2;
/// Uploads one client address may have under way on an instance at once (its users together).
pub const IN_FLIGHT_PER_ADDRESS: usize = 4;
/// The path prefix of stored files on the wire.
pub const URL_PREFIX: &str = "/uploads/";

type HmacSha256 = Hmac<Sha256>;

/// The uploads service of an instance.
pub struct Uploads {
    pub storage: Storage,
    /// Signs the upload URLs of local storage (derived from the JWT secret).
    url_key: Vec<u8>,
    /// Bounds the memory taken by uploads being received or checked.
    permits: Arc<Semaphore>,
    /// Uploads under way per user and per client address (see [`Uploads::turn`]).
    in_flight: Arc<Mutex<HashMap<Holder, usize>>>,
    pub max_bytes: u64,
    pub quota_bytes: u64,
    /// Largest image decoded for a thumbnail, in pixels.
    max_pixels: u64,
    /// The types that may be shared.
    allowed: Arc<inspect::Allowed>,
    /// The memory image decodes may hold together, in KiB: each takes its
    /// [`inspect::decode_cost`] before it starts.
    decode_budget: Arc<Semaphore>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Where and how to send an announced upload's bytes.
#[derive(Debug, Serialize)]
pub struct UploadTarget {
    pub method: &'static str,
    pub url: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub expires_at: DateTime<Utc>,
}

/// The answer to an announced upload.
#[derive(Debug, Serialize)]
pub struct Ticket {
    pub upload: UploadTarget,
    pub file: FileRef,
}

/// The key of a `/uploads/<key>` URL.
pub fn key_of(url: &str) -> Option<Uuid> {
    url.strip_prefix(URL_PREFIX)
        .and_then(|rest| Uuid::parse_str(rest).ok())
}

/// The `file` of a message carrying an upload.
pub fn file_ref(upload: &Upload) -> FileRef {
    let url = format!("{URL_PREFIX}{}", upload.key);
    let image = upload.width.is_some();
    FileRef {
        thumbnail: image.then(|| format!("{url}/thumbnail")),
        url,
        name: upload.name.clone(),
        kind: upload
            .kind
            .clone()
            .unwrap_or_else(|| upload.declared_type.clone()),
        size: Some(upload.size),
        width: upload.width,
        height: upload.height,
        key: Some(upload.key),
    }
}

impl Uploads {
    pub fn new(
        storage: Storage,
        jwt_secret: &str,
        max_bytes: u64,
        quota_bytes: u64,
        max_pixels: u64,
        allowed: inspect::Allowed,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        let mut mac = HmacSha256::new_from_slice(jwt_secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"banter upload urls v1");
        Uploads {
            storage,
            url_key: mac.finalize().into_bytes().to_vec(),
            permits: Arc::new(Semaphore::new(CONCURRENT_UPLOADS)),
            in_flight: Arc::default(),
            max_bytes,
            quota_bytes,
            max_pixels,
            allowed: Arc::new(allowed),
            decode_budget: Arc::new(Semaphore::new(
                decode_kib(inspect::decode_cost_of(max_pixels)) as usize,
            )),
            metrics,
        }
    }

    /// Takes a turn to hold an upload's bytes in memory, held until the upload is stored: at
    /// once `rate_limited` when the user (or the client address) already has its share under
    /// way, else after a bounded wait for one of the instance's turns.
    pub async fn turn(&self, user: Uuid, address: Option<IpAddr>) -> AppResult<Turn> {
        let mut holders = vec![(Holder::User(user), IN_FLIGHT_PER_USER)];
        if let Some(address) = address {
            holders.push((Holder::Address(address), IN_FLIGHT_PER_ADDRESS));
        }
        let counted = {
            let mut in_flight = self
                .in_flight
                .lock()
                .map_err(|_| AppError::new(Code::Internal, "upload turns unavailable"))?;
            let full = holders
                .iter()
                .any(|(h, cap)| in_flight.get(h).copied().unwrap_or(0) >= *cap);
            if !full {
                for (h, _) in &holders {
                    *in_flight.entry(*h).or_insert(0) += 1;
                }
            }
            !full
        };
        if !counted {
            return Err(AppError {
                message: format!(
                    "at most {IN_FLIGHT_PER_USER} uploads at once per user ({IN_FLIGHT_PER_ADDRESS} per address): wait for one to finish"
                ),
                ..AppError::rate_limited(PERMIT_WAIT.as_millis() as u64)
            });
        }
        // Counted from here: the turn gives the counts back when dropped, also on failure.
        let mut turn = Turn {
            _permit: None,
            in_flight: self.in_flight.clone(),
            holders: holders.into_iter().map(|(h, _)| h).collect(),
        };
        turn._permit = Some(self.permit().await?);
        Ok(turn)
    }

    /// Waits (a bounded time) for one of the instance's turns.
    async fn permit(&self) -> AppResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(PERMIT_WAIT, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(AppError::new(
                Code::Unavailable,
                "the server is shutting down",
            )),
            // Busy with other uploads: the client tries again a little later.
            Err(_) => Err(AppError::rate_limited(PERMIT_WAIT.as_millis() as u64)),
        }
    }

    fn signature(&self, key: Uuid, expires: i64) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.url_key).expect("any key length");
        mac.update(format!("PUT\n{key}\n{expires}").as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether a local upload URL's signature is this instance's and still valid.
    pub fn check_signature(&self, key: Uuid, expires: i64, signature: &str) -> bool {
        if expires < Utc::now().timestamp() {
            return false;
        }
        let mut mac = HmacSha256::new_from_slice(&self.url_key).expect("any key length");
        mac.update(format!("PUT\n{key}\n{expires}").as_bytes());
        let Some(given) = decode_hex(signature) else {
            return false;
        };
        mac.verify_slice(&given).is_ok()
    }

    /// Refuses an announced upload by its size or declared type, before anything is counted.
    pub fn check_announced(&self, declared_type: &str, size: u64) -> AppResult<()> {
        if size == 0 {
            return Err(FieldError {
                field: "size".into(),
                message: "the file is empty".into(),
            }
            .into());
        }
        if size > self.max_bytes {
            return Err(AppError::too_large("the file", self.max_bytes));
        }
        if !self.allowed.declared(declared_type) {
            return Err(AppError::new(
                Code::UnsupportedType,
                format!(
                    "files of type {} cannot be shared (these can: {})",
                    declared_type.chars().take(100).collect::<String>(),
                    self.allowed.described()
                ),
            ));
        }
        Ok(())
    }

    /// Records an upload of `size` bytes for `owner`, within the owner's quota.
    pub async fn record(
        &self,
        db: &PgPool,
        owner: Uuid,
        name: &str,
        declared_type: &str,
        size: u64,
    ) -> AppResult<Upload> {
        let name = validate::file_label(
            "name",
            name,
            validate::Limit::Chars(validate::MAX_FILE_NAME),
        )?;
        let declared_type = validate::file_label(
            "type",
            declared_type,
            validate::Limit::Bytes(validate::MAX_FILE_TYPE),
        )?;
        if size > self.max_bytes {
            return Err(AppError::too_large("the file", self.max_bytes));
        }
        let key = Uuid::now_v7();
        let size = size as i64;
        if !uploads::create(
            db,
            key,
            owner,
            &name,
            &declared_type,
            size,
            self.quota_bytes as i64,
        )
        .await?
        {
            return Err(self.quota_exceeded());
        }
        Ok(Upload {
            key,
            owner_id: Some(owner),
            name,
            declared_type,
            kind: None,
            size,
            width: None,
            height: None,
            ready: false,
        })
    }

    /// Where and how the bytes of a recorded upload are sent.
    pub async fn ticket(&self, upload: &Upload) -> AppResult<Ticket> {
        let expires_at = Utc::now()
            + chrono::Duration::from_std(UPLOAD_URL_TTL).unwrap_or(chrono::Duration::minutes(15));
        let url = match self
            .storage
            .presigned_put(&storage::object(upload.key), UPLOAD_URL_TTL)
            .await
            .map_err(|e| AppError::unavailable("storage", &e))?
        {
            Some(url) => url.to_string(),
            None => {
                let expires = expires_at.timestamp();
                format!(
                    "/api/uploads/{}?expires={expires}&sig={}",
                    upload.key,
                    self.signature(upload.key, expires)
                )
            }
        };
        let mut headers = serde_json::Map::new();
        headers.insert("Content-Type".into(), upload.declared_type.clone().into());
        Ok(Ticket {
            upload: UploadTarget {
                method: "PUT",
                url,
                headers,
                expires_at,
            },
            file: file_ref(upload),
        })
    }

    pub fn quota_exceeded(&self) -> AppError {
        AppError::new(
            Code::QuotaExceeded,
            format!(
                "you have used all your upload space ({} MiB): files you shared are freed as their messages expire",
                self.quota_bytes / (1024 * 1024)
            ),
        )
    }

    /// Checks an upload's bytes and stores them (with an image's thumbnail); the upload is
    /// then ready to be sent. Refused bytes leave nothing behind.
    pub async fn accept(&self, db: &PgPool, upload: &Upload, bytes: Bytes) -> AppResult<Upload> {
        self.check_size(db, upload, bytes.len() as u64).await?;
        let inspected = self.inspect_or_discard(db, upload, &bytes).await?;
        async {
            self.storage
                .put(&storage::object(upload.key), bytes.clone())
                .await?;
            self.put_thumbnail(upload.key, &inspected).await
        }
        .await
        .map_err(|e| AppError::unavailable("storage", &e))?;
        self.mark_ready(db, upload, &inspected, bytes.len() as i64)
            .await
    }

    /// Checks the bytes of an upload that went straight to the storage (S3); the thumbnail is
    /// stored beside them.
    pub async fn check_stored(&self, db: &PgPool, upload: &Upload) -> AppResult<Upload> {
        let object = storage::object(upload.key);
        let size = self
            .storage
            .size(&object)
            .await
            .map_err(|e| AppError::unavailable("storage", &e))?
            .ok_or_else(not_finished)?;
        self.check_size(db, upload, size).await?;
        let _turn = self.turn(upload.owner_id.unwrap_or_default(), None).await?;
        let bytes = async { self.storage.get(&object).await?.bytes().await }
            .await
            .map_err(|e| AppError::unavailable("storage", &e))?;
        let inspected = self.inspect_or_discard(db, upload, &bytes).await?;
        self.put_thumbnail(upload.key, &inspected)
            .await
            .map_err(|e| AppError::unavailable("storage", &e))?;
        self.mark_ready(db, upload, &inspected, bytes.len() as i64)
            .await
    }

    /// Refuses (and forgets) an upload whose bytes are more than it announced, which its
    /// owner's quota counted, or more than the size limit.
    async fn check_size(&self, db: &PgPool, upload: &Upload, size: u64) -> AppResult<()> {
        let announced = (upload.size.max(0) as u64).min(self.max_bytes);
        if size > announced {
            self.discard(db, upload.key).await?;
            return Err(AppError::too_large(
                "the file (its announced size)",
                announced,
            ));
        }
        Ok(())
    }

    /// What the bytes are (checked off the async workers); refused bytes take their upload
    /// (row and object) with them.
    async fn inspect_or_discard(
        &self,
        db: &PgPool,
        upload: &Upload,
        bytes: &Bytes,
    ) -> AppResult<inspect::Inspected> {
        let checked = self.inspect(bytes).await;
        if checked
            .as_ref()
            .is_err_and(|e| e.code != Code::RateLimited && e.code != Code::Internal)
        {
            self.discard(db, upload.key).await?;
        }
        checked
    }

    /// What the bytes are: the type and an image's size from its header, then, for an image
    /// within the pixel cap, a decode for its thumbnail once its cost fits in the instance's
    /// decode budget (a bounded wait, else `rate_limited`).
    async fn inspect(&self, bytes: &Bytes) -> AppResult<inspect::Inspected> {
        let failed = || AppError::new(Code::Internal, "the file could not be checked");
        let probed = {
            let (bytes, allowed) = (bytes.clone(), self.allowed.clone());
            tokio::task::spawn_blocking(move || inspect::probe(&bytes, &allowed))
                .await
                .map_err(|_| failed())??
        };
        let Some((width, height)) = probed.size else {
            return Ok(inspect::Inspected {
                kind: probed.kind,
                width: None,
                height: None,
                thumbnail: None,
            });
        };
        inspect::check_pixels(width, height, self.max_pixels)?;
        let cost = inspect::decode_cost(width, height);
        let budget = self
            .decode_budget
            .clone()
            .acquire_many_owned(decode_kib(cost));
        let held = match tokio::time::timeout(PERMIT_WAIT, budget).await {
            Ok(Ok(held)) => held,
            Ok(Err(_)) => return Err(failed()),
            Err(_) => {
                return Err(AppError {
                    message: "other images are being checked: try again in a few seconds".into(),
                    ..AppError::rate_limited(PERMIT_WAIT.as_millis() as u64)
                })
            }
        };
        let thumbnail = {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || {
                let thumbnail = inspect::thumbnail(&bytes, (width, height));
                drop(held);
                thumbnail
            })
            .await
            .map_err(|_| failed())??
        };
        Ok(inspect::Inspected {
            kind: probed.kind,
            width: Some(width),
            height: Some(height),
            thumbnail: Some(thumbnail),
        })
    }

    /// Forgets an upload that no message carries, and its object.
    async fn discard(&self, db: &PgPool, key: Uuid) -> AppResult<()> {
        uploads::delete_unreferenced(db, &[key]).await?;
        let _ = self.storage.delete(&storage::object(key)).await;
        Ok(())
    }

    /// Stores an image's thumbnail beside it.
    async fn put_thumbnail(
        &self,
        key: Uuid,
        inspected: &inspect::Inspected,
    ) -> object_store::Result<()> {
        match &inspected.thumbnail {
            Some(thumb) => {
                self.storage
                    .put(&storage::thumbnail(key), Bytes::from(thumb.clone()))
                    .await
            }
            None => Ok(()),
        }
    }

    async fn mark_ready(
        &self,
        db: &PgPool,
        upload: &Upload,
        inspected: &inspect::Inspected,
        size: i64,
    ) -> AppResult<Upload> {
        let (width, height) = (
            inspected.width.map(|w| w as i32),
            inspected.height.map(|h| h as i32),
        );
        uploads::mark_ready(db, upload.key, &inspected.kind, size, width, height).await?;
        self.metrics.uploads_stored.inc();
        self.metrics.upload_bytes.inc_by(size.max(0) as u64);
        Ok(Upload {
            kind: Some(inspected.kind.clone()),
            size,
            width,
            height,
            ready: true,
            ..upload.clone()
        })
    }

    /// The `file` of a message: an upload of the sender's (checked now if its bytes went
    /// straight to S3), or a link to elsewhere as given.
    pub async fn resolve(&self, db: &PgPool, sender: Uuid, file: FileRef) -> AppResult<FileRef> {
        let Some(key) = key_of(&file.url) else {
            return Ok(file);
        };
        let not_yours = || {
            AppError::from(FieldError {
                field: "file.url".into(),
                message: "not one of your uploads".into(),
            })
        };
        let upload = uploads::find(db, key).await?.ok_or_else(not_yours)?;
        if upload.owner_id != Some(sender) {
            return Err(not_yours());
        }
        let upload = if upload.ready {
            upload
        } else if self.storage.presigns() {
            self.check_stored(db, &upload).await?
        } else {
            return Err(not_finished());
        };
        Ok(file_ref(&upload))
    }

    /// Removes the objects of uploads whose rows are gone.
    pub async fn delete_objects(&self, keys: &[Uuid]) {
        for &key in keys {
            for path in [storage::object(key), storage::thumbnail(key)] {
                if let Err(e) = self.storage.delete(&path).await {
                    tracing::warn!(%key, error = %e, "cannot delete a stored file");
                }
            }
        }
    }
}

/// Who an upload under way is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Holder {
    User(Uuid),
    Address(IpAddr),
}

/// An upload's turn: one of the instance's turns, counted against its user and address until
/// it is dropped.
pub struct Turn {
    _permit: Option<OwnedSemaphorePermit>,
    in_flight: Arc<Mutex<HashMap<Holder, usize>>>,
    holders: Vec<Holder>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            for h in &self.holders {
                if let Some(n) = in_flight.get_mut(h) {
                    *n -= 1;
                    if *n == 0 {
                        in_flight.remove(h);
                    }
                }
            }
        }
    }
}

/// A decode cost in KiB, as semaphore permits.
fn decode_kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// `file.url` names an upload whose bytes have not arrived.
fn not_finished() -> AppError {
    FieldError {
        field: "file.url".into(),
        message: "the file's upload has not finished".into(),
    }
    .into()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls() {
        let key = Uuid::now_v7();
        assert_eq!(key_of(&format!("/uploads/{key}")), Some(key));
        assert_eq!(key_of(&format!("/uploads/{key}/thumbnail")), None);
        assert_eq!(key_of("/uploads/a.png"), None);
        assert_eq!(key_of(&format!("https://x/uploads/{key}")), None);
    }

    #[test]
    fn signatures() {
        let storage = Storage::open(
            std::env::temp_dir()
                .join("banter-signature-test")
                .to_str()
                .unwrap(),
            None,
        )
        .unwrap();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let uploads = Uploads::new(
            storage,
            "secret",
            10,
            10,
            1000,
            inspect::Allowed::default(),
            metrics,
        );
        let key = Uuid::now_v7();
        let later = Utc::now().timestamp() + 60;
        let sig = uploads.signature(key, later);
        assert!(uploads.check_signature(key, later, &sig));
        assert!(!uploads.check_signature(key, later + 1, &sig));
        assert!(!uploads.check_signature(Uuid::now_v7(), later, &sig));
        assert!(!uploads.check_signature(key, later, "zz"));
        let past = Utc::now().timestamp() - 1;
        let old = uploads.signature(key, past);
        assert!(!uploads.check_signature(key, past, &old));
    }
}
