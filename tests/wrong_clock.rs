//! A wall clock that is wrong for a while (a dead RTC battery, a manual date change, bad
//! network time) loses no published offer and stalls nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::{AsyncOffersClient, Config, Event, ManualClock, OfferState};
use common::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn client_with_clock(config: Config, clock: Arc<ManualClock>) -> AsyncOffersClient {
    builder(config).clock(clock).build().unwrap()
}

/// Two offers handed out, with paths valid a year. The app runs once with the clock 400 days
/// ahead: both look expired, and are announced so, but keep their records and slots. With
/// the clock right again they are listed, given to their labels and served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_400_days_ahead_and_back_loses_no_handed_out_offer() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, first) = filled_client(&server, dir.path(), 3).await;
    let published = vec![
        first.offer_for("qr").unwrap(),
        first.offer_for("bio").unwrap(),
    ];
    first.stop();
    drop(first);

    let ahead = client_with_clock(
        config.clone(),
        Arc::new(ManualClock::new(now() + 400 * DAY)),
    );
    let (listener, events) = events();
    ahead.add_listener(listener);
    ahead.start().unwrap();
    let mut expired = Vec::new();
    while expired.len() < published.len() {
        match events.recv_timeout(WAIT) {
            Ok(Event::OfferExpired { offer_id }) => expired.push(offer_id),
            Ok(_) => {}
            Err(e) => panic!("expiry not announced: {e}"),
        }
    }
    for offer in &published {
        assert!(expired.contains(&offer.offer_id));
    }
    // A few more maintenance ticks with the clock wrong.
    tokio::time::sleep(Duration::from_millis(600)).await;
    ahead.stop();
    drop(ahead);

    let right = client(config);
    let kept: Vec<_> = right
        .offers()
        .into_iter()
        .filter(|o| o.state == OfferState::Used)
        .collect();
    assert_eq!(kept.len(), 2, "both handed-out offers are kept: {kept:?}");
    for offer in &published {
        let again = right.offer_for(offer.label.as_deref().unwrap()).unwrap();
        assert_eq!(again.offer_id, offer.offer_id, "the label keeps its offer");
    }
    assert_payable(&server, &published).await;
}

/// The send budget is spent filling; then the wall clock goes back a day. A minute later by
/// the monotonic clock what waited for the budget leaves: the budget counts that minute, not
/// the wall clock's day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_a_day_behind_does_not_stall_sending() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet", dir.path());
    config.ready_offer_target = 4;
    // Four requests leave, and their four invoices wait for the next minute.
    config.max_messages_per_minute = 4;
    let clock = Arc::new(ManualClock::new(now()));
    let client = client_with_clock(config, clock.clone());
    client.start().unwrap();
    assert!(matches!(
        client
            .wait_for_ready_offers(1, Duration::from_millis(1500))
            .await,
        Err(async_offers::Error::Timeout)
    ));
    clock.set_wall(now() - DAY);
    clock.advance(Duration::from_secs(61));
    let ready = client.wait_for_ready_offers(4, WAIT).await.unwrap();
    assert_payable(&server, &ready).await;
    client.stop();
}

/// A handed-out offer's refreshes keep the monotonic clock's schedule: with the wall clock a
/// day behind, the refresh comes two hours on all the same; with it a day ahead, the refresh
/// made then carries a creation time a day ahead, and once the clock is put right the next
/// refresh still comes two hours later, not a day late. (They ran on the wall clock: the first
/// waited a day, the last as long.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_keep_their_schedule_with_the_wall_clock_a_day_behind_or_ahead_and_back() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet", dir.path());
    config.ready_offer_target = 1;
    config.invoice_refresh_interval = 2 * HOUR;
    let start = now();
    let clock = Arc::new(ManualClock::new(start));
    let client = client_with_clock(config, clock.clone());
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let offer = client.take_offer(Some("bio".into())).unwrap();
    let refreshed = || loop {
        match events.recv_timeout(WAIT) {
            Ok(Event::InvoiceRefreshed { offer_id }) if offer_id == offer.offer_id => return,
            Ok(_) => continue,
            Err(e) => panic!("no refresh: {e}"),
        }
    };
    let mut elapsed = Duration::ZERO;
    for (step, wall_skew) in [
        ("a day behind", -1i32),
        ("a day ahead", 1),
        ("put right", 0),
    ] {
        let step_length = 2 * HOUR + Duration::from_secs(60);
        elapsed += step_length;
        let right = start + elapsed;
        // The wall clock is set wrong first, so that no tick sees it right in between.
        clock.set_wall(
            match wall_skew {
                -1 => right - DAY,
                1 => right + DAY,
                _ => right,
            } - step_length,
        );
        clock.advance(step_length);
        eprintln!("{step}");
        refreshed();
    }
    assert_payable(&server, &[offer]).await;
    client.stop();
}

const HOUR: Duration = Duration::from_secs(3600);
