//! What a published offer survives: a reinstall or a restore from seed, where a new install on
//! the same seed and server starts from an empty data dir.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    let (_, first) = filled_client(&server, first_dir.path(), 3).await;
    let published = vec![
        first.take_offer(Some("qr".into())).unwrap(),
        first.take_offer(Some("bio".into())).unwrap(),
    ];
    first.stop();
    drop(first);
    // Once filled, the install's slot key is on disk: it comes back to the same slots.
    drop(client(config_for(&server, b"wallet", first_dir.path())));
    assert!(first_dir.path().join("async_offers/install_key").exists());

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
    config.ready_offer_target = 4;
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

/// The app backs up its offer book; the phone is replaced and the backup restored into a new
/// install. The published offers are listed there, get fresh invoices on the server from it,
/// stay payable, and their slots are never given to new offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_offer_book_keeps_the_published_offers_refreshed_and_their_slots() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let first_dir = tempfile::tempdir().unwrap();
    let (_, first) = filled_client(&server, first_dir.path(), 3).await;
    let published = vec![
        first.offer_for("qr").unwrap(),
        first.offer_for("bio").unwrap(),
    ];
    let book = first.export_offers().unwrap();
    first.stop();
    drop(first);

    let restored_dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&server, b"wallet", restored_dir.path());
    config.invoice_refresh_interval = Duration::from_secs(1);
    let restored = client(config);
    assert!(matches!(
        restored.import_offers(&book[..book.len() - 1]),
        Err(async_offers::Error::InvalidOfferBook(_))
    ));
    let imported = restored.import_offers(&book).unwrap();
    assert_eq!((imported.imported, imported.conflicting), (2, 0));
    for offer in &published {
        let label = offer.label.as_deref().unwrap();
        assert_eq!(restored.offer_for(label).unwrap().offer_id, offer.offer_id);
    }
    let (listener, events) = events();
    restored.add_listener(listener);
    restored.start().unwrap();
    let ready = restored.wait_for_ready_offers(10, WAIT).await.unwrap();
    let published_slots: HashSet<u16> = published.iter().map(|o| o.slot).collect();
    assert!(ready.iter().all(|o| !published_slots.contains(&o.slot)));
    // Invoice times are whole seconds: after two, the published offers' invoices are due.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: HashSet<String> = published.iter().map(|o| o.offer_id.clone()).collect();
    let refreshed = refreshed(&events, ids.len(), WAIT);
    assert!(ids.is_subset(&refreshed), "refreshed by the new install");
    assert_payable(&server, &published).await;
    restored.stop();
}

/// A book imported where its offers are still Ready (a copy of the data dir from before they
/// were handed out) marks them handed out: `take_offer` never gives them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_offers_known_here_as_ready_never_hands_them_out_twice() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let (config, first) = filled_then_copied(&server, dir.path(), copy.path()).await;

    let published = [
        first.take_offer(Some("a".into())).unwrap(),
        first.take_offer(Some("b".into())).unwrap(),
    ];
    let book = first.export_offers().unwrap();
    let again = first.import_offers(&book).unwrap();
    assert_eq!((again.imported, again.already_here), (0, 2), "already here");
    drop(first);

    let mut copy_config = config;
    copy_config.data_dir = copy.path().to_path_buf();
    let other = client(copy_config);
    assert_eq!(other.import_offers(&book).unwrap().imported, 2);
    let left = other.take_offer(None).unwrap();
    assert!(published.iter().all(|o| o.offer_id != left.offer_id));
    assert!(matches!(
        other.take_offer(None),
        Err(async_offers::Error::NoReadyOffer)
    ));
    assert_eq!(
        other.offer_for("a").unwrap().offer_id,
        published[0].offer_id
    );
}

