//! Offer checks over TCP against the reference server: the client fetches its handed-out
//! offers' static invoices as a payer does, and mends what the server lost or rolled back.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_offers::{
    AsyncOffersClient, Config, Event, InvoiceRequestTarget, ManualClock, OfferInfo,
};
use async_offers_server::{Payer, RunningServer, PAYER_NOTE};
use common::*;
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;

/// A clock ten times as fast as the real one, from now: a check's 10 s wait for an answer
/// takes one. Answers that come at all come in milliseconds.
fn fast_clock() -> Arc<ManualClock> {
    let clock = Arc::new(ManualClock::starting_now());
    let ticking = clock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ticking.advance(Duration::from_secs(1));
        }
    });
    clock
}

/// A config for the wallet of `server` in `dir`, with `slots` offers and no checks but those
/// the test asks for (`config_for` turns the periodic ones off).
fn checked_config(server: &RunningServer, dir: &Path, slots: u16) -> Config {
    let mut config = config_for(server, b"wallet", dir);
    config.ready_offer_target = slots;
    config
}

/// A started client of `config` on `clock`, once its offers are Ready, and `count` of them
/// handed out.
async fn handing_out(
    config: &Config,
    clock: &Arc<ManualClock>,
    count: usize,
) -> (AsyncOffersClient, Vec<OfferInfo>) {
    let client = builder(config.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    client.start().unwrap();
    client
        .wait_for_ready_offers(usize::from(config.ready_offer_target), WAIT)
        .await
        .unwrap();
    let offers = (0..count)
        .map(|_| client.take_offer(None).unwrap())
        .collect();
    (client, offers)
}

/// Stops `server` and starts it again on the same address and keys, its invoices gone if
/// `lose_store` (a lost disk, an old backup restored) and, if `ignoring`, answering no
/// invoice request.
async fn restart(server: RunningServer, dir: &Path, lose_store: bool) -> RunningServer {
    let address = server.local_addr().to_string();
    server.stop();
    drop(server);
    if lose_store {
        std::fs::remove_dir_all(dir.join("invoices")).unwrap();
    }
    start_server_with(server_options(dir, &address)).await
}

/// The file the server keeps `slot`'s invoice in (one recipient per test).
fn stored_invoice(dir: &Path, slot: u16) -> PathBuf {
    let stored = dir.join("invoices").join("static_invoices");
    std::fs::read_dir(&stored)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            name.rsplit_once('_').map(|(_, s)| s.to_string()) == Some(slot.to_string())
        })
        .unwrap_or_else(|| panic!("no invoice stored for slot {slot}"))
}

