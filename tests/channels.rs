//! New channel hints reach payers at once: every Ready and handed-out offer gets a new invoice
//! on the server without waiting for a timer, and never faster than the message budget allows.

mod common;

use std::collections::HashSet;
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::{AsyncOffersClient, ChannelHint, Event, ManualClock};
use async_offers_server::{check_invoice_for_offer, Payer, RunningServer};
use common::*;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::IntroductionNode;
use lightning::offers::offer::Offer;

fn hint(lsp_secret: u8, short_channel_id: u64, fee_base_msat: u32) -> ChannelHint {
    let secret = SecretKey::from_slice(&[lsp_secret; 32]).unwrap();
    ChannelHint {
        lsp_node_id: PublicKey::from_secret_key(&Secp256k1::new(), &secret),
        short_channel_id,
        fee_base_msat,
        fee_proportional_millionths: 100,
        cltv_expiry_delta: 72,
        htlc_minimum_msat: 1_000,
        htlc_maximum_msat: 500_000_000,
    }
}

/// Collects `InvoiceRefreshed` events until `count` distinct offers were refreshed.
fn refreshed(events: &mpsc::Receiver<Event>, count: usize, within: Duration) -> HashSet<String> {
    let deadline = std::time::Instant::now() + within;
    let mut offers = HashSet::new();
    while offers.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::InvoiceRefreshed { offer_id }) => {
                offers.insert(offer_id);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    offers
}

/// Fetches each offer's static invoice as a payer and checks every payment path is `hint`'s.
async fn assert_invoices_pay_over(server: &RunningServer, offers: &[String], hint: &ChannelHint) {
    let payer = Payer::connect(
        server.identity().node_id(),
        &server.local_addr().to_string(),
        Network::Regtest,
    )
    .await
    .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    for offer in offers {
        let offer: Offer = offer.parse().unwrap();
        let fetched = payer
            .fetch_static_invoice(&offer, Duration::from_secs(10))
            .await
            .unwrap();
        check_invoice_for_offer(&offer, &fetched.invoice, now).unwrap();
        for path in fetched.invoice.payment_paths() {
            assert_eq!(
                path.introduction_node(),
                &IntroductionNode::NodeId(hint.lsp_node_id)
            );
            assert_eq!(path.payinfo.fee_base_msat, hint.fee_base_msat);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_hints_refresh_every_ready_and_handed_out_offer_at_once() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-hints", client_dir.path());
    config.offer_slots = 3;
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
    client.update_channels(vec![new_hint.clone()]);
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
    config.offer_slots = 4;
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

    client.update_channels(vec![hint(0x23, 3 << 40, 3_000)]);
    assert_eq!(refreshed(&events, 2, WAIT).len(), 2);
    // Time stands still, so the budget does too: nothing more leaves, however long we wait.
    assert!(refreshed(&events, 1, Duration::from_secs(1)).is_empty());
    clock.advance(Duration::from_secs(60));
    assert_eq!(refreshed(&events, 2, WAIT).len(), 2, "the other two follow");
    assert_payable(&server, &client.offers()).await;
}
