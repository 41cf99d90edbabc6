//! `sync`: a short background window's work (fill, refresh, written) done before a deadline,
//! from a client that is not started, with a report of what is left and why.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, OfferState};
use common::*;
use lightning_persister::fs_store::FilesystemStore;

/// How long an iOS background refresh task may run.
const WINDOW: Duration = Duration::from_secs(30);

/// The data dir's offers as another process would find them after the sync returned.
fn offers_on_disk(config: &async_offers::Config) -> Vec<async_offers::OfferInfo> {
    AsyncOffersClient::builder(config.clone(), SEED)
        .store(std::sync::Arc::new(FilesystemStore::new(
            config.data_dir.clone(),
        )))
        .data_dir_lock_wait(Duration::from_secs(10))
        .build()
        .unwrap()
        .offers()
}

/// A client that was never started fills its offers in one sync, and the sync returns only
/// once every Ready offer is on disk, however slow the disk; then it is stopped again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_fills_a_client_not_started_and_returns_once_all_is_written() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-sync-fill", client_dir.path());
    config.ready_offer_target = 3;
    let store = FaultyStore::slow(client_dir.path(), Duration::from_millis(200));
    let client = builder(config.clone())
        .store(store.clone())
        .build()
        .unwrap();

    let report = client.sync(WINDOW).await.unwrap();
    assert_eq!(
        store.writes_under_way(),
        0,
        "a record was still being written"
    );
    // What iOS requires of an app about to be suspended: no lock held on the data dir.
    let lock = std::fs::File::open(client_dir.path().join("async-offers.lock")).unwrap();
    assert!(lock.try_lock().is_ok(), "the sync let go of the data dir");
    drop(lock);
    assert!(report.complete, "{report:?}");
    assert_eq!((report.ready_offers, report.wanted_offers), (3, 3));
    assert!(report.unfinished.is_empty(), "{report:?}");
    assert!(report.elapsed < WINDOW);
    assert!(
        !client.status().running,
        "the sync started it, and stops it"
    );

    let on_disk = offers_on_disk(&config);
    assert_eq!(on_disk.len(), 3);
    assert!(on_disk.iter().all(|o| o.state == OfferState::Ready));
    assert_payable(&server, &on_disk).await;
}

/// Handed-out offers whose invoices are due get fresh ones in a sync, which returns once the
/// server confirmed each and the confirmations are on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_refreshes_due_invoices_and_returns_once_their_confirmations_are_written() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-sync-refresh", client_dir.path());
    config.ready_offer_target = 2;
    config.invoice_refresh_interval = Duration::from_secs(2);
    let store = FaultyStore::new(client_dir.path());
    let client = builder(config.clone())
        .store(store.clone())
        .build()
        .unwrap();
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let handed_out: Vec<_> = ["alice", "bob"]
        .iter()
        .map(|label| client.offer_for(label).unwrap())
        .collect();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    client.stop();
    // Both invoices come due while the app is away.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    store.set_write_delay(Duration::from_millis(300));

    let report = client.sync(WINDOW).await.unwrap();
    assert_eq!(
        store.writes_under_way(),
        0,
        "a record was still being written"
    );
    // What iOS requires of an app about to be suspended: no lock held on the data dir.
    let lock = std::fs::File::open(client_dir.path().join("async-offers.lock")).unwrap();
    assert!(lock.try_lock().is_ok(), "the sync let go of the data dir");
    drop(lock);
    assert!(report.complete, "{report:?}");
    assert_eq!(report.refreshed, 2, "{report:?}");
    assert!(!client.status().running);

    let on_disk = offers_on_disk(&config);
    for offer in &handed_out {
        let stored = on_disk
            .iter()
            .find(|o| o.offer_id == offer.offer_id)
            .unwrap();
        assert!(
            stored.invoice_confirmed_at > offer.invoice_confirmed_at,
            "the refresh's confirmation of {:?} is on disk",
            offer.label
        );
    }
}

/// With the server unreachable, a sync returns by its timeout, says what is missing and why,
/// and leaves the client stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_finish_returns_by_its_timeout_and_says_why() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-sync-away", client_dir.path());
    config.ready_offer_target = 2;
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = client(config);

    let began = Instant::now();
    let report = client.sync(Duration::from_secs(2)).await.unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "it returned early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2_500),
        "it returned late: {took:?}"
    );
    assert!(!report.complete);
    assert_eq!(report.ready_offers, 0);
    let [unfinished] = &report.unfinished[..] else {
        panic!("one server, one reason: {report:?}");
    };
    assert_eq!(unfinished.offer_id, None);
    assert!(
        unfinished.reason.starts_with("0 of 2 offers Ready: "),
        "{}",
        unfinished.reason
    );
    assert!(!client.status().running);
}

/// A confirmation that could not be written is not counted, nor kept: the offer is Pending
/// again and its invoice sent again, and once the disk has room the next confirmation is
/// written and the sync completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_that_could_not_be_written_is_asked_for_again() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-sync-full", client_dir.path());
    config.ready_offer_target = 1;
    let store = FaultyStore::new(client_dir.path());
    store.full.store(true, Ordering::SeqCst);
    let client = builder(config.clone())
        .store(store.clone())
        .build()
        .unwrap();

    let report = client.sync(Duration::from_secs(3)).await.unwrap();
    assert!(!report.complete);
    assert_eq!(report.ready_offers, 0);
    assert!(
        report.unfinished[0]
            .reason
            .contains("no space left on device"),
        "{report:?}"
    );
    assert!(client.ready_offers().is_empty(), "nothing on disk is Ready");
    assert_eq!(client.offers()[0].state, OfferState::Pending);

    store.full.store(false, Ordering::SeqCst);
    let report = client.sync(WINDOW).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(offers_on_disk(&config).len(), 1);
}

/// A sync whose future is dropped (its window ended) stops the client it started; a start
/// during a sync makes the client the app's, left running after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sync_stops_what_it_started_and_a_start_during_one_keeps_running() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-sync-drop", client_dir.path());
    config.ready_offer_target = 2;
    let client = client(config);

    let cut_short = tokio::time::timeout(Duration::from_millis(5), client.sync(WINDOW)).await;
    assert!(cut_short.is_err(), "a fill takes longer than 5 ms");
    assert!(!client.status().running, "the dropped sync stopped it");

    let (report, ()) = tokio::join!(client.sync(WINDOW), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.start().unwrap();
    });
    assert!(report.unwrap().complete);
    assert!(
        client.status().running,
        "started by the app during the sync"
    );
    let ids: HashSet<_> = client.ready_offers().into_iter().map(|o| o.slot).collect();
    assert_eq!(ids.len(), 2);
}

/// No time limit means no limit: a sync given `Duration::MAX` (Kotlin's `Duration.INFINITE`,
/// Swift's `.infinity`, which their layers pass on as the longest duration) runs until its work
/// is done. It panicked adding the timeout to the start time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_without_a_time_limit_runs_until_its_work_is_done() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let client_dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet-sync-unlimited", client_dir.path());
    config.ready_offer_target = 2;
    let client = builder(config).build().unwrap();
    let sync = tokio::spawn(async move { client.sync(Duration::MAX).await });
    let report = tokio::time::timeout(WAIT, sync)
        .await
        .expect("the work is done well within the test's wait")
        .expect("no panic")
        .unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.ready_offers, 2);
}
