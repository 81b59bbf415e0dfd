//! Object stores for real: create-if-absent snapshots and pointer promotion under 16 concurrent
//! writers, in memory, on local files (generation objects), on SeaweedFS (compare-and-swap held) and
//! on rclone's S3 server (compare-and-swap accepted and ignored: updates are lost).

mod live;

use receipt_sim::live::store;

use std::sync::Arc;
use store::{Promoted, Promotion, S3Endpoint, Store};

const WRITERS: usize = 16;

/// The store behind an S3 server's variable, under a fresh prefix; `None` when skipped.
async fn s3_store(endpoint_variable: &str) -> Option<Store> {
    let endpoint = live::server_variable(endpoint_variable)?;
    let settings = S3Endpoint {
        endpoint: endpoint.clone(),
        bucket: std::env::var("RECEIPT_SIM_S3_BUCKET").unwrap_or_else(|_| "receipt-sim".into()),
        access_key_id: std::env::var("RECEIPT_SIM_S3_ACCESS_KEY_ID").unwrap_or_default(),
        secret_access_key: std::env::var("RECEIPT_SIM_S3_SECRET_ACCESS_KEY").unwrap_or_default(),
    };
    let store = Store::open_s3(&settings)
        .unwrap()
        .under(&live::unique("store"));
    match store.probe().await {
        Ok(()) => Some(store),
        Err(error) => {
            live::unavailable(&format!(
                "{endpoint_variable}={endpoint} does not answer: {error}"
            ));
            None
        }
    }
}

/// One round: every writer reads the pointer, all wait at a barrier, then all promote from what
/// they read. Returns the values whose promotion the store reported as won, and the final value.
async fn race(store: &Store) -> (Vec<String>, String) {
    let start = store.read_pointer().await.unwrap();
    assert_eq!(store.promote(&start, "start").await.unwrap(), Promoted::Won);
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        tasks.spawn(async move {
            let read = store.read_pointer().await.unwrap();
            assert_eq!(read.value.as_deref(), Some("start"));
            barrier.wait().await;
            let value = format!("writer-{writer}");
            (store.promote(&read, &value).await.unwrap(), value)
        });
    }
    let mut won = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (promoted, value) = result.unwrap();
        if promoted == Promoted::Won {
            won.push(value);
        }
    }
    let last = store.read_pointer().await.unwrap().value.unwrap();
    (won, last)
}

/// A store that holds compare-and-swap: one winner, and the pointer names it (no update lost).
async fn assert_no_update_lost(store: &Store) {
    let (won, last) = race(store).await;
    assert_eq!(won.len(), 1, "{}: winners {won:?}", store.url());
    assert_eq!(won[0], last, "{}", store.url());
}

/// Every writer retries until its promotion holds; the chain of values holds every writer once.
async fn assert_every_writer_lands(store: &Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..10 * WRITERS {
                let read = store.read_pointer().await.unwrap();
                let value = format!("{},{writer}", read.value.clone().unwrap_or_default());
                if store.promote(&read, &value).await.unwrap() == Promoted::Won {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("writer {writer} never promoted");
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let chain = store.read_pointer().await.unwrap().value.unwrap();
    let mut writers: Vec<usize> = chain
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    writers.sort_unstable();
    assert_eq!(
        writers,
        (0..WRITERS).collect::<Vec<_>>(),
        "{}: chain {chain}",
        store.url()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_compare_and_swap_loses_no_update() {
    let store = Store::open("memory://").unwrap();
    assert_eq!(store.promotion, Promotion::CompareAndSwap);
    assert_no_update_lost(&store.under("race")).await;
    assert_every_writer_lands(&store.under("chain")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_generations_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
    assert_eq!(store.promotion, Promotion::Generations);
    assert_no_update_lost(&store.under("race")).await;
    assert_every_writer_lands(&store.under("chain")).await;
    // One immutable object per promotion: one per writer.
    let generations = std::fs::read_dir(dir.path().join("chain/pointer/generation"))
        .unwrap()
        .count();
    assert_eq!(generations, WRITERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_overwrite_loses_updates_even_in_memory() {
    let mut store = Store::open("memory://").unwrap();
    store.promotion = Promotion::Overwrite;
    let (won, last) = race(&store).await;
    assert_eq!(won.len(), WRITERS, "an overwrite always reports success");
    assert!(won.contains(&last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_compare_and_swap_loses_no_update() {
    let Some(store) = s3_store("RECEIPT_SIM_S3_SEAWEED_ENDPOINT").await else {
        return;
    };
    assert_no_update_lost(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_ignores_if_match_and_loses_updates() {
    let Some(store) = s3_store("RECEIPT_SIM_S3_RCLONE_ENDPOINT").await else {
        return;
    };
    let (won, last) = race(&store).await;
    assert!(
        won.len() > 1,
        "rclone held compare-and-swap this time: winners {won:?}"
    );
    let lost = won.len() - 1;
    eprintln!(
        "rclone: {} writers told they won, {lost} of those updates lost; pointer {last}",
        won.len()
    );
    assert!(won.contains(&last));
}

#[tokio::test]
async fn snapshots_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![
        Store::open("memory://").unwrap(),
        Store::open(&format!("file://{}", dir.path().display())).unwrap(),
    ];
    stores.extend(s3_store("RECEIPT_SIM_S3_SEAWEED_ENDPOINT").await);
    for store in &stores {
        assert!(
            store
                .put_immutable("snapshot/v1", b"first".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_immutable("snapshot/v1", b"second".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(
            &store.get("snapshot/v1").await.unwrap()[..],
            b"first",
            "{}",
            store.url()
        );
    }
}
