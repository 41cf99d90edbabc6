//! The client never goes quietly stale: a channel change reaches every offer, Pending ones
//! too; a refresh the server never confirms backs off and is reported; bad hints are refused.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::{Error, ManualClock, OfferState};
use common::*;
use hostile::*;

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
    invoices_seen(&server, 2).await;
    assert_eq!(
        base_fees_of_invoice(&server, 1),
        vec![2_000],
        "the new channel"
    );

    // The old invoice's confirmation, late: it is not the invoice the offer now carries.
    server.confirm_invoice(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
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