/// An import whose writes fail (a full disk) is taken back: a retry while the disk is full
/// fails again instead of finding the offers "already here", a retry once it has room writes
/// them, and after a restart the book's offer is never handed out again. Before the take-back,
/// the retry returned `Ok` having written nothing, and the restarted install handed the
/// published offer out a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_retried_then_a_restart_never_hands_out_the_books_offer_again() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let (config, first) = filled_then_copied(&server, dir.path(), copy.path()).await;
    let published = first.take_offer(Some("a".into())).unwrap();
    let book = first.export_offers().unwrap();
    drop(first);

    let mut copy_config = config;
    copy_config.data_dir = copy.path().to_path_buf();
    let store = FaultyStore::new(copy.path());
    store.full.store(true, Ordering::SeqCst);
    let other = builder(copy_config.clone())
        .store(store.clone())
        .build()
        .unwrap();
    for attempt in ["first", "retry"] {
        let failed = other.import_offers(&book);
        assert!(
            matches!(&failed, Err(async_offers::Error::Storage(why)) if why.contains("no space left")),
            "{attempt} import on a full disk: {failed:?}"
        );
        let here = other.offers();
        let state = here.iter().find(|o| o.offer_id == published.offer_id);
        assert_eq!(
            state.map(|o| o.state),
            Some(async_offers::OfferState::Ready),
            "{attempt}: in memory as on disk"
        );
    }
    store.full.store(false, Ordering::SeqCst);
    let imported = other.import_offers(&book).unwrap();
    assert_eq!((imported.imported, imported.already_here), (1, 0));
    drop(other);

    let restarted = client(copy_config);
    let mut handed_out = Vec::new();
    while let Ok(offer) = restarted.take_offer(None) {
        handed_out.push(offer.offer_id);
    }
    assert_eq!(handed_out.len(), 2, "the other two Ready offers");
    assert!(
        !handed_out.contains(&published.offer_id),
        "the book's offer was handed out again"
    );
    assert_eq!(
        restarted.offer_for("a").unwrap().offer_id,
        published.offer_id
    );
}

/// A book exported by another wallet (another seed) is refused, naming why, and changes
/// nothing: its offers' signing keys are not ones this seed derives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_of_another_wallet_is_refused_and_changes_nothing() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let theirs_dir = tempfile::tempdir().unwrap();
    let mut theirs_config = config_for(&server, b"wallet", theirs_dir.path());
    theirs_config.ready_offer_target = 1;
    let theirs = async_offers::AsyncOffersClient::builder(theirs_config, [0x22; 32])
        .runtime(tokio::runtime::Handle::current())
        .build()
        .unwrap();
    theirs.start().unwrap();
    theirs.wait_for_ready_offers(1, WAIT).await.unwrap();
    theirs.take_offer(Some("theirs".into())).unwrap();
    let their_book = theirs.export_offers().unwrap();
    theirs.stop();

    let ours_dir = tempfile::tempdir().unwrap();
    let (_, ours) = filled_client(&server, ours_dir.path(), 2).await;
    // Ids, states and labels: a refresh may change an invoice's confirmation time meanwhile.
    let kept = |client: &async_offers::AsyncOffersClient| {
        let mut offers: Vec<_> = client
            .offers()
            .into_iter()
            .map(|o| (o.offer_id, o.state, o.label))
            .collect();
        offers.sort_by(|a, b| a.0.cmp(&b.0));
        offers
    };
    let before = kept(&ours);
    let refused = ours.import_offers(&their_book);
    assert!(
        matches!(&refused, Err(async_offers::Error::InvalidOfferBook(why)) if why.contains("not made by this wallet")),
        "{refused:?}"
    );
    assert_eq!(kept(&ours), before);
    ours.stop();
}

/// A client of three Ready offers in `dir`, stopped, with a copy of its data dir in `copy`
/// made before anything is handed out; and its config.
async fn filled_then_copied(
    server: &async_offers_server::RunningServer,
    dir: &std::path::Path,
    copy: &std::path::Path,
) -> (async_offers::Config, async_offers::AsyncOffersClient) {
    let (config, first) = filled_client(server, dir, 3).await;
    first.stop();
    drop(first);
    // Opened again first: a build waits for the stopped client's last writes (its install
    // key), which a copy made meanwhile could catch half-done.
    let first = client(config.clone());
    copy_dir(dir, copy);
    (config, first)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
