//! The client never goes quietly stale: a channel change reaches every offer, Pending ones
//! too, one invoice of an offer on its way at a time; a refresh the server never confirms backs
//! off and is reported; bad hints are refused.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::{Clock, Error, ManualClock, OfferState};
use common::*;
use hostile::*;
use lightning::bitcoin::hex::FromHex;

/// Waits until the server has been sent `count` invoices.
async fn invoices_seen(server: &HostileServer, count: usize) {
    let deadline = Instant::now() + WAIT;
    while server.seen().invoices.len() < count {
        assert!(
            Instant::now() < deadline,
            "the server got {} invoices, not {count}",
            server.seen().invoices.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn base_fees_of_invoice(server: &HostileServer, index: usize) -> Vec<u32> {
    server.seen().invoices[index]
        .0
        .invoice
        .payment_paths()
        .iter()
        .map(|path| path.payinfo.fee_base_msat)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_change_while_an_offer_waits_for_its_confirmation_reaches_that_offer() {
    let server = HostileServer::start().await;
    server.handler.never_confirm.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    // The clock stands still: no resend, and the rebuilt invoice is built in the same second.
    let clock = Arc::new(ManualClock::starting_now());
    let (client, mut stored) = victim(&server, dir.path(), 1, clock);
    client
        .update_channels(vec![hint(0x31, 1 << 40, 1_000)])
        .unwrap();
    client.start().unwrap();
    invoices_seen(&server, 1).await;
    assert_eq!(base_fees_of_invoice(&server, 0), vec![1_000]);

    client
        .update_channels(vec![hint(0x32, 2 << 40, 2_000)])
        .unwrap();
    // The new invoice waits while the old one is on its way (the clock stands still: it is
    // not given up on), so that the server never stores the two out of order.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.seen().invoices.len(), 1, "one at a time");

    // The old invoice's confirmation, late: it is not the invoice the offer now carries, and
    // the new one goes now.
    server.confirm_invoice(0);
    invoices_seen(&server, 2).await;
    assert_eq!(
        base_fees_of_invoice(&server, 1),
        vec![2_000],
        "the new channel"
    );
    assert_eq!(client.offers()[0].state, OfferState::Pending);
    server.confirm_invoice(1);
    stored.ready(1).await;
    assert_eq!(client.ready_offers().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_no_payment_could_use_is_refused_by_name() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let (client, _) = victim(&server, dir.path(), 1, clock);
    let good = hint(0x33, 3 << 40, 1_000);
    client.update_channels(vec![good.clone()]).unwrap();
    let mut nothing_to_forward = hint(0x34, 4 << 40, 5_000);
    nothing_to_forward.htlc_maximum_msat = 5_000;
    let mut too_slow = hint(0x35, 5 << 40, 1_000);
    too_slow.cltv_expiry_delta = 2_000;
    let mut upside_down = hint(0x36, 6 << 40, 1_000);
    upside_down.htlc_minimum_msat = upside_down.htlc_maximum_msat + 1;
    for (bad, what) in [
        (nothing_to_forward, "fee_base_msat"),
        (too_slow, "cltv_expiry_delta"),
        (upside_down, "htlc_minimum_msat"),
    ] {
        let scid = bad.short_channel_id;
        match client.update_channels(vec![good.clone(), bad.clone()]) {
            Err(Error::InvalidConfig(why)) => {
                assert!(why.contains(&format!("channel hint {scid}")), "{why}");
                assert!(why.contains(what), "{why}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let mut config = async_offers::Config::new(
            lightning::bitcoin::Network::Regtest,
            dir.path().join("other"),
            server.config.clone(),
        );
        config.channel_hints = vec![bad];
        assert!(matches!(
            async_offers::AsyncOffersClient::new(config, SEED),
            Err(Error::InvalidConfig(_))
        ));
    }
}

/// Waits until every offer but `stuck` is as fresh as the server can make it (each handed-out
/// one confirmed within its refresh interval, every invoice sent confirmed) and the client
/// has its two Ready offers: ten simulated minutes pass at each step of the test, and an
/// answer that takes a few milliseconds must not look like one the server withheld. The pause
/// first lets the transport send what the step queued.
async fn settled(
    server: &HostileServer,
    client: &async_offers::AsyncOffersClient,
    stuck: &[u8; 32],
    now: Duration,
) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let newest_sent = |offer_id: &[u8; 32]| {
            server
                .invoices_of(offer_id)
                .iter()
                .map(|invoice| invoice.created_at())
                .max()
        };
        let unsettled = client.offers().into_iter().any(|offer| {
            let id = <[u8; 32]>::from_hex(&offer.offer_id).unwrap();
            if id == *stuck {
                return false;
            }
            let confirmed = offer.invoice_confirmed_at;
            let due = offer.state == OfferState::Used
                && confirmed.is_none_or(|at| at + REFRESH_INTERVAL <= now);
            let unanswered = newest_sent(&id)
                .is_some_and(|sent| confirmed.is_none_or(|at| at.as_secs() < sent.as_secs()));
            due || unanswered
        });
        if !unsettled && client.ready_offers().len() == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "the server's answers never came");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const REFRESH_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// A client of `server` on `clock`, wanting `slots` Ready offers, whose handed-out offers are
/// refreshed every two hours (Ready ones are never replaced for age in these tests).
fn refreshing(
    server: &HostileServer,
    dir: &std::path::Path,
    slots: u16,
    clock: &Arc<ManualClock>,
) -> async_offers::ClientBuilder {
    let mut config = async_offers::Config::new(
        lightning::bitcoin::Network::Regtest,
        dir,
        server.config.clone(),
    );
    config.ready_offer_target = slots;
    config.tick_interval = Duration::from_millis(50);
    config.invoice_refresh_interval = REFRESH_INTERVAL;
    config.ready_offer_max_age = 30 * DAY;
    // The hostile server answers no invoice request: a check's repairs would add sends to
    // what these tests count.
    config.offer_check_interval = Duration::ZERO;
    async_offers::AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock.clone())
}
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Three simulated days of a handed-out offer whose refreshes the server never confirms: the
/// refreshed invoice is resent ever less often, down to once an hour; the app hears once that
/// the refresh failed; filling and handing out carry on; and once the server confirms again,
/// the offer is fresh and says since when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_server_never_confirms_backs_off_is_reported_once_and_nothing_else_stops() {
    log_to_stderr();
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let client = refreshing(&server, dir.path(), 2, &clock).build().unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let stuck = client.take_offer(Some("bio".into())).unwrap();
    let confirmed_at = stuck.invoice_confirmed_at.expect("confirmed when Ready");
    let stuck_id = stuck.offer_id.clone();
    let stuck_bytes = <[u8; 32]>::from_hex(&stuck_id).unwrap();
    server
        .handler
        .never_confirm_offers
        .lock()
        .unwrap()
        .insert(stuck_bytes);
    let sends_of_stuck = || server.invoices_of(&stuck_bytes).len();
    let handler = client.protocol_handler(server.config.node_id).unwrap();
    let mut per_day = Vec::new();
    let mut failures = Vec::new();
    let mut handed_out = 1;
    let mut slowest_settle = Duration::ZERO;
    for _day in 0..3 {
        let before = sends_of_stuck();
        for _ in 0..(24 * 6) {
            clock.advance(10 * MINUTE);
            handler.tick();
            let started = Instant::now();
            settled(&server, &client, &stuck_bytes, clock.now()).await;
            slowest_settle = slowest_settle.max(started.elapsed());
        }
        per_day.push(sends_of_stuck() - before);
        // The rest of the client carries on: a hand-out is replaced by a Ready offer.
        client.take_offer(None).unwrap();
        handed_out += 1;
        if client
            .wait_for_ready_offers(2, Duration::from_secs(5))
            .await
            .is_err()
        {
            eprintln!(
                "DEBUG states {:?}",
                client
                    .offers()
                    .iter()
                    .map(|o| (o.slot, o.state, o.invoice_confirmed_at))
                    .collect::<Vec<_>>()
            );
            {
                let seen = server.seen();
                eprintln!(
                    "DEBUG seen requests {} invoices {}",
                    seen.requests.len(),
                    seen.invoices.len()
                );
            }
            panic!();
        }
        while let Ok(event) = events.try_recv() {
            if let async_offers::Event::InvoiceRefreshFailed { offer, reason } = event {
                failures.push((offer, reason));
            }
        }
    }
    eprintln!(
        "sends of the stuck refresh per simulated day: {per_day:?}; slowest step {slowest_settle:?}"
    );
    assert!(per_day[0] <= 40, "first day: {per_day:?}");
    assert!(
        per_day[1..].iter().all(|&n| (12..=25).contains(&n)),
        "later days, about one an hour: {per_day:?}"
    );
    assert_eq!(failures.len(), 1, "announced once: {failures:?}");
    let (offer, reason) = &failures[0];
    assert_eq!(offer.offer_id, stuck_id);
    assert_eq!(offer.invoice_confirmed_at, Some(confirmed_at));
    assert!(reason.contains("has not confirmed"), "{reason}");
    assert_eq!(
        client
            .offers()
            .iter()
            .filter(|o| o.state == OfferState::Used)
            .count(),
        handed_out
    );

    // The server answers again: the next resend is confirmed, and the offer says so.
    server.handler.never_confirm_offers.lock().unwrap().clear();
    clock.advance(HOUR);
    handler.tick();
    let deadline = Instant::now() + WAIT;
    loop {
        let now_confirmed = client
            .offers()
            .into_iter()
            .find(|o| o.offer_id == stuck_id)
            .and_then(|o| o.invoice_confirmed_at);
        if now_confirmed.is_some_and(|at| at > confirmed_at + 3 * DAY) {
            break;
        }
        assert!(Instant::now() < deadline, "the refresh was never confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A refreshed invoice that cannot be written is not sent (the server would hold an invoice
/// the disk does not know): the previous one stays, each maintenance tries again, the app
/// hears why once the offer is overdue, and the refresh goes through once the disk has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_invoice_that_cannot_be_written_is_not_sent_until_it_is() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let store = FaultyStore::new(dir.path());
    let client = refreshing(&server, dir.path(), 1, &clock)
        .store(store.clone())
        .build()
        .unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let offer = client.take_offer(Some("bio".into())).unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let id = <[u8; 32]>::from_hex(&offer.offer_id).unwrap();
    let sends = || server.invoices_of(&id).len();
    assert_eq!(sends(), 1);

    store.full.store(true, Ordering::SeqCst);
    let handler = client.protocol_handler(server.config.node_id).unwrap();
    for _ in 0..(4 * 6) {
        clock.advance(10 * MINUTE);
        handler.tick();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sends(),
        1,
        "four hours of ticks, nothing the disk does not hold was sent"
    );
    let reason = loop {
        match events.recv_timeout(WAIT).expect("the app hears of it") {
            async_offers::Event::InvoiceRefreshFailed { offer, reason } => {
                assert_eq!(offer.label.as_deref(), Some("bio"));
                break reason;
            }
            _ => continue,
        }
    };
    assert!(reason.contains("could not be written"), "{reason}");
    assert!(reason.contains("no space left"), "{reason}");

    store.full.store(false, Ordering::SeqCst);
    clock.advance(10 * MINUTE);
    handler.tick();
    let deadline = Instant::now() + WAIT;
    while client
        .offers()
        .iter()
        .find(|o| o.offer_id == offer.offer_id)
        .and_then(|o| o.invoice_confirmed_at)
        == offer.invoice_confirmed_at
    {
        assert!(Instant::now() < deadline, "the refresh never went through");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Sent once the disk took it (again on a reconnection, should a loaded machine drop one).
    assert!(sends() >= 2);
}

/// Onboarding: the channel with the LSP becomes ready, then its fees come milliseconds later,
/// and the app calls `update_channels` for each, while its server stores invoices in the
/// background and answers in whatever order its writes end. At most one invoice of the offer
/// is on its way at a time, so the server ends holding the newest, with the latest hints, and
/// the client stops sending. (Before: both went at once, the server stored the older last,
/// and the client, having recorded the newer as confirmed, never sent it again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_channel_updates_and_a_server_answering_out_of_order_leave_it_holding_the_newest() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let client = refreshing(&server, dir.path(), 1, &clock).build().unwrap();
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let offer = client.take_offer(Some("bio".into())).unwrap();
    let id = <[u8; 32]>::from_hex(&offer.offer_id).unwrap();
    let sent_of_offer = || server.invoices_of(&id).len();
    let before = sent_of_offer();
    server.handler.hold_invoices.store(true, Ordering::SeqCst);
    client.update_channels(vec![hint(3, 42, 1_000)]).unwrap();
    client.update_channels(vec![hint(3, 42, 2_000)]).unwrap();
    let deadline = Instant::now() + WAIT;
    let stored_fees = || {
        server
            .handler
            .stored
            .lock()
            .unwrap()
            .get(&id)
            .map(|invoice| {
                invoice
                    .payment_paths()
                    .iter()
                    .map(|path| path.payinfo.fee_base_msat)
                    .collect::<Vec<u32>>()
            })
    };
    // Answers as the server stores them, newest first, until it holds the latest hints and
    // nothing more of the offer comes for a while.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = server.handler.held_of(&id);
        assert!(
            held <= 1,
            "one invoice of the offer on its way at a time, not {held}"
        );
        server.handler.release_held_newest_first();
        if stored_fees() == Some(vec![2_000]) && sent_of_offer() > before {
            let quiet = sent_of_offer();
            tokio::time::sleep(Duration::from_millis(500)).await;
            if sent_of_offer() == quiet && server.handler.held_of(&id) == 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the invoices never settled");
    }
    let stored = server.handler.stored.lock().unwrap()[&id].clone();
    assert_eq!(
        stored_fees(),
        Some(vec![2_000]),
        "the server holds the latest hints"
    );
    let newest = server
        .invoices_of(&id)
        .iter()
        .map(|invoice| invoice.created_at())
        .max();
    assert_eq!(Some(stored.created_at()), newest, "and the newest invoice");
    client.stop();
}

/// `InvoiceRefreshFailed` is made once per failure, across restarts: the app handled it, the
/// process restarted, the server still does not confirm, and nothing more is said until a
/// fresh invoice is confirmed. (Its flag was this process's alone: the restarted process made
/// it again after its own four unanswered sends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_failure_is_announced_once_across_restarts() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let failures = |heard: &std::sync::mpsc::Receiver<async_offers::Event>| {
        heard
            .try_iter()
            .filter(|event| matches!(event, async_offers::Event::InvoiceRefreshFailed { .. }))
            .count()
    };
    let run_for = |client: &async_offers::AsyncOffersClient, hours: u32| {
        let handler = client.protocol_handler(server.config.node_id).unwrap();
        let clock = clock.clone();
        async move {
            for _ in 0..(hours * 6) {
                clock.advance(10 * MINUTE);
                handler.tick();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // A client started on the data dir, and what it is heard to say.
    let started = || async {
        let client = refreshing(&server, dir.path(), 1, &clock).build().unwrap();
        let (listener, heard) = events();
        client.add_listener(listener);
        client.start().unwrap();
        client.wait_for_ready_offers(1, WAIT).await.unwrap();
        (client, heard)
    };
    let (client, heard) = started().await;
    let stuck = client.take_offer(Some("bio".into())).unwrap();
    let stuck_bytes = <[u8; 32]>::from_hex(&stuck.offer_id).unwrap();
    server
        .handler
        .never_confirm_offers
        .lock()
        .unwrap()
        .insert(stuck_bytes);
    run_for(&client, 4).await;
    assert_eq!(failures(&heard), 1, "announced");
    while let Some(queued) = client.next_event() {
        client.event_handled(queued.id).unwrap();
    }
    client.stop();
    drop(client);

    let (client, heard) = started().await;
    run_for(&client, 4).await;
    assert_eq!(failures(&heard), 0, "not again after a restart");
    assert!(
        std::iter::from_fn(|| client.next_event()).all(|queued| {
            client.event_handled(queued.id).unwrap();
            !matches!(
                queued.event,
                async_offers::Event::InvoiceRefreshFailed { .. }
            )
        }),
        "nor in the queue"
    );
    client.stop();
}

/// `stop()` says each server is disconnected, and a start after it connects and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_reports_each_server_disconnected_and_a_restart_carries_on() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let (client, _) = victim(&server, dir.path(), 2, clock);
    let (listener, events) = events();
    client.add_listener(listener);
    let next_connection_event = || loop {
        match events.recv_timeout(WAIT).expect("a connection event") {
            event @ (async_offers::Event::ServerConnected { .. }
            | async_offers::Event::ServerDisconnected { .. }) => return event,
            _ => continue,
        }
    };
    let id = server.id();
    client.start().unwrap();
    assert_eq!(
        next_connection_event(),
        async_offers::Event::ServerConnected {
            server_node_id: id.clone()
        }
    );
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    client.stop();
    assert_eq!(
        next_connection_event(),
        async_offers::Event::ServerDisconnected {
            server_node_id: id.clone()
        }
    );
    client.take_offer(None).unwrap();
    client.start().unwrap();
    assert_eq!(
        next_connection_event(),
        async_offers::Event::ServerConnected { server_node_id: id }
    );
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
}
