//! An object store that misbehaves on purpose: it wraps another `ObjectStore` and, for a seeded
//! share of its reads, writes and copies, waits before answering or fails with a store error (as
//! an overloaded or failing S3 endpoint would). Listing and deletion pass through untouched.
//!
//! Each operation draws from one counter-based stream (`draw`), so a sequence of operations meets
//! the same faults whatever the wall clock. Depends only on object_store.

use async_trait::async_trait;
use futures_core::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What share of operations fail or wait, and how long a wait is.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct StoreFaults {
    pub seed: u64,
    /// Share of operations answered with an injected error, in [0, 1].
    pub error_share: f64,
    /// Share of operations that wait `delay` first, in [0, 1].
    pub delay_share: f64,
    pub delay: Duration,
}

impl StoreFaults {
    /// Whether any operation can be affected.
    pub fn any(&self) -> bool {
        self.error_share > 0.0 || (self.delay_share > 0.0 && !self.delay.is_zero())
    }
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: StoreFaults,
    operations: AtomicU64,
}

/// SplitMix64's finaliser: a well-mixed 64-bit value of `value`.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// A uniform number in [0, 1) from a mixed value.
fn unit(value: u64) -> f64 {
    (value >> 11) as f64 / (1u64 << 53) as f64
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, faults: StoreFaults) -> FaultyStore {
        FaultyStore {
            inner,
            faults,
            operations: AtomicU64::new(0),
        }
    }

    /// The next operation's fate: waits if it is delayed, then `Err` if it fails.
    async fn draw(&self, operation: &'static str) -> Result<()> {
        let count = self.operations.fetch_add(1, Ordering::Relaxed);
        let value = mix(self.faults.seed ^ mix(count.wrapping_add(1)));
        if unit(mix(value ^ 1)) < self.faults.delay_share && !self.faults.delay.is_zero() {
            tokio::time::sleep(self.faults.delay).await;
        }
        if unit(mix(value ^ 2)) < self.faults.error_share {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected failure of {operation}").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.draw("put").await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.draw("multipart put").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.draw("get").await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.draw("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// About the configured share of puts fail, the same ones for the same seed, and the
    /// objects of the others are there.
    #[test]
    fn a_seeded_share_of_operations_fails() {
        let faults = StoreFaults {
            seed: 7,
            error_share: 0.25,
            delay_share: 0.0,
            delay: Duration::ZERO,
        };
        let outcomes = |faults: StoreFaults| -> Vec<bool> {
            let store = FaultyStore::new(Arc::new(object_store::memory::InMemory::new()), faults);
            runtime().block_on(async {
                let mut outcomes = Vec::new();
                for index in 0..400 {
                    let path = Path::from(format!("object/{index}"));
                    outcomes.push(store.put(&path, PutPayload::from("x")).await.is_ok());
                }
                outcomes
            })
        };
        let first = outcomes(faults);
        let failed = first.iter().filter(|ok| !**ok).count();
        assert!((60..=140).contains(&failed), "{failed} of 400 failed");
        assert_eq!(first, outcomes(faults), "the same seed, the same faults");
        let other = outcomes(StoreFaults { seed: 8, ..faults });
        assert_ne!(first, other, "another seed, other faults");
    }

    #[test]
    fn a_delayed_operation_waits() {
        let faults = StoreFaults {
            seed: 1,
            error_share: 0.0,
            delay_share: 1.0,
            delay: Duration::from_millis(20),
        };
        let store = FaultyStore::new(Arc::new(object_store::memory::InMemory::new()), faults);
        let started = std::time::Instant::now();
        runtime()
            .block_on(store.put(&Path::from("a"), PutPayload::from("x")))
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
