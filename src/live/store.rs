//! Object stores for snapshots, deltas and the snapshot pointer, through the `object_store` crate.
//!
//! `memory://` (the embedded default), `file:///DIR` and `s3://BUCKET` (the crate's standard
//! environment: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`; path-style requests; a short retry). Snapshots and deltas are immutable objects
//! written create-if-absent. The pointer is promoted in one of three ways:
//! - `CompareAndSwap`: a conditional overwrite of one object (`If-Match` its etag), where the store
//!   has one (memory, S3);
//! - `Generations`: one immutable object per promotion, `pointer/generation/<n>`, written
//!   create-if-absent; the highest generation is the pointer. Needs only create-if-absent, which local
//!   files have (their conditional overwrite is not implemented);
//! - `Overwrite`: a plain put, as the built pipeline does; concurrent writers can lose updates.
//!
//! A store that accepts a conditional write and ignores its condition (rclone's S3 server) makes
//! `CompareAndSwap` lose updates: this module reports what the store answered and never hides it.
//!
//! Depends only on object_store (and bytes, its buffer type) and `faulty_store`.

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The key of the pointer object (`CompareAndSwap`, `Overwrite`).
pub const POINTER_KEY: &str = "pointer/current";
/// The folder of generation objects (`Generations`).
pub const GENERATIONS_PREFIX: &str = "pointer/generation";
/// Generation numbers are written zero-padded to this many digits, so names sort as numbers.
const GENERATION_DIGITS: usize = 20;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Promotion {
    CompareAndSwap,
    Generations,
    Overwrite,
}

impl Promotion {
    pub fn parse(text: &str) -> Option<Promotion> {
        match text {
            "compare_and_swap" | "cas" => Some(Promotion::CompareAndSwap),
            "generations" => Some(Promotion::Generations),
            "overwrite" => Some(Promotion::Overwrite),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct StoreError {
    /// What was being done, e.g. `put snapshot/v1`.
    pub operation: String,
    pub url: String,
    pub source: object_store::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.source.to_string();
        let mut cause = std::error::Error::source(&self.source);
        for _ in 0..8 {
            let Some(inner) = cause else { break };
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        write!(f, "store {} ({}): {text}", self.url, self.operation)
    }
}

impl std::error::Error for StoreError {}

/// The pointer as read: its value and what a promotion must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// `None` before the first promotion.
    pub value: Option<String>,
    token: Token,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Absent,
    Version(UpdateVersion),
    Generation(u64),
}

/// Whether a promotion took effect, as the store answered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Promoted {
    Won,
    /// Someone promoted since the pointer was read: read it again.
    Lost,
}

#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
    pub promotion: Promotion,
}

