//! Filling offers from the reference server over 127.0.0.1, and what survives a restart.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, Error, OfferState};
use common::*;
use lightning::blinded_path::IntroductionNode;
use lightning::offers::offer::Offer;
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

/// Offers count as ready for a wait only once written: an app that stops as soon as its wait
/// returns finds every one of them at its next start, however slow its storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_a_wait_returns_are_on_disk_even_when_writes_are_slow() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-slow-disk", client_dir.path());
    config.ready_offer_target = 3;
    let store = |dir: &std::path::Path| FilesystemStore::new(dir.to_path_buf());
    let client = AsyncOffersClient::builder(config.clone(), SEED)
        .runtime(tokio::runtime::Handle::current())
        .store(FaultyStore::slow(
            client_dir.path(),
            Duration::from_millis(200),
        ))
        .build()
        .unwrap();
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(3, WAIT).await.unwrap();
    client.stop();

    // At once, on disk: a new client on the dir would wait for writes still under way.
    let records = store(client_dir.path())
        .list("async_offers", "offers")
        .unwrap();
    assert_eq!(
        records.len(),
        ready.len(),
        "records on disk when the wait returned"
    );
    let reopened = AsyncOffersClient::builder(config, SEED)
        .store(Arc::new(store(client_dir.path())))
        .build()
        .unwrap();
    let on_disk: HashSet<String> = reopened
        .ready_offers()
        .into_iter()
        .map(|o| o.offer)
        .collect();
    assert_eq!(on_disk, ready.into_iter().map(|o| o.offer).collect());
}

/// A hand-out is durable before it returns, but nothing else waits for its write: while the
/// slow disk takes the handed-out record, the client still answers (and its messages are
/// still handled, under the same lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_out_being_written_holds_up_nothing_else() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-slow-hand-out", client_dir.path());
    config.ready_offer_target = 2;
    let store = FaultyStore::slow(client_dir.path(), Duration::from_millis(200));
    let client = Arc::new(
        AsyncOffersClient::builder(config, SEED)
            .runtime(tokio::runtime::Handle::current())
            .store(store.clone())
            .build()
            .unwrap(),
    );
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let before = store.writes_begun.load(Ordering::SeqCst);
    let taking = {
        let client = client.clone();
        std::thread::spawn(move || client.take_offer(Some("slow".into())))
    };
    let deadline = Instant::now() + WAIT;
    while store.writes_begun.load(Ordering::SeqCst) == before {
        assert!(Instant::now() < deadline, "the hand-out never wrote");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The record's write has begun and takes 200 ms; the client answers meanwhile.
    let offers = client.offers();
    assert!(
        !taking.is_finished(),
        "offers() waited for the hand-out's write"
    );
    assert!(offers.iter().any(|o| o.label.as_deref() == Some("slow")));
    let taken = taking.join().unwrap().unwrap();
    assert_eq!(taken.label.as_deref(), Some("slow"));
}

