//! What a published offer survives: a reinstall or a restore from seed, where a new install on
//! the same seed and server starts from an empty data dir.

mod common;

use std::collections::HashSet;

use common::*;

/// An install fills three offers and hands out two (a QR code, a bio); the app is reinstalled
/// and fills ten offers from an empty data dir with the same seed. The first install's
/// offers must still be served with their own invoices. With slots drawn at random from all
/// 65,536, the two installs share a slot with odds of about 2 × 10 / 65,536 (0.03 %); the
/// lowest free slots, as before, made it certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_install_on_the_same_seed_leaves_the_published_offers_payable() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let first_dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet", first_dir.path());
    config.offer_slots = 3;
    let first = client(config);
    first.start().unwrap();
    first.wait_for_ready_offers(3, WAIT).await.unwrap();
    let published = vec![
        first.take_offer(Some("qr".into())).unwrap(),
        first.take_offer(Some("bio".into())).unwrap(),
    ];
    first.stop();
    drop(first);

    let second_dir = tempfile::tempdir().unwrap();
    let config = config_for(&server, b"wallet", second_dir.path());
    let second = client(config);
    second.start().unwrap();
    let ready = second.wait_for_ready_offers(10, WAIT).await.unwrap();
    let published_slots: HashSet<u16> = published.iter().map(|o| o.slot).collect();
    let new_slots: HashSet<u16> = ready.iter().map(|o| o.slot).collect();
    assert!(
        published_slots.is_disjoint(&new_slots),
        "the new install took slots {new_slots:?}, the published offers are in {published_slots:?}"
    );
    assert_payable(&server, &published).await;
    assert_payable(&server, &ready).await;
    second.stop();
}

/// A server that limits its slots gets only those, and a range too small for the offers
/// wanted is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_take_slots_of_the_configured_range_only() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet", dir.path());
    config.offer_slots = 4;
    config.invoice_slots = 1000..=1002;
    let refused = async_offers::AsyncOffersClient::new(config.clone(), SEED).err();
    assert!(
        matches!(&refused, Some(async_offers::Error::InvalidConfig(why)) if why.contains("invoice_slots")),
        "{refused:?}"
    );
    config.invoice_slots = 1000..=1005;
    let client = client(config);
    client.start().unwrap();
    let ready = client.wait_for_ready_offers(4, WAIT).await.unwrap();
    assert!(
        ready.iter().all(|o| (1000..=1005).contains(&o.slot)),
        "{ready:?}"
    );
    assert_payable(&server, &ready).await;
    client.stop();
}
