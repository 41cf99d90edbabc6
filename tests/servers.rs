//! Several static invoice servers: each fills its share of the offers with slots of its own;
//! when one is down the others fill the cache and offers can still be taken; an offer stays
//! with the server holding its invoice, whose refreshes wait for that server to come back.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, OfferInfo, OfferState};
use async_offers_server::RunningServer;
use common::*;
use lightning::bitcoin::hex::DisplayHex;

fn hex_id(server: &RunningServer) -> String {
    server.identity().node_id().serialize().as_hex().to_string()
}

fn on<'a>(offers: &'a [OfferInfo], server_id: &str) -> Vec<&'a OfferInfo> {
    offers
        .iter()
        .filter(|o| o.server_node_id == server_id)
        .collect()
}

/// Waits until `done` holds for the client's offers.
async fn until(client: &AsyncOffersClient, what: &str, done: impl Fn(&[OfferInfo]) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done(&client.offers()) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ready_on(offers: &[OfferInfo], server_id: &str) -> usize {
    on(offers, server_id)
        .iter()
        .filter(|o| o.state == OfferState::Ready)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_outlive_a_server_going_down_and_stay_with_their_server() {
    let (a_dir, b_dir, client_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = start_server(a_dir.path()).await;
    let b = start_server(b_dir.path()).await;
    let (a_id, b_id) = (hex_id(&a), hex_id(&b));
    let b_address = b.local_addr().to_string();
    let mut config = config_for(&a, b"two-servers", client_dir.path());
    config.servers.push(server_config(&b, b"two-servers"));
    config.ready_offer_target = 4;
    let client = client(config);
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();

    // Each server fills its share, with its own slots, and serves its own offers' invoices.
    let ready = client.wait_for_ready_offers(4, WAIT).await.unwrap();
    for (server, id) in [(&a, &a_id), (&b, &b_id)] {
        let slots: HashSet<u16> = on(&ready, id).iter().map(|o| o.slot).collect();
        assert_eq!(slots.len(), 2, "two each, in slots of their own");
        let offers: Vec<OfferInfo> = on(&ready, id).into_iter().cloned().collect();
        assert_payable(server, &offers).await;
    }
    let published: Vec<OfferInfo> = (0..4)
        .map(|i| client.take_offer(Some(format!("shop {i}"))).unwrap())
        .collect();
    until(&client, "both servers refilled", |offers| {
        ready_on(offers, &a_id) == 2 && ready_on(offers, &b_id) == 2
    })
    .await;

    // b goes down: a takes over its share, and offers are still handed out, from a.
    drop(b);
    until(&client, "a holds every ready offer", |offers| {
        ready_on(offers, &a_id) == 4 && ready_on(offers, &b_id) == 0
    })
    .await;
    let taken_while_b_is_down = client.take_offer(None).unwrap();
    assert_eq!(taken_while_b_is_down.server_node_id, a_id);
    until(&client, "a refilled", |offers| ready_on(offers, &a_id) == 4).await;

    // New channels: a's offers get new invoices on a at once; b's handed-out offers stay b's
    // and get theirs when b is back.
    let new_hint = hint(7, 42, 4_321);
    client.update_channels(vec![new_hint.clone()]).unwrap();
    let on_a: HashSet<String> = client
        .offers()
        .iter()
        .filter(|o| o.server_node_id == a_id)
        .map(|o| o.offer_id.clone())
        .collect();
    assert_eq!(on_a.len(), 4 + 3, "4 Ready, 3 handed out");
    assert_eq!(refreshed(&events, on_a.len(), WAIT), on_a);
    let published_on =
        |id: &str| -> Vec<String> { on(&published, id).iter().map(|o| o.offer.clone()).collect() };
    assert_invoices_pay_over(&a, &published_on(&a_id), &new_hint).await;

    let b = start_server_with(server_options(b_dir.path(), &b_address)).await;
    let on_b: HashSet<String> = on(&published, &b_id)
        .iter()
        .map(|o| o.offer_id.clone())
        .collect();
    assert_eq!(on_b.len(), 2);
    assert_eq!(
        refreshed(&events, 2, WAIT),
        on_b,
        "b's handed-out offers, refreshed on b once it is back"
    );
    assert_invoices_pay_over(&b, &published_on(&b_id), &new_hint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_never_reachable_leaves_the_offers_to_the_others() {
    let (a_dir, b_dir, client_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = start_server(a_dir.path()).await;
    // b handed out its paths, then went away for good: nothing listens at its address.
    let b = start_server(b_dir.path()).await;
    let mut config = config_for(&a, b"one-of-two", client_dir.path());
    config.servers.insert(0, server_config(&b, b"one-of-two"));
    drop(b);
    config.ready_offer_target = 3;
    let client = client(config);
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(3, WAIT).await.unwrap();
    assert_eq!(
        on(&ready, &hex_id(&a)).len(),
        3,
        "all from the server that answers"
    );
    let taken = client.take_offer(None).unwrap();
    assert_eq!(taken.server_node_id, hex_id(&a));
    assert_payable(&a, &[taken]).await;
}
