//! What the client does when the server goes away, repeats itself or answers late, and what it
//! reports when a payer's invoice request is forwarded to it.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_offers::{
    AsyncOffersClient, Event, EventListener, InvoiceRequestTarget, ManualClock, OfferState,
};
use async_offers_server::RunningServer;
use common::*;

/// Stops the server the moment the first offer is ready, from the event thread.
struct StopServerOnFirstReady(Mutex<Option<Arc<RunningServer>>>);

impl EventListener for StopServerOnFirstReady {
    fn on_event(&self, event: Event) {
        if matches!(event, Event::OfferReady { .. }) {
            if let Some(server) = self.0.lock().unwrap().take() {
                server.stop();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_fill_and_restarted_the_client_completes() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = Arc::new(start_server(server_dir.path()).await);
    let address = server.local_addr().to_string();
    let mut config = config_for(&server, b"wallet-restart", client_dir.path());
    config.ready_offer_target = 20;
    // Time stands still, so nothing is resent on a timer: recovery has to come from the
    // reconnection itself, for every slot, however many invoices were cut off.
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(Arc::new(ManualClock::starting_now()))
        .build()
        .unwrap();
    client.add_listener(Arc::new(StopServerOnFirstReady(Mutex::new(Some(
        server.clone(),
    )))));
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_restart = client.ready_offers().len();
    assert!(
        before_restart < 20,
        "the server was stopped mid-fill ({before_restart} ready)"
    );

    let restarted = start_server_with(server_options(server_dir.path(), &address)).await;
    let ready = client.wait_for_ready_offers(20, WAIT).await.unwrap();
    let slots: HashSet<u16> = ready.iter().map(|o| o.slot).collect();
    assert_eq!(slots.len(), 20);
    assert_eq!(client.offers().len(), 20, "nothing left half-done");
    assert_payable(&restarted, &ready).await;
}

/// An offer whose invoice went out but was never confirmed is Pending in memory only: a crash
/// then loses that work, never an offer anyone saw, and the restarted client fills its place
/// with a new offer (in a slot drawn anew; an invoice the server may have stored for the old
/// one belongs to an offer nobody was shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_offer_is_not_written_and_is_replaced_after_a_restart() {
    let server = hostile::HostileServer::start().await;
    server.handler.never_confirm.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(hostile::now()));
    let (client, _) = hostile::victim(&server, dir.path(), 2, clock.clone());
    client.start().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while server.seen().invoices.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no invoices sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (pending, files) = hostile::snapshot(&client, dir.path());
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|o| o.state == OfferState::Pending));
    let names: Vec<&String> = files.iter().map(|(name, _)| name).collect();
    assert!(
        names.is_empty(),
        "unconfirmed offers were written: {names:?}"
    );
    client.stop();
    drop(client);

    server.handler.never_confirm.store(false, Ordering::SeqCst);
    let (client, mut stored) = hostile::victim(&server, dir.path(), 2, clock);
    assert!(client.offers().is_empty(), "nothing to resume from disk");
    client.start().unwrap();
    stored.ready(2).await;
    let (ready, files) = hostile::snapshot(&client, dir.path());
    assert_eq!(files.len(), 2, "each Ready offer is on disk");
    assert!(ready.iter().all(|o| o.state == OfferState::Ready));
    assert!(
        ready
            .iter()
            .all(|o| pending.iter().all(|p| p.offer != o.offer)),
        "new offers, not the unconfirmed ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_late_replies_change_nothing() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let mut options = server_options(server_dir.path(), "127.0.0.1:0");
    options.replay_replies_after = Some(Duration::from_millis(300));
    let server = start_server_with(options).await;
    let mut config = config_for(&server, b"wallet-replay", client_dir.path());
    config.ready_offer_target = 5;
    let client = client(config.clone());
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(5, WAIT).await.unwrap();
    // Every reply has now come a second time and a third, late one is on its way.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let offers = client.offers();
    assert_eq!(offers.len(), 5, "no extra offer from a repeated OfferPaths");
    assert!(offers.iter().all(|o| o.state == OfferState::Ready));
    let ids = |list: &[async_offers::OfferInfo]| -> HashSet<String> {
        list.iter().map(|o| o.offer_id.clone()).collect()
    };
    assert_eq!(ids(&offers), ids(&ready), "no offer replaced");
    // The server still serves each offer's own invoice: no duplicate overwrote a slot.
    assert_payable(&server, &offers).await;
    client.stop();
    drop(client);
    let reloaded = common::client(config).offers();
    assert_eq!(ids(&reloaded), ids(&ready), "and the same is on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_invoice_request_is_verified_and_reported() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-forward", client_dir.path());
    config.ready_offer_target = 2;
    // Forwarded requests come to this client rather than to a wallet node.
    config.invoice_request_target = InvoiceRequestTarget::Client;
    let client = client(config);
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let offer = client.take_offer(Some("forward me".into())).unwrap();

    assert_payable(&server, std::slice::from_ref(&offer)).await;
    let forwarded = tokio::task::spawn_blocking(move || loop {
        match events.recv_timeout(WAIT) {
            Ok(Event::InvoiceRequestForwarded {
                offer_id,
                amount_msats,
                ..
            }) => return (offer_id, amount_msats),
            Ok(_) => continue,
            Err(e) => panic!("no forwarded invoice request: {e}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(forwarded.0, offer.offer_id);
    assert_eq!(forwarded.1, Some(1_000), "the payer's amount");
}
