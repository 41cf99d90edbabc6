//! The connection to a server on the links phones have: a handshake that completes only after
//! the client gave up on it, and a server that drops every connection soon after accepting it.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/proxy.rs"]
mod proxy;

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_offers::Config;
use common::*;
use hostile::HostileServer;
use lightning::bitcoin::Network;
use proxy::Proxy;

/// The first handshake's answer is held past the client's 10 s handshake timeout and let
/// through once the client dials again: the abandoned connection must not live on beside the
/// new one (LDK refuses a second connection to a peer, and a late `init` must not pass for the
/// new connection's), so the client connects on its second dial and fills. The first kept
/// connection begins 300 ms after the start, after the peer timer's first tick: LDK itself
/// would only drop that handshake at its tick 20 s in, so nothing but the client ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_completing_after_the_client_gave_up_on_it_strands_nothing() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let proxy = Proxy::start(&server.local_addr().to_string()).await;
    proxy.refuse_for(Duration::from_millis(300));
    proxy.hold_the_first_handshake_until_the_next_dial();
    let mut config = config_for(&server, b"wallet-late-handshake", client_dir.path());
    config.servers[0].address = proxy.address.clone();
    config.ready_offer_target = 3;
    let client = client(config);
    client.start().unwrap();

    client
        .wait_for_ready_offers(3, Duration::from_secs(40))
        .await
        .expect("filled");
    // Long enough for any connection the client should not have to be found out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(proxy.dials(), 2, "one dial given up, one that worked");
    assert!(
        client.status().servers[0].connected,
        "{:?}",
        client.status()
    );
    // Still working: an offer handed out is replaced.
    let offer = client.take_offer(Some("after a slow link".into())).unwrap();
    client
        .wait_for_ready_offers(3, Duration::from_secs(10))
        .await
        .expect("the offer handed out was replaced");
    assert_payable(&server, &[offer]).await;
}

/// A started client of `server` wanting three offers, dialling it through `proxy`.
fn started_through(
    proxy: &Proxy,
    server: &HostileServer,
    dir: &std::path::Path,
) -> async_offers::AsyncOffersClient {
    let mut server_config = server.config.clone();
    server_config.address = proxy.address.clone();
    let mut config = Config::new(Network::Regtest, dir, server_config);
    config.ready_offer_target = 3;
    config.tick_interval = Duration::from_millis(50);
    let client = client(config);
    client.start().unwrap();
    client
}

/// A server that accepts every connection and drops it 300 ms later, never answering (one
/// that refuses the client's transport id, or restarts in a loop), while three invoices wait
/// for its confirmation: the client dials it less and less often, and resends each invoice at
/// its own backoff rather than on every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dropping_every_connection_is_dialled_with_backoff_and_not_flooded() {
    let server = HostileServer::start().await;
    // Offer paths for every slot, and then silence: the invoices are never confirmed.
    server.handler.never_confirm.store(true, Ordering::SeqCst);
    let proxy = Proxy::start(&server.config.address).await;
    let dir = tempfile::tempdir().unwrap();
    let _client = started_through(&proxy, &server, dir.path());
    let deadline = std::time::Instant::now() + WAIT;
    while server.seen().invoices.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no invoices sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.handler.honest.store(false, Ordering::SeqCst);
    proxy.drop_each_after(Duration::from_millis(300));
    let (dials, bytes, invoices) = (
        proxy.dials(),
        proxy.bytes_from_client(),
        server.seen().invoices.len(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let dials = proxy.dials() - dials;
    let bytes = proxy.bytes_from_client() - bytes;
    let invoices = server.seen().invoices.len() - invoices;
    eprintln!("in 10 s: {dials} dials, {invoices} invoices resent, {bytes} bytes sent");
    assert!(dials <= 10, "{dials} dials in 10 s");
    assert!(invoices <= 6, "{invoices} invoices resent in 10 s");
    assert!(bytes <= 256 * 1024, "{bytes} bytes sent in 10 s");
}

/// The same server, answering no request at all, while the client misses three offers: the
/// first connection asks for them; the connections after it, each dropped without a word, ask
/// nothing more until those requests' own retry (15 s), rather than asking anew on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dropping_every_connection_is_not_asked_again_on_each() {
    let server = HostileServer::start().await;
    server.handler.honest.store(false, Ordering::SeqCst);
    let proxy = Proxy::start(&server.config.address).await;
    proxy.drop_each_after(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let _client = started_through(&proxy, &server, dir.path());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (dials, requests) = (proxy.dials(), server.seen().requests.len());
    eprintln!("in 10 s: {dials} dials, {requests} offer paths requests");
    assert!(dials <= 10, "{dials} dials in 10 s");
    assert!(requests <= 3, "{requests} requests in 10 s");
}

/// What a server has not answered yet is bounded by the bytes its answers take in its buffer
/// for us (LDK drops what passes 256 KiB per peer), not by a count: a fill of 20 asks for all
/// its offer paths in one turn, where a window of six requests cost a round trip per six.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_of_twenty_asks_for_all_its_offer_paths_at_once() {
    let server = HostileServer::start().await;
    // It takes every request and answers none.
    server.handler.honest.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(Network::Regtest, dir.path(), server.config.clone());
    config.offer_check_interval = Duration::ZERO;
    config.ready_offer_target = 20;
    // Time stands still for the client: no unanswered request stops counting, none is retried.
    let client = builder(config)
        .clock(std::sync::Arc::new(
            async_offers::ManualClock::starting_now(),
        ))
        .build()
        .unwrap();
    client.start().unwrap();
    let all_asked = async {
        while server.seen().requests.len() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let asked = tokio::time::timeout(Duration::from_secs(10), all_asked).await;
    assert!(
        asked.is_ok(),
        "asked for {} offer paths",
        server.seen().requests.len()
    );
    // And no more than the fill needs, however long.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.seen().requests.len(), 20);
}
