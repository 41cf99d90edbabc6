//! Long-lived offers: an offer without expiry keeps a fresh invoice on the server for months,
//! and a handed-out offer that does expire is announced ahead, its label moving on.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_offers::{AsyncOffersClient, Clock, Config, Event, ManualClock};
use async_offers_server::{check_invoice_for_offer, OfferPathsLifetime, Payer};
use common::*;
use hostile::*;
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn client_at(config: Config, clock: Arc<ManualClock>) -> AsyncOffersClient {
    log_to_stderr();
    AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock)
        .build()
        .unwrap()
}

/// Waits for the first event `pick` accepts.
fn wait_for<T>(events: &mpsc::Receiver<Event>, pick: impl Fn(Event) -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = events
            .recv_timeout(left)
            .expect("the event within the wait");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_expiry_has_a_fresh_invoice_after_six_months() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let mut options = server_options(server_dir.path(), "127.0.0.1:0");
    options.offer_paths_lifetime = OfferPathsLifetime::Unlimited;
    let server = start_server_with(options).await;
    let mut config = config_for(&server, b"wallet-bio", client_dir.path());
    config.ready_offer_target = 2;
    let clock = Arc::new(ManualClock::starting_now());
    let client = client_at(config, clock.clone());
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let bio = client.offer_for("profile bio").unwrap();
    assert_eq!(bio.expires_at, None, "an offer that never expires");

    for _month in 1..=6 {
        clock.advance(30 * DAY);
        wait_for(&events, |event| match event {
            Event::InvoiceRefreshed { offer_id } if offer_id == bio.offer_id => Some(()),
            _ => None,
        });
    }

    let offer: Offer = bio.offer.parse().unwrap();
    let payer = Payer::connect(
        server.identity().node_id(),
        &server.local_addr().to_string(),
        Network::Regtest,
    )
    .await
    .unwrap();
    let fetched = payer
        .fetch_static_invoice(&offer, Duration::from_secs(10))
        .await
        .unwrap();
    let now = clock.now();
    check_invoice_for_offer(&offer, &fetched.invoice, now).unwrap();
    assert!(
        fetched.invoice.created_at() + DAY > now,
        "the payer gets this month's invoice, not one from months ago"
    );
    assert_eq!(
        client.offer_for("profile bio").unwrap().offer_id,
        bio.offer_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_out_offer_is_announced_before_it_expires_and_its_label_moves_on() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    // The server hands out paths that last 100 days from the client's now.
    let lasting_100_days = |clock: &ManualClock| Some((clock.now() + 100 * DAY).as_secs());
    *server.handler.paths_expiry.lock().unwrap() = lasting_100_days(&clock);
    let (client, _) = victim(&server, dir.path(), 2, clock.clone());
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let shop = client.offer_for("shop").unwrap();
    let expires_at = shop.expires_at.expect("a 100-day offer");

    clock.advance(87 * DAY);
    *server.handler.paths_expiry.lock().unwrap() = lasting_100_days(&clock);
    let announced = wait_for(&events, |event| match event {
        Event::OfferExpiring { offer } => Some(offer),
        _ => None,
    });
    assert_eq!(announced.offer_id, shop.offer_id);
    assert_eq!(announced.label.as_deref(), Some("shop"));
    assert!(clock.now() + DAY * 14 >= expires_at);
    // Announced once a fresh offer can take its place (the Ready ones of before expire as
    // soon): the app's `offer_for` then gives the label that fresh offer.
    let fresh = |offer: &async_offers::OfferInfo| {
        offer
            .expires_at
            .is_some_and(|at| at > clock.now() + 14 * DAY)
    };
    assert!(
        client.ready_offers().iter().any(fresh),
        "a fresh offer Ready"
    );
    let moved = client.offer_for("shop").unwrap();
    assert_ne!(moved.offer_id, shop.offer_id, "a fresh offer for the label");
    assert!(fresh(&moved));
    assert_eq!(client.offer_for("shop").unwrap().offer_id, moved.offer_id);
    assert!(
        client.offers().iter().any(|o| o.offer_id == shop.offer_id),
        "the old offer still works until it expires"
    );

    clock.advance(14 * DAY);
    wait_for(&events, |event| match event {
        Event::OfferExpired { offer_id } if offer_id == shop.offer_id => Some(()),
        _ => None,
    });
}

/// The notice that an offer expires asks the app to act: it waits in the data dir until the
/// app says it handled it, across a restart, for an app that looks only after `start()`; it
/// is made once, and once handled it is gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notice_of_an_expiring_offer_waits_for_the_app_across_restarts() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    *server.handler.paths_expiry.lock().unwrap() = Some((clock.now() + 100 * DAY).as_secs());
    let (client, _) = victim(&server, dir.path(), 1, clock.clone());
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let shop = client.offer_for("shop").unwrap();
    // Nobody looks at events while the offer becomes due (and fresh offers come to replace it).
    clock.advance(87 * DAY);
    *server.handler.paths_expiry.lock().unwrap() = Some((clock.now() + 100 * DAY).as_secs());
    let deadline = std::time::Instant::now() + WAIT;
    let is_notice = |event: &Event| matches!(event, Event::OfferExpiring { offer } if offer.offer_id == shop.offer_id);
    let notices = |client: &AsyncOffersClient| {
        let mut seen = Vec::new();
        while let Some(queued) = client.next_event() {
            client.event_handled(queued.id).unwrap();
            seen.push(queued.event);
        }
        seen
    };
    loop {
        let waiting = client.next_event();
        if waiting
            .as_ref()
            .is_some_and(|queued| is_notice(&queued.event))
        {
            break;
        }
        if let Some(queued) = waiting {
            // Connections and Ready offers: this app does not care.
            client.event_handled(queued.id).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no notice");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.stop();
    drop(client);

    // Restarted, the notice is still there, first, and made once.
    let (client, _) = victim(&server, dir.path(), 1, clock.clone());
    client.start().unwrap();
    assert!(client
        .next_event()
        .is_some_and(|queued| is_notice(&queued.event)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = notices(&client);
    assert_eq!(seen.iter().filter(|e| is_notice(e)).count(), 1, "{seen:?}");
    client.stop();
    drop(client);

    // Handled: gone, and not made again.
    let (client, _) = victim(&server, dir.path(), 1, clock.clone());
    client.start().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = notices(&client);
    assert!(!seen.iter().any(is_notice), "{seen:?}");
}
