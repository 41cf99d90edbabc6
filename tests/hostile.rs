//! A deliberately hostile static invoice server (`common/hostile.rs`): each bad message must
//! leave the client's offers and files as they were, be logged with a reason, and never panic;
//! whatever the server does, the client keeps to its message budget.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, Config, ManualClock};
use common::*;
use hostile::*;
use lightning::bitcoin::Network;
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, OfferPaths, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{Destination, MessageSendInstructions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offer_paths_change_nothing_and_are_logged_with_a_reason() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let (client, mut stored) = victim(&server, dir.path(), 2, clock.clone());
    client.start().unwrap();
    stored.ready(2).await;

    // From now on the server only does what the test says. A handout makes the client
    // request offer paths for that slot again.
    server.handler.honest.store(false, Ordering::SeqCst);
    let taken = client.take_offer(None).unwrap();
    requests_seen(&server, 3).await;
    // A handed-out offer keeps its slot: the new one gets another.
    let request = server.seen().requests.len() - 1;
    let slot = server.seen().requests[request].0;
    let filled = taken.slot;
    let before = snapshot(&client, dir.path());

    let year = (now() + Duration::from_secs(365 * 24 * 3600)).as_secs();
    let existing: lightning::offers::offer::Offer = taken.offer.parse().unwrap();
    let cases: Vec<(&str, u16, OfferPaths, &str)> = vec![
        (
            "a filled slot",
            filled,
            server.handler.offer_paths(Some(year), 1),
            "SlotNotRequested",
        ),
        (
            "no paths",
            slot,
            server.handler.offer_paths(Some(year), 0),
            "NoPaths",
        ),
        (
            "too many paths",
            slot,
            server.handler.offer_paths(None, 50),
            "TooManyPaths",
        ),
        (
            "paths expiring in a minute",
            slot,
            server
                .handler
                .offer_paths(Some((now() + Duration::from_secs(60)).as_secs()), 1),
            "ExpiresTooSoon",
        ),
        (
            "another offer's paths",
            slot,
            OfferPaths {
                paths: existing.paths().to_vec(),
                paths_absolute_expiry: None,
            },
            "DuplicatePaths",
        ),
        (
            "paths too long for an invoice a server stores",
            slot,
            server.handler.long_offer_paths(8, 10),
            "bytes, over the",
        ),
    ];
    for (what, to_slot, paths, reason) in cases {
        let mark = log_mark();
        server.answer_request(to_slot, None, paths);
        let line = logged(mark, &["rejected OfferPaths", &server.id()]).await;
        assert!(line.contains(reason), "{what}: {line}");
        assert_eq!(
            snapshot(&client, dir.path()),
            before,
            "{what} changed the client"
        );
    }

    // Hours later the reply path of that request has expired; the client asked again.
    clock.advance(Duration::from_secs(3 * 3600));
    requests_seen(&server, request + 2).await;
    let mark = log_mark();
    server.answer_request(slot, Some(request), server.handler.offer_paths(None, 1));
    let line = logged(mark, &["rejected OfferPaths", &server.id()]).await;
    assert!(line.contains("ReplyPathExpired"), "{line}");
    assert_eq!(snapshot(&client, dir.path()).0, before.0);

    // A good answer to the new request still fills the slot.
    server.handler.honest.store(true, Ordering::SeqCst);
    server.answer_request(slot, None, server.handler.offer_paths(None, 1));
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    assert_eq!(panics(), 0, "something panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_paths_for_a_slot_requested_before_a_restart_are_rejected() {
    let server = HostileServer::start().await;
    server.handler.honest.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = victim(&server, dir.path(), 3, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    requests_seen(&server, 3).await;
    client.stop();
    drop(client);

    // The app now wants one offer, in a slot of its own: the earlier requests' reply paths
    // are still ours, but those slots were neither requested nor lost by this client.
    let (client, _) = victim(&server, dir.path(), 1, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    requests_seen(&server, 4).await;
    let requested_now = server.seen().requests[3].0;
    let earlier = server.seen().requests[..3]
        .iter()
        .map(|(slot, _)| *slot)
        .find(|slot| *slot != requested_now)
        .unwrap();
    let before = snapshot(&client, dir.path());
    let mark = log_mark();
    server.answer_request(earlier, None, server.handler.offer_paths(None, 1));
    let line = logged(mark, &["rejected OfferPaths", &server.id()]).await;
    assert!(
        line.contains(&format!("slot {earlier} ")) && line.contains("SlotNotRequested"),
        "{line}"
    );
    assert_eq!(snapshot(&client, dir.path()), before);
    assert_eq!(panics(), 0, "something panicked");
}

/// A started client of `offers` offers, and the slots of its requests, which the server has
/// seen and left unanswered: it stores invoices, and answers requests only as the test says.
/// The clock stands still, so that lost requests' backoff ends only with an answer taken.
async fn requests_left_unanswered(
    offers: u16,
) -> (
    HostileServer,
    tempfile::TempDir,
    AsyncOffersClient,
    Stored,
    Vec<u16>,
) {
    let server = HostileServer::start().await;
    server
        .handler
        .silent_on_requests
        .store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (client, stored) = victim(
        &server,
        dir.path(),
        offers,
        Arc::new(ManualClock::new(now())),
    );
    client.start().unwrap();
    requests_seen(&server, offers.into()).await;
    let slots = server.seen().requests.iter().map(|r| r.0).collect();
    (server, dir, client, stored, slots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_requests_lost_with_a_connection_fill_their_slots_on_the_next() {
    let (server, _dir, client, mut stored, lost) = requests_left_unanswered(2).await;

    // The link drops before any answer. The server answers one request at once: the answer
    // waits for the client and reaches it as it connects again, right after the server's
    // `init`. The other it answers once the client is back (by then the client may have asked
    // for that slot again, the first answer having ended the backoff).
    server.drop_connections();
    server.answer_request(lost[0], Some(0), server.handler.offer_paths(None, 1));
    stored.reconnected().await;
    server.answer_request(lost[1], Some(1), server.handler.offer_paths(None, 1));
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let mut filled: Vec<u16> = client.ready_offers().iter().map(|o| o.slot).collect();
    filled.sort();
    let mut lost = lost;
    lost.sort();
    assert_eq!(filled, lost, "the lost requests' slots are the ones filled");
    assert_eq!(
        server.seen().invoices.len(),
        2,
        "each offer's invoice was sent once"
    );
    assert_eq!(panics(), 0, "something panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_over_paths_that_came_before_the_reconnection_is_known_sends_its_invoice_once() {
    let (server, _dir, client, _, requested) = requests_left_unanswered(1).await;
    let slot = requested[0];

    // The engine hears the connection was lost (here through the app's handler, the socket
    // staying up), and the server's answer comes before it hears of the next connection.
    let handler = client.protocol_handler(server.config.node_id).unwrap();
    handler.server_disconnected();
    server.answer_request(slot, Some(0), server.handler.offer_paths(None, 1));
    let deadline = Instant::now() + WAIT;
    while !client.offers().iter().any(|offer| offer.slot == slot) {
        assert!(Instant::now() < deadline, "the late answer was not taken");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Connected again after a connection that worked: every unconfirmed invoice is sent.
    handler.server_connected();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    // A second send would have left once the first was answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.seen().invoices.len(),
        1,
        "the new offer's invoice was sent once"
    );
    assert_eq!(panics(), 0, "something panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_messages_without_our_reply_path_never_reach_the_cache() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, mut stored) = victim(&server, dir.path(), 1, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    stored.ready(1).await;
    let before = snapshot(&client, dir.path());
    let mark = log_mark();
    for message in [
        AsyncPaymentsMessage::OfferPaths(server.handler.offer_paths(None, 1)),
        AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
    ] {
        server.send(
            message,
            MessageSendInstructions::WithoutReplyPath {
                destination: Destination::Node(client.transport_node_id()),
            },
        );
    }
    // LDK's messenger drops what did not come over one of our own reply paths.
    logged(mark, &["wrong or missing context"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(snapshot(&client, dir.path()), before);
    assert_eq!(panics(), 0, "something panicked");
}

/// However the server behaves, the client sends it at most its budget in any minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_exceeds_its_message_budget_whatever_the_server_does() {
    const BUDGET: u32 = 10;
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let mut config = Config::new(Network::Regtest, dir.path(), server.config.clone());
    config.ready_offer_target = 8;
    config.max_messages_per_minute = BUDGET;
    config.tick_interval = Duration::from_millis(20);
    logs();
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock.clone())
        .build()
        .unwrap();
    // Offer paths for every request at once, and never a confirmation: every invoice is
    // resent for ever, and every slot stays wanted.
    server.handler.never_confirm.store(true, Ordering::SeqCst);
    client.start().unwrap();
    let step = Duration::from_secs(10);
    let mut received = vec![0usize];
    for _ in 0..60 {
        // Let the client send all it will at this time: until the count stays put (or 2 s).
        let mut last = usize::MAX;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = server.seen().received;
            if now == last {
                break;
            }
            last = now;
        }
        received.push(last);
        clock.advance(step);
    }
    let total = *received.last().unwrap();
    assert!(
        total > BUDGET as usize * 3,
        "the server saw too little to mean anything: {total}"
    );
    // What arrived over five consecutive 10-second steps was sent within 50 s of the client's
    // clock (a message sent just before a step may arrive after it): one minute at most.
    for window in received.windows(6) {
        let in_minute = window[5] - window[0];
        assert!(
            in_minute <= BUDGET as usize,
            "{in_minute} messages in a minute: {received:?}"
        );
    }
    assert_eq!(panics(), 0, "something panicked");
}
