//! Many app threads at once, and listeners that panic: no offer handed out twice, no event
//! or refill lost.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use async_offers::{Error, Event, EventListener, OfferState};
use common::*;

const THREADS: usize = 16;
const CALLS_PER_THREAD: usize = 63;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_offer_from_sixteen_threads_never_hands_out_one_offer_twice() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"busy-wallet", client_dir.path());
    config.ready_offer_target = 40;
    config.max_messages_per_minute = u32::MAX;
    let client = Arc::new(client(config.clone()));
    client.start().unwrap();
    client.wait_for_ready_offers(40, WAIT).await.unwrap();

    // 1,008 calls, all released at once; refills go on underneath.
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (client, start) = (client.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                (0..CALLS_PER_THREAD)
                    .filter_map(|call| {
                        let label = format!("thread {thread} call {call}");
                        match client.take_offer(Some(label.clone())) {
                            Ok(offer) => Some((offer, label)),
                            Err(Error::NoReadyOffer) => None,
                            Err(e) => panic!("take_offer failed: {e}"),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut handed_out = HashMap::new();
    for thread in threads {
        for (offer, label) in thread.join().unwrap() {
            assert_eq!(offer.state, OfferState::Used);
            assert_eq!(offer.label.as_deref(), Some(label.as_str()));
            let earlier = handed_out.insert(offer.offer_id.clone(), label);
            assert!(earlier.is_none(), "{} handed out twice", offer.offer_id);
        }
    }
    assert!(
        handed_out.len() >= 40,
        "every Ready offer was there to take, got {}",
        handed_out.len()
    );
    client.stop();
    drop(client);

    // On disk as handed out: Used, each with the label of the one call that got it.
    let restarted = common::client(config);
    let kept: HashMap<String, Option<String>> = restarted
        .offers()
        .into_iter()
        .filter(|o| o.state == OfferState::Used)
        .map(|o| (o.offer_id, o.label))
        .collect();
    assert_eq!(kept.len(), handed_out.len());
    for (id, label) in &handed_out {
        assert_eq!(kept.get(id), Some(&Some(label.clone())), "offer {id}");
    }
}

/// Panics on every event.
struct Panicking;

impl EventListener for Panicking {
    fn on_event(&self, _event: Event) {
        panic!("a listener bug");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_listener_stops_neither_events_nor_filling() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"listening-wallet", client_dir.path());
    config.ready_offer_target = 5;
    let client = client(config);
    client.add_listener(Arc::new(Panicking));
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(5, WAIT).await.unwrap();

    // Each OfferReady reached the listener after the one that panicked on it, and a handout's
    // refill still happens.
    let mut ready = 0;
    while ready < 5 {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::OfferReady { .. }) => ready += 1,
            Ok(_) => {}
            Err(e) => panic!("only {ready} OfferReady events: {e}"),
        }
    }
    client.take_offer(None).unwrap();
    loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::OfferReady { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("no refill after a handout: {e}"),
        }
    }
    assert_eq!(client.ready_offers().len(), 5);
}
