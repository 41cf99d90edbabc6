//! New channel hints reach payers at once: every Ready and handed-out offer gets a new invoice
//! on the server without waiting for a timer, and never faster than the message budget allows.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_offers::{AsyncOffersClient, ManualClock};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_hints_refresh_every_ready_and_handed_out_offer_at_once() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-hints", client_dir.path());
    config.ready_offer_target = 3;
    config.channel_hints = vec![hint(0x21, 1 << 40, 1_000)];
    // No timer runs during the test: whatever is refreshed is refreshed by update_channels.
    config.tick_interval = Duration::from_secs(3600);
    let client = client(config);
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(3, WAIT).await.unwrap();
    let handed_out = client.take_offer(Some("shop".into())).unwrap();
    client.wait_for_ready_offers(3, WAIT).await.unwrap();
    let offers: Vec<String> = client.offers().into_iter().map(|o| o.offer).collect();
    assert_eq!(offers.len(), 4);
    assert!(offers.contains(&handed_out.offer));

    let new_hint = hint(0x22, 2 << 40, 2_500);
    client.update_channels(vec![new_hint.clone()]).unwrap();
    let ids: HashSet<String> = client.offers().into_iter().map(|o| o.offer_id).collect();
    assert_eq!(refreshed(&events, 4, WAIT), ids);
    assert_invoices_pay_over(&server, &offers, &new_hint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_beyond_the_message_budget_wait_for_it() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-budget", client_dir.path());
    config.ready_offer_target = 4;
    // Filling takes 8 messages, so 2 are left for the 4 refreshes.
    config.max_messages_per_minute = 10;
    let clock = Arc::new(ManualClock::starting_now());
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock.clone())
        .build()
        .unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(4, WAIT).await.unwrap();

    client
        .update_channels(vec![hint(0x23, 3 << 40, 3_000)])
        .unwrap();
    assert_eq!(refreshed(&events, 2, WAIT).len(), 2);
    // Time stands still, so the budget does too: nothing more leaves, however long we wait.
    assert!(refreshed(&events, 1, Duration::from_secs(1)).is_empty());
    clock.advance(Duration::from_secs(60));
    assert_eq!(refreshed(&events, 2, WAIT).len(), 2, "the other two follow");
    assert_payable(&server, &client.offers()).await;
}
