//! Filling offers from the reference server over 127.0.0.1, and what survives a restart.

mod common;

use std::collections::HashSet;

use async_offers::{Error, OfferState};
use common::*;
use lightning::blinded_path::IntroductionNode;
use lightning::offers::offer::Offer;

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
    config.offer_slots = 3;

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
    config.offer_slots = 4;
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
    config.offer_slots = 50;
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
