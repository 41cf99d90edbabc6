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

/// `stop` during the refresh batch of an `update_channels` over 110 offers on slow flash lets
/// go of the data dir once the write under way is done, not after the batch; the offers the
/// batch did not reach, Ready ones too, get the new hints at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_refresh_batch_lets_go_of_the_data_dir_and_the_next_run_finishes_it() {
    const READY: usize = 100;
    const HANDED_OUT: usize = 10;
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-batch", client_dir.path());
    config.ready_offer_target = READY as u16;
    config.max_messages_per_minute = 10_000;
    config.channel_hints = vec![hint(0x24, 4 << 40, 1_000)];
    let store = FaultyStore::new(client_dir.path());
    let client = builder(config).store(store.clone()).build().unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(READY, WAIT).await.unwrap();
    for n in 0..HANDED_OUT {
        client.take_offer(Some(format!("order {n}"))).unwrap();
    }
    client.wait_for_ready_offers(READY, WAIT).await.unwrap();
    let offers = client.offers();
    assert_eq!(offers.len(), READY + HANDED_OUT);

    let write = Duration::from_millis(100);
    store.set_write_delay(write);
    let count = |of: &std::sync::atomic::AtomicUsize| of.load(std::sync::atomic::Ordering::SeqCst);
    let before = count(&store.writes_begun);
    let new_hint = hint(0x25, 5 << 40, 2_500);
    client.update_channels(vec![new_hint.clone()]).unwrap();
    while count(&store.writes_begun) < before + 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped_at = std::time::Instant::now();
    let begun_at_stop = count(&store.writes_begun);
    client.stop();
    let lock_file = client_dir.path().join("async-offers.lock");
    let released_after = tokio::task::spawn_blocking(move || {
        let lock = std::fs::File::open(lock_file).unwrap();
        while lock.try_lock().is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
        stopped_at.elapsed()
    })
    .await
    .unwrap();
    let ended_at_release = count(&store.writes_ended);
    // The write under way, and one whose invoice was being built when stop came.
    assert!(
        ended_at_release <= begun_at_stop + 1,
        "{} writes after stop before the data dir was let go of ({released_after:?})",
        ended_at_release - begun_at_stop
    );
    assert!(
        released_after < Duration::from_secs(2),
        "{released_after:?}"
    );

    store.set_write_delay(Duration::ZERO);
    let ids: HashSet<String> = offers.iter().map(|o| o.offer_id.clone()).collect();
    let mut seen = refreshed(&events, ids.len(), Duration::from_millis(500));
    assert!(
        seen.len() < ids.len() / 2,
        "{} refreshed before stop",
        seen.len()
    );
    client.start().unwrap();
    seen.extend(refreshed(&events, ids.len() - seen.len(), WAIT));
    assert_eq!(seen, ids, "every offer refreshed, Ready and handed out");
    let offers: Vec<String> = offers.iter().map(|o| o.offer.clone()).collect();
    assert_invoices_pay_over(&server, &offers, &new_hint).await;

    // Stopped, the client rebuilds nothing (it would hold the data dir for the batch): the
    // next start does.
    client.stop();
    let (before, later_hint) = (count(&store.writes_begun), hint(0x26, 6 << 40, 3_000));
    client.update_channels(vec![later_hint.clone()]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&store.writes_begun),
        before,
        "nothing written while stopped"
    );
    let lock = std::fs::File::open(client_dir.path().join("async-offers.lock")).unwrap();
    assert!(lock.try_lock().is_ok(), "the data dir is free");
    drop(lock);
    client.start().unwrap();
    assert_eq!(refreshed(&events, ids.len(), WAIT), ids);
    assert_invoices_pay_over(&server, &offers, &later_hint).await;
}
