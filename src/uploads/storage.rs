//! Where file bodies live: a local folder or an S3 bucket, through `object_store`, chosen by
//! `STORAGE_URL`. Objects are named by banter (`uploads/<key>`, `thumbnails/<key>.jpg`), never
//! by a client.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{GetResult, ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

/// The configured storage.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Present for S3: uploads go straight to the bucket with a presigned URL.
    signer: Option<Arc<dyn Signer>>,
    /// What the logs and the readiness answer call it (never a credential).
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The object of an upload.
pub fn object(key: Uuid) -> Path {
    Path::from(format!("uploads/{key}"))
}

/// The object of an image upload's thumbnail.
pub fn thumbnail(key: Uuid) -> Path {
    Path::from(format!("thumbnails/{key}.jpg"))
}

impl Storage {
    /// Opens `STORAGE_URL`: `s3://bucket[/prefix]`, `file:///path`, or a plain folder path
    /// (created when missing).
    pub fn open(url: &str, endpoint: Option<&str>) -> anyhow::Result<Storage> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "STORAGE_URL s3:// needs a bucket name");
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = endpoint.filter(|e| !e.trim().is_empty()) {
                builder = builder
                    .with_endpoint(endpoint.trim_end_matches('/'))
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = builder
                .build()
                .context("STORAGE_URL: cannot configure S3 (bucket, region, credentials)")?;
            let description = match endpoint.filter(|e| !e.trim().is_empty()) {
                Some(e) => format!("s3://{rest} at {e}"),
                None => format!("s3://{rest}"),
            };
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                let s3 = Arc::new(s3);
                return Ok(Storage {
                    store: s3.clone(),
                    signer: Some(s3),
                    description,
                });
            }
            let store = Arc::new(PrefixStore::new(s3, prefix));
            return Ok(Storage {
                store: store.clone(),
                signer: Some(store),
                description,
            });
        }
        let folder = match url.strip_prefix("file://") {
            Some(path) => path,
            None if url.contains("://") => {
                anyhow::bail!("STORAGE_URL must be s3://bucket/prefix, file:///path or a folder")
            }
            None => url,
        };
        anyhow::ensure!(!folder.is_empty(), "STORAGE_URL names no folder");
        std::fs::create_dir_all(folder)
            .with_context(|| format!("STORAGE_URL: cannot create the folder {folder}"))?;
        let root = std::fs::canonicalize(folder)
            .with_context(|| format!("STORAGE_URL: cannot open the folder {folder}"))?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .with_context(|| format!("STORAGE_URL: cannot use the folder {}", root.display()))?
            .with_automatic_cleanup(true);
        Ok(Storage {
            store: Arc::new(store),
            signer: None,
            description: format!("folder {}", root.display()),
        })
    }

    /// Whether uploads go straight to the storage (S3) rather than through banter.
    pub fn presigns(&self) -> bool {
        self.signer.is_some()
    }

    /// A presigned URL that lets its holder PUT one object, until it expires.
    pub async fn presigned_put(
        &self,
        path: &Path,
        expires_in: Duration,
    ) -> object_store::Result<Option<url::Url>> {
        match &self.signer {
            Some(signer) => Ok(Some(
                signer
                    .signed_url(object_store::signer::Method::PUT, path, expires_in)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    pub async fn put(&self, path: &Path, body: Bytes) -> object_store::Result<()> {
        self.store
            .put(path, PutPayload::from(body))
            .await
            .map(|_| ())
    }

    pub async fn get(&self, path: &Path) -> object_store::Result<GetResult> {
        self.store.get(path).await
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn size(&self, path: &Path) -> object_store::Result<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an object; one that is already gone is fine.
    pub async fn delete(&self, path: &Path) -> object_store::Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn description(&self) -> &str {
        &self.description
    }
}