/// Settings of an S3 endpoint given explicitly rather than through the environment.
#[derive(Clone, Debug)]
pub struct S3Endpoint {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Store {
    /// Opens `memory://`, `file:///DIR` (created if absent) or `s3://BUCKET`, with the promotion the
    /// store supports best.
    pub fn open(url: &str) -> Result<Store, String> {
        if url == "memory://" || url == "memory" {
            return Ok(Store::new(
                Arc::new(InMemory::new()),
                url,
                Promotion::CompareAndSwap,
            ));
        }
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(format!("--store {url}: expected file:///ABSOLUTE/DIR"));
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("--store {url}: {e}"))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| format!("--store {url}: {e}"))?;
            return Ok(Store::new(Arc::new(local), url, Promotion::Generations));
        }
        if let Some(bucket) = url.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(format!("--store {url}: expected s3://BUCKET"));
            }
            let builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            return s3(builder, url);
        }
        Err(format!(
            "--store {url}: expected memory://, file:///DIR or s3://BUCKET"
        ))
    }

    /// Opens an S3 bucket at an explicit endpoint (the live tests' servers).
    pub fn open_s3(settings: &S3Endpoint) -> Result<Store, String> {
        let builder = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&settings.endpoint)
            .with_bucket_name(&settings.bucket)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_region("us-east-1");
        s3(
            builder,
            &format!("s3://{} at {}", settings.bucket, settings.endpoint),
        )
    }

    fn new(inner: Arc<dyn ObjectStore>, url: &str, promotion: Promotion) -> Store {
        Store {
            inner,
            url: url.to_string(),
            promotion,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same store seen under `prefix/`: its own pointer, snapshots and deltas.
    pub fn under(&self, prefix: &str) -> Store {
        let inner = object_store::prefix::PrefixStore::new(Arc::clone(&self.inner), prefix);
        Store {
            inner: Arc::new(inner),
            url: format!("{}/{prefix}", self.url.trim_end_matches('/')),
            promotion: self.promotion,
        }
    }

    /// The same store with `faults` injected into its operations (`faulty_store`).
    pub fn with_faults(&self, faults: super::faulty_store::StoreFaults) -> Store {
        let inner = super::faulty_store::FaultyStore::new(Arc::clone(&self.inner), faults);
        Store {
            inner: Arc::new(inner),
            url: self.url.clone(),
            promotion: self.promotion,
        }
    }

    /// The store underneath, for measuring this module's overhead over it.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn error(&self, operation: String, source: object_store::Error) -> StoreError {
        StoreError {
            operation,
            url: self.url.clone(),
            source,
        }
    }

    /// Writes an immutable object; `Ok(false)` if the key already exists (it is left unchanged).
    pub async fn put_immutable(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let options = PutOptions::from(PutMode::Create);
        let path = Path::from(key);
        match self
            .inner
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(self.error(format!("put {key}"), error)),
        }
    }

    /// Writes an object, replacing what the key held.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = Path::from(key);
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|error| self.error(format!("put {key}"), error))
    }

    /// Deletes an object; an absent key is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = Path::from(key);
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(format!("delete {key}"), error)),
        }
    }

    pub async fn get(&self, key: &str) -> Result<bytes::Bytes, StoreError> {
        let path = Path::from(key);
        let read = async { self.inner.get(&path).await?.bytes().await };
        read.await
            .map_err(|error| self.error(format!("get {key}"), error))
    }

    /// Proves the store answers: a read of the pointer (absent is an answer).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.read_pointer().await.map(|_| ())
    }

    pub async fn read_pointer(&self) -> Result<Pointer, StoreError> {
        match self.promotion {
            Promotion::CompareAndSwap | Promotion::Overwrite => self.read_pointer_object().await,
            Promotion::Generations => self.read_generation().await,
        }
    }

    async fn read_pointer_object(&self) -> Result<Pointer, StoreError> {
        let path = Path::from(POINTER_KEY);
        let result = match self.inner.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Pointer {
                    value: None,
                    token: Token::Absent,
                });
            }
            Err(error) => return Err(self.error("get pointer".to_string(), error)),
        };
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|error| self.error("get pointer".to_string(), error))?;
        Ok(Pointer {
            value: Some(String::from_utf8_lossy(&bytes).into_owned()),
            token: Token::Version(version),
        })
    }

    async fn read_generation(&self) -> Result<Pointer, StoreError> {
        let prefix = Path::from(GENERATIONS_PREFIX);
        let listing = self
            .inner
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|error| self.error("list pointer generations".to_string(), error))?;
        let highest = listing
            .objects
            .iter()
            .filter_map(|meta| meta.location.filename()?.parse::<u64>().ok())
            .max();
        let Some(generation) = highest else {
            return Ok(Pointer {
                value: None,
                token: Token::Generation(0),
            });
        };
        let bytes = self.get(&generation_key(generation)).await?;
        Ok(Pointer {
            value: Some(String::from_utf8_lossy(&bytes).into_owned()),
            token: Token::Generation(generation),
        })
    }

    /// Promotes the pointer from `read` (as returned by `read_pointer`) to `value`.
    pub async fn promote(&self, read: &Pointer, value: &str) -> Result<Promoted, StoreError> {
        let payload = PutPayload::from(value.as_bytes().to_vec());
        let (path, mode) = match (&read.token, self.promotion) {
            (_, Promotion::Overwrite) => (Path::from(POINTER_KEY), PutMode::Overwrite),
            (Token::Generation(generation), Promotion::Generations) => {
                (Path::from(generation_key(generation + 1)), PutMode::Create)
            }
            (Token::Absent, Promotion::CompareAndSwap) => {
                (Path::from(POINTER_KEY), PutMode::Create)
            }
            (Token::Version(version), Promotion::CompareAndSwap) => {
                (Path::from(POINTER_KEY), PutMode::Update(version.clone()))
            }
            (token, promotion) => panic!("pointer read as {token:?} promoted by {promotion:?}"),
        };
        match self
            .inner
            .put_opts(&path, payload, PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(Promoted::Won),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(Promoted::Lost),
            Err(error) => Err(self.error(format!("promote pointer to {value}"), error)),
        }
    }
}

fn generation_key(generation: u64) -> String {
    format!("{GENERATIONS_PREFIX}/{generation:0GENERATION_DIGITS$}")
}

fn s3(builder: object_store::aws::AmazonS3Builder, url: &str) -> Result<Store, String> {
    let backoff = object_store::BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        ..Default::default()
    };
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
        backoff,
    };
    let client = object_store::ClientOptions::new()
        .with_timeout(Duration::from_secs(30))
        .with_connect_timeout(Duration::from_secs(2));
    let loopback = builder
        .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
        .is_some_and(|endpoint| is_loopback(&endpoint));
    let mut builder = builder.with_retry(retry).with_client_options(client);
    if loopback {
        builder = builder
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true);
    }
    let store = builder.build().map_err(|e| format!("--store {url}: {e}"))?;
    Ok(Store::new(Arc::new(store), url, Promotion::CompareAndSwap))
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8333"));
        assert!(is_loopback("http://localhost:9000/"));
        assert!(!is_loopback("https://s3.eu-west-1.amazonaws.com"));
    }

    #[test]
    fn generation_keys_sort_as_numbers() {
        assert!(generation_key(9) < generation_key(10));
        assert_eq!(
            generation_key(1).len(),
            GENERATIONS_PREFIX.len() + 1 + GENERATION_DIGITS
        );
    }
}
