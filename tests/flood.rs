//! A hostile server's duplicate, unknown and flooded confirmations (`common/hostile.rs`),
//! alone in its process so that its live heap is the client's alone.

mod common;
#[path = "../benches/support/heap.rs"]
mod heap;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::ManualClock;
use common::*;
use hostile::*;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_unknown_and_flooded_confirmations_are_ignored_in_bounded_memory() {
    let server = HostileServer::start().await;
    server.handler.honest.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let (client, mut stored) = victim(&server, dir.path(), 1, clock.clone());
    client.start().unwrap();
    requests_seen(&server, 1).await;
    let expiry = (now() + Duration::from_secs(365 * 24 * 3600)).as_secs();
    let slot = server.seen().requests[0].0;
    server.answer_request(slot, None, server.handler.offer_paths(Some(expiry), 1));
    let deadline = Instant::now() + WAIT;
    while server.seen().invoices.is_empty() {
        assert!(Instant::now() < deadline, "no invoice sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.confirm_invoice(0);
    stored.ready(1).await;
    let ready = snapshot(&client, dir.path());

    // The same confirmation again.
    let mark = log_mark();
    server.confirm_invoice(0);
    logged(mark, &["duplicate or stale confirmation", &server.id()]).await;
    assert_eq!(snapshot(&client, dir.path()), ready);

    // Ten thousand times more, replayed as fast as the socket takes them.
    let heap_before = heap::live_bytes();
    let ignored_before = logs().ignored_confirmations.load(Ordering::SeqCst);
    logs().flooding.store(true, Ordering::SeqCst);
    server.flood_confirmations(0, 10_000);
    let deadline = Instant::now() + Duration::from_secs(120);
    while logs().ignored_confirmations.load(Ordering::SeqCst) < ignored_before + 10_000 {
        assert!(Instant::now() < deadline, "the flood was not all handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    logs().flooding.store(false, Ordering::SeqCst);
    let grown = heap::live_bytes().saturating_sub(heap_before);
    assert!(
        grown < 1 << 20,
        "the flood left {grown} bytes more on the heap"
    );
    assert_eq!(snapshot(&client, dir.path()), ready);

    // Once the offer has expired and is gone, its confirmation names an unknown offer.
    clock.advance(Duration::from_secs(366 * 24 * 3600));
    let deadline = Instant::now() + WAIT;
    while !client.offers().is_empty() {
        assert!(Instant::now() < deadline, "the expired offer stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mark = log_mark();
    server.confirm_invoice(0);
    logged(mark, &["confirmation for an unknown offer ignored"]).await;
    assert!(client.offers().is_empty());
    assert_eq!(panics(), 0, "something panicked");
}
