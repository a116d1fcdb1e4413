//! An S3-compatible object store (AWS S3, MinIO, Ceph, s3s-fs...), through the
//! `object_store` crate: large files go up in parts, reads stream to disk, and requests that
//! fail for a moment are retried with backoff before an error reaches the caller.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{local, partial_path, Key, Object, Storage, StorageError};

/// Files up to this size are sent in one request; larger ones in parts of this size.
const PART_BYTES: usize = 16 << 20;

/// Where the object store is and how to sign in (`VSR_STORAGE=s3://bucket/prefix`, the rest
/// from `VSR_S3_*` and the usual `AWS_*` variables).
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every object name (`tenant/vsr`, say); may be empty.
    pub prefix: String,
    /// The server's URL for a store other than AWS (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    /// Masked in `--print-config`.
    pub secret_access_key: Option<String>,
    /// How long a failing request is retried (with backoff) before it is an error.
    pub retry_seconds: u64,
}

impl Default for S3Config {
    fn default() -> S3Config {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            retry_seconds: 120,
        }
    }
}

impl S3Config {
    /// The bucket and prefix of an `s3://bucket/prefix` URL.
    pub fn from_url(url: &str) -> Option<S3Config> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            ..S3Config::default()
        })
    }
}

pub struct S3 {
    store: AmazonS3,
    prefix: String,
    /// `s3://bucket/prefix at endpoint`, for status pages.
    description: String,
}

/// Never prints the secret key.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "(set)"),
            )
            .field("retry_seconds", &self.retry_seconds)
            .finish()
    }
}

/// The store's own `Debug` would show its credentials: only where it is.
impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl S3 {
    pub fn open(config: &S3Config) -> Result<S3, StorageError> {
        let retry = Duration::from_secs(config.retry_seconds.max(1));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: usize::MAX,
                retry_timeout: retry,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300)),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        let at = config.endpoint.as_deref().unwrap_or("AWS");
        Ok(S3 {
            store,
            prefix: config.prefix.clone(),
            description: format!("s3://{}/{} at {at}", config.bucket, config.prefix),
        })
    }

    fn location(&self, object: &Object) -> ObjectPath {
        self.under_prefix(&object.name())
    }

    /// The object name of a stored location: below the prefix, or `None` outside it.
    fn unprefixed<'a>(&self, location: &'a ObjectPath) -> Option<&'a str> {
        match self.prefix.as_str() {
            "" => Some(location.as_ref()),
            p => location.as_ref().strip_prefix(p)?.strip_prefix('/'),
        }
    }

    fn under_prefix(&self, name: &str) -> ObjectPath {
        match self.prefix.as_str() {
            "" => ObjectPath::from(name),
            p => ObjectPath::from(format!("{p}/{name}")),
        }
    }
}

fn remote(
    action: &'static str,
    object: &Object,
) -> impl FnOnce(object_store::Error) -> StorageError {
    let object = object.name();
    move |source| StorageError::Remote {
        action,
        object,
        source,
    }
}

#[async_trait::async_trait]
impl Storage for S3 {
    fn path_of(&self, _: &Object) -> Option<std::path::PathBuf> {
        None
    }

    fn in_place(&self) -> bool {
        false
    }

    async fn put(&self, object: &Object, from: &Path) -> Result<u64, StorageError> {
        let location = self.location(object);
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(local("opening", from))?;
        let size = file.metadata().await.map_err(local("reading", from))?.len();
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)
                .await
                .map_err(local("reading", from))?;
            self.store
                .put(&location, PutPayload::from(bytes))
                .await
                .map_err(remote("storing", object))?;
            return Ok(size);
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(remote("starting the upload of", object))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = parts.abort().await;
                    return Err(local("reading", from)(e));
                }
            };
            // At most two parts in flight: memory stays flat in the file's size.
            if let Err(e) = parts.wait_for_capacity(2).await {
                let _ = parts.abort().await;
                return Err(remote("storing", object)(e));
            }
            parts.write(&buffer[..n]);
        }
        parts
            .finish()
            .await
            .map_err(remote("finishing the upload of", object))?;
        Ok(size)
    }

    async fn get(&self, object: &Object, to: &Path) -> Result<bool, StorageError> {
        let got = match self.store.get(&self.location(object)).await {
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            got => got.map_err(remote("reading", object))?,
        };
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(local("creating", parent))?;
        }
        let partial = partial_path(to);
        let written = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(local("creating", &partial))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(remote("reading", object))?;
                file.write_all(&chunk)
                    .await
                    .map_err(local("writing", &partial))?;
            }
            file.sync_all().await.map_err(local("writing", &partial))?;
            tokio::fs::rename(&partial, to)
                .await
                .map_err(local("renaming", to))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        written.map(|()| true)
    }

    async fn delete(&self, object: &Object) -> Result<(), StorageError> {
        match self.store.delete(&self.location(object)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote("removing", object)(e)),
        }
    }

    async fn work_of(&self, result: &Key) -> Result<Vec<Object>, StorageError> {
        let prefix = self.under_prefix(&Object::work_prefix(result));
        let mut listing = self.store.list(Some(&prefix));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(remote("listing", &Object::Result(result.clone())))?;
            if let Some(o) = self
                .unprefixed(&meta.location)
                .and_then(|n| Object::work_of(result, n))
            {
                found.push(o);
            }
        }
        Ok(found)
    }

    async fn stored_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<Vec<Object>, StorageError> {
        let root = match self.prefix.as_str() {
            "" => None,
            p => Some(ObjectPath::from(p)),
        };
        let mut listing = self.store.list(root.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| StorageError::Remote {
                action: "listing",
                object: self.description.clone(),
                source,
            })?;
            let written: std::time::SystemTime = meta.last_modified.into();
            let object = self.unprefixed(&meta.location).and_then(Object::parse);
            if let Some(object) = object.filter(|_| written < before) {
                found.push(object);
            }
        }
        Ok(found)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