/// A client built on a data dir sees what a stopped client there was still writing: building
/// waits for that write instead of loading without it. Loading early, the new client would
/// refill the slot, and the old write landing after the new one would name an offer whose
/// invoice the server no longer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_on_a_data_dir_waits_for_the_writes_of_the_client_before_it() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-handover", client_dir.path());
    config.ready_offer_target = 1;
    let slow = FaultyStore::slow(client_dir.path(), Duration::from_millis(200));
    let client = AsyncOffersClient::builder(config.clone(), SEED)
        .runtime(tokio::runtime::Handle::current())
        .store(slow.clone())
        .build()
        .unwrap();
    client.start().unwrap();
    let deadline = Instant::now() + WAIT;
    while slow.writes_begun.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no record write began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.stop();
    drop(client);

    // The Ready record is still being written.
    let next = AsyncOffersClient::builder(config, SEED)
        .store(Arc::new(FilesystemStore::new(
            client_dir.path().to_path_buf(),
        )))
        .build()
        .unwrap();
    assert_eq!(
        next.ready_offers().len(),
        1,
        "the offer whose record the stopped client was writing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_offers_become_ready_and_are_listed_after_a_restart_before_any_network() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let config = config_for(&server, b"wallet-1", client_dir.path());

    let client = client(config.clone());
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(10, WAIT).await.unwrap();
    assert_eq!(ready.len(), 10);
    let slots: HashSet<u16> = ready.iter().map(|o| o.slot).collect();
    assert_eq!(slots.len(), 10, "one slot per offer");
    assert!(ready.iter().all(|o| o.offer.starts_with("lno1")));
    client.stop();
    drop(client);

    // The server is gone; the offers are still there, Ready, straight from disk.
    server.stop();
    let restarted = common::client(config);
    let listed = restarted.ready_offers();
    let before: HashSet<String> = ready.iter().map(|o| o.offer_id.clone()).collect();
    let after: HashSet<String> = listed.iter().map(|o| o.offer_id.clone()).collect();
    assert_eq!(before, after);
    assert!(listed.iter().all(|o| o.state == OfferState::Ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_offer_never_returns_the_same_offer_twice_across_restarts() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-2", client_dir.path());
    config.ready_offer_target = 3;

    let fresh = client(config.clone());
    assert_eq!(
        fresh.take_offer(None),
        Err(Error::NoReadyOffer),
        "a clear error before any offer is ready"
    );
    drop(fresh);

    let mut seen = HashSet::new();
    for round in 0..2 {
        let client = client(config.clone());
        client.start().unwrap();
        client.wait_for_ready_offers(3, WAIT).await.unwrap();
        for _ in 0..3 {
            let offer = client.take_offer(Some(format!("round {round}"))).unwrap();
            assert_eq!(offer.state, OfferState::Used);
            assert!(
                seen.insert(offer.offer_id.clone()),
                "offer handed out twice"
            );
        }
        client.stop();
    }
    let client = client(config);
    let used: Vec<_> = client
        .offers()
        .into_iter()
        .filter(|o| o.state == OfferState::Used)
        .collect();
    assert_eq!(used.len(), 6, "handed-out offers are kept");
    assert!(used
        .iter()
        .all(|o| o.label.as_deref().is_some_and(|l| l.starts_with("round"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_server_paths_named_by_channel_fill_and_serve_payers() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let mut options = server_options(server_dir.path(), "127.0.0.1:0");
    // As a public LDK node does: its paths name it by a short channel id, not a node id.
    options.compact_scid = Some(0x0001_2300_0004_0001);
    let server = start_server_with(options).await;
    let mut config = config_for(&server, b"wallet-compact", client_dir.path());
    config.ready_offer_target = 4;
    assert!(
        config.servers[0].paths.iter().all(|path| matches!(
            path.introduction_node(),
            IntroductionNode::DirectedShortChannelId(..)
        )),
        "the server hands out compact paths"
    );

    let client = client(config);
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(4, WAIT).await.unwrap();
    for info in &ready {
        let offer: Offer = info.offer.parse().unwrap();
        assert!(
            offer.paths().iter().all(|path| matches!(
                path.introduction_node(),
                IntroductionNode::DirectedShortChannelId(..)
            )),
            "offers carry the server's compact paths"
        );
    }
    assert_payable(&server, &ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_offers_at_once_fill_without_a_message_lost_to_a_full_buffer() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-fifty", client_dir.path());
    config.ready_offer_target = 50;
    // Time stands still: nothing is resent on a timer, so every request and invoice has to get
    // through the first time (LDK drops what does not fit in a peer's 256 KiB buffer).
    let client = async_offers::AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(std::sync::Arc::new(
            async_offers::ManualClock::starting_now(),
        ))
        .build()
        .unwrap();
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(50, WAIT).await.unwrap();
    let slots: HashSet<u16> = ready.iter().map(|o| o.slot).collect();
    assert_eq!(slots.len(), 50);
}