/// Waits until a payer gets each of `offers`' own invoice from `server`.
async fn eventually_payable(server: &RunningServer, offers: &[OfferInfo]) {
    let deadline = std::time::Instant::now() + WAIT;
    for offer in offers {
        loop {
            let parsed: Offer = offer.offer.parse().unwrap();
            match fetch(server, offer).await {
                Ok(invoice) if invoice.offer_id() == parsed.id() => break,
                other => assert!(
                    std::time::Instant::now() < deadline,
                    "offer in slot {}: {other:?}",
                    offer.slot
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What a payer gets for `offer` from `server`.
async fn fetch(server: &RunningServer, offer: &OfferInfo) -> Result<StaticInvoice, String> {
    let payer = Payer::connect(
        server.identity().node_id(),
        &server.local_addr().to_string(),
        Network::Regtest,
    )
    .await?;
    let offer: Offer = offer.offer.parse().unwrap();
    payer
        .fetch_static_invoice(&offer, Duration::from_secs(2))
        .await
        .map(|fetched| fetched.invoice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_lost_its_store_one_check_of_the_offers_gets_payers_every_invoice_again() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = start_server(&server_dir).await;
    let config = checked_config(&server, &dir.path().join("wallet"), 3);
    let clock = fast_clock();
    let (client, offers) = handing_out(&config, &clock, 3).await;
    // Their replacements are Ready too, their invoices stored: the server loses those as well.
    let ready = client.wait_for_ready_offers(3, WAIT).await.unwrap();
    // Payers got the handed-out ones until then.
    assert_eq!(client.check_offers(WAIT).await.unwrap().verified, 3);
    let server = restart(server, &server_dir, true).await;
    for offer in offers.iter().chain(&ready) {
        assert!(
            fetch(&server, offer).await.is_err(),
            "the store is lost: no invoice for payers"
        );
    }

    let report = client.check_offers(WAIT).await.unwrap();

    assert!(report.complete, "{report:?}");
    assert_eq!(
        (
            report.checked,
            report.verified,
            report.served_again,
            report.broken
        ),
        (3, 3, 3, 0),
        "{report:?}"
    );
    assert_payable(&server, &offers).await;
    // The Ready offers too: they are handed out without a check.
    eventually_payable(&server, &ready).await;
    let status = client.status();
    assert_eq!(status.offer_checks.len(), 3);
    for check in &status.offer_checks {
        assert!(check.verified_at.is_some());
        assert!(
            check.finding.contains("served again after no invoice"),
            "{}",
            check.finding
        );
    }
    let handed_out: Vec<OfferInfo> = client
        .offers()
        .into_iter()
        .filter(|offer| offers.iter().any(|o| o.offer_id == offer.offer_id))
        .collect();
    assert!(handed_out.iter().all(|offer| offer.verified_at.is_some()));
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_lost_its_store_one_sync_with_checks_due_gets_payers_every_invoice_again() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = start_server(&server_dir).await;
    let mut config = checked_config(&server, &dir.path().join("wallet"), 3);
    config.offer_check_interval = Duration::from_secs(3600);
    let clock = fast_clock();
    let (client, offers) = handing_out(&config, &clock, 2).await;
    let ready = client.wait_for_ready_offers(3, WAIT).await.unwrap();
    // Payers got the handed-out ones until then.
    assert_eq!(client.check_offers(WAIT).await.unwrap().verified, 2);
    client.stop();
    let server = restart(server, &server_dir, true).await;
    // A background window an hour later: every handed-out offer is due a check.
    clock.advance(Duration::from_secs(3600));

    let report = client.sync(WAIT).await.unwrap();

    assert!(report.complete, "{report:?}");
    assert_eq!(report.verified, 2, "{report:?}");
    assert_payable(&server, &offers).await;
    // The Ready offers were served again in the sync.
    eventually_payable(&server, &ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_serving_an_older_invoice_than_it_confirmed_last_is_found_and_mended() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = start_server(&server_dir).await;
    let config = checked_config(&server, &dir.path().join("wallet"), 1);
    let clock = fast_clock();
    let (client, offers) = handing_out(&config, &clock, 1).await;
    let offer = &offers[0];
    let file = stored_invoice(&server_dir, offer.slot);
    let first = std::fs::read(&file).unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    let new_hint = hint(0x41, 7 << 40, 2_000);
    client.update_channels(vec![new_hint.clone()]).unwrap();
    assert_eq!(refreshed(&events, 1, WAIT).len(), 1);
    // The server rolls back to the invoice it held before (a bug, an old backup).
    std::fs::write(&file, &first).unwrap();
    let served = fetch(&server, offer).await.unwrap();
    assert!(
        served.payment_paths()[0].payinfo.fee_base_msat != new_hint.fee_base_msat,
        "payers get the older invoice"
    );

    let report = client.check_offers(WAIT).await.unwrap();

    assert!(report.complete, "{report:?}");
    assert_eq!((report.verified, report.served_again), (1, 1), "{report:?}");
    assert_invoices_pay_over(&server, std::slice::from_ref(&offer.offer), &new_hint).await;
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_overwritten_with_another_offers_invoice_breaks_that_offer_once_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let server = start_server(&server_dir).await;
    let config = checked_config(&server, &dir.path().join("wallet"), 2);
    let clock = fast_clock();
    let client = builder(config.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let alice = client.offer_for("alice").unwrap();
    let bob = client.offer_for("bob").unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    // Another install of the wallet (or the server) wrote Bob's invoice into Alice's slot.
    std::fs::copy(
        stored_invoice(&server_dir, bob.slot),
        stored_invoice(&server_dir, alice.slot),
    )
    .unwrap();
    let (listener, events) = events();
    client.add_listener(listener);

    let report = client.check_offers(WAIT).await.unwrap();

    assert_eq!(
        (report.checked, report.verified, report.broken),
        (2, 1, 1),
        "{report:?}"
    );
    assert!(report.complete, "{report:?}");
    // Queued, and written, by the time the report counts it; listeners hear it on their thread.
    let queued: Vec<Event> = client
        .waiting_events()
        .into_iter()
        .map(|queued| queued.event)
        .filter(|event| matches!(event, Event::OfferBroken { .. }))
        .collect();
    match &queued[..] {
        [Event::OfferBroken { offer, reason }] => {
            assert_eq!(offer.offer_id, alice.offer_id);
            assert_eq!(offer.label.as_deref(), Some("alice"));
            assert!(reason.contains("another offer's invoice"), "{reason}");
        }
        other => panic!("one OfferBroken for Alice's offer, not {other:?}"),
    }
    let heard_broken = |events: &std::sync::mpsc::Receiver<Event>, within| {
        events
            .recv_timeout(within)
            .into_iter()
            .chain(events.try_iter())
            .filter(|event| matches!(event, Event::OfferBroken { .. }))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while heard_broken(&events, Duration::from_millis(100)) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener heard no OfferBroken"
        );
    }
    assert_eq!(heard_broken(&events, Duration::from_millis(300)), 0, "once");
    let fresh = client.offer_for("alice").unwrap();
    assert_ne!(
        fresh.offer_id, alice.offer_id,
        "Alice's label gets a fresh offer"
    );
    assert_eq!(client.offer_for("bob").unwrap().offer_id, bob.offer_id);
    // Never sent again, even on new channels: that would break Bob's offer.
    client
        .update_channels(vec![hint(0x42, 8 << 40, 1_000)])
        .unwrap();
    assert!(refreshed(&events, 2, WAIT).len() >= 2, "the live offers");
    let served = fetch(&server, &alice).await.unwrap();
    assert_eq!(served.offer_id().0.to_vec(), hex(&bob.offer_id));
    client.stop();
    drop(client);

    // Kept across a restart, told once.
    let client = builder(config.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    let kept: Vec<Event> = std::iter::from_fn(|| client.next_event())
        .map(|queued| {
            client.event_handled(queued.id).unwrap();
            queued.event
        })
        .filter(|event| matches!(event, Event::OfferBroken { .. }))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let stored = client
        .offers()
        .into_iter()
        .find(|offer| offer.offer_id == alice.offer_id)
        .unwrap();
    assert!(stored.broken.is_some());
    client.start().unwrap();
    let report = client.check_offers(WAIT).await.unwrap();
    assert_eq!(
        report.checked, 2,
        "Bob's and Alice's fresh offer: {report:?}"
    );
    assert!(client
        .next_event()
        .is_none_or(|queued| !matches!(queued.event, Event::OfferBroken { .. })));
    assert_eq!(client.offer_for("alice").unwrap().offer_id, fresh.offer_id);
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_own_check_requests_forwarded_back_to_it_are_not_payments() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server")).await;
    let mut config = checked_config(&server, &dir.path().join("wallet"), 1);
    config.invoice_request_target = InvoiceRequestTarget::Client;
    let clock = fast_clock();
    let (client, offers) = handing_out(&config, &clock, 1).await;
    let (listener, events) = events();
    client.add_listener(listener);

    let report = client.check_offers(WAIT).await.unwrap();
    assert_eq!(report.verified, 1, "{report:?}");
    assert_payable(&server, &offers).await;

    // The payer's request comes after the check's: only it is reported.
    let deadline = std::time::Instant::now() + WAIT;
    let forwarded = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::InvoiceRequestForwarded { payer_note, .. }) => break payer_note,
            Ok(_) => continue,
            Err(e) => panic!("the payer's request was not forwarded: {e}"),
        }
    };
    assert_eq!(
        forwarded.as_deref(),
        Some(PAYER_NOTE),
        "the first forwarded is the payer's"
    );
    let queued: Vec<Event> = std::iter::from_fn(|| {
        let queued = client.next_event()?;
        client.event_handled(queued.id).unwrap();
        Some(queued.event)
    })
    .filter(|event| matches!(event, Event::InvoiceRequestForwarded { .. }))
    .collect();
    assert_eq!(queued.len(), 1, "kept: the payer's only: {queued:?}");
    client.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_no_check_costs_the_bounded_repeats_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let mut options = server_options(&server_dir, "127.0.0.1:0");
    options.ignore_invoice_requests = true;
    let server = start_server_with(options).await;
    let config = checked_config(&server, &dir.path().join("wallet"), 2);
    let clock = fast_clock();
    let (client, offers) = handing_out(&config, &clock, 2).await;
    // The replacements' invoices stored before counting.
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let listed = |client: &AsyncOffersClient| {
        let mut offers: Vec<_> = client
            .offers()
            .into_iter()
            .map(|offer| (offer.offer_id, offer.state, offer.label, offer.broken))
            .collect();
        offers.sort_by(|a, b| a.0.cmp(&b.0));
        offers
    };
    let offers_before = listed(&client);
    let received = server.received();
    let invoices_before = received.invoices.load(std::sync::atomic::Ordering::SeqCst);
    let requests_before = received
        .invoice_requests
        .load(std::sync::atomic::Ordering::SeqCst);

    let report = client.check_offers(WAIT).await.unwrap();

    assert!(!report.complete, "{report:?}");
    assert_eq!(report.unfinished.len(), 2, "{report:?}");
    for unfinished in &report.unfinished {
        assert!(
            unfinished.reason.contains("payers still get no invoice"),
            "{}",
            unfinished.reason
        );
    }
    // Over another simulated hour, nothing more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        count(&received.invoice_requests) - requests_before,
        2 * 3,
        "a check, and one after each of the two repairs, per offer"
    );
    // A server that never served an offer is no sign of a lost store: the Ready offers'
    // invoices are not sent again.
    assert_eq!(
        count(&received.invoices) - invoices_before,
        2 * 2,
        "two invoices served again per handed-out offer"
    );
    assert_eq!(
        listed(&client),
        offers_before,
        "no offer handed out, removed or marked broken"
    );
    let status = client.status();
    assert!(status.servers[0]
        .checks
        .as_deref()
        .is_some_and(|checks| checks.contains("0 served to payers as confirmed")));
    drop(offers);
    client.stop();
}

fn hex(s: &str) -> Vec<u8> {
    use lightning::bitcoin::hex::FromHex;
    Vec::<u8>::from_hex(s).unwrap()
}
