//! What the client leaves behind: no key material, label or payer's note in its logs at any
//! level (LDK's trace included), and a data dir no other user can read.

mod common;

use std::sync::{Mutex, OnceLock};

use std::sync::Arc;
use std::time::Duration;

use async_offers::keys::WalletKeys;
use async_offers::{Event, InvoiceRequestTarget, ManualClock};
use async_offers_server::PAYER_NOTE;
use common::*;
use lightning::bitcoin::hex::DisplayHex;

/// Every log record of this test binary, at every level.
struct Capture(Mutex<String>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!(
            "{} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        self.0.lock().unwrap().push_str(&line);
    }
    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| Capture(Mutex::new(String::new())));
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    capture
}

const HOUR: Duration = Duration::from_secs(3600);

/// The ways a 32-byte secret could be printed.
fn renderings(secret: &[u8]) -> Vec<String> {
    let hex = secret.as_hex().to_string();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        format!("{secret:?}"),
        format!("{:?}", secret.to_vec()),
        // A leak could be cut anywhere; any 12 bytes of it is already far too much.
        hex[..24].to_string(),
        hex[hex.len() - 24..].to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_material_reaches_the_logs_at_any_level() {
    let capture = captured();
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"private-wallet", client_dir.path());
    config.ready_offer_target = 3;

    // Filling, handing out, new channels, and a restart from disk.
    let client = client(config.clone());
    client.start().unwrap();
    client.wait_for_ready_offers(3, WAIT).await.unwrap();
    client.take_offer(Some("a contact".into())).unwrap();
    client
        .update_channels(vec![hint(7, 42 << 40, 1_000)])
        .unwrap();
    client.wait_for_ready_offers(3, WAIT).await.unwrap();
    client.stop();
    drop(client);
    let restarted = common::client(config);
    assert_eq!(restarted.offers().len(), 4);

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.lines().count() > 100 && logs.contains("TRACE ldk:"),
        "the test must see LDK's trace records to mean anything (run it without RUST_LOG)"
    );
    let keys = WalletKeys::from_seed(&SEED);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("seed", SEED.to_vec()),
        (
            "wallet node secret",
            keys.wallet_keys_manager()
                .get_node_secret_key()
                .secret_bytes()
                .to_vec(),
        ),
        (
            "transport node secret",
            keys.transport_keys_manager()
                .get_node_secret_key()
                .secret_bytes()
                .to_vec(),
        ),
        (
            "wallet receive auth key",
            keys.wallet_receive_auth_key().0.to_vec(),
        ),
        (
            "transport receive auth key",
            keys.transport_receive_auth_key().0.to_vec(),
        ),
    ];
    for (name, secret) in secrets {
        for rendering in renderings(&secret) {
            assert!(
                !logs.contains(&rendering),
                "the {name} appears in the logs as {rendering}"
            );
        }
    }
}

/// Labels name the app's contacts and payers' notes are theirs: the events carry them to the
/// app, the logs only ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_payer_notes_never_reach_the_logs() {
    let capture = captured();
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"private-labels", client_dir.path());
    config.ready_offer_target = 2;
    config.invoice_request_target = InvoiceRequestTarget::Client;
    // A refresh that comes due within the test: its failure is told three hours on.
    config.invoice_refresh_interval = 2 * HOUR;
    let clock = Arc::new(ManualClock::starting_now());
    let client = builder(config).clock(clock.clone()).build().unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
    let label = "Alice Liddell, my sister";
    let offer = client.offer_for(label).unwrap();
    assert_payable(&server, std::slice::from_ref(&offer)).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(std::time::Instant::now() < deadline, "no forwarded request");
        match events.recv_timeout(WAIT) {
            Ok(Event::InvoiceRequestForwarded { payer_note, .. }) => {
                assert_eq!(payer_note.as_deref(), Some(PAYER_NOTE));
                break;
            }
            _ => continue,
        }
    }
    // The server goes away for good: three hours on, the app hears that the labelled offer's
    // refresh failed, label and all.
    server.stop();
    while client.status().servers[0].connected {
        assert!(std::time::Instant::now() < deadline, "never disconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clock.advance(3 * HOUR + Duration::from_secs(60));
    loop {
        assert!(std::time::Instant::now() < deadline, "no refresh failure");
        match events.recv_timeout(WAIT) {
            Ok(Event::InvoiceRefreshFailed { offer, .. }) => {
                assert_eq!(offer.label.as_deref(), Some(label));
                break;
            }
            _ => continue,
        }
    }
    // Debug and up: at trace, LDK's own records print whole messages, notes included.
    let logs: String = capture
        .0
        .lock()
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("TRACE"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        logs.contains("DEBUG async_offers::events"),
        "events are logged"
    );
    assert!(!logs.contains(label), "the label is in the logs");
    assert!(
        !logs.contains(PAYER_NOTE),
        "the payer's note is in the logs"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_its_records_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;

    let server_dir = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    // Created by the client.
    let fresh = parent.path().join("new").join("offers");
    let config = config_for(&server, b"w", &fresh);
    let slots = usize::from(config.ready_offer_target);
    let client = client(config);
    assert_eq!(mode(&fresh), 0o700);
    client.start().unwrap();
    // Every slot written before looking: a record still being written would be seen between
    // `lightning-persister`'s rename and our chmod, with the mode the umask gave it.
    client.wait_for_ready_offers(slots, WAIT).await.unwrap();
    client.take_offer(Some("a contact".into())).unwrap();
    client.stop();
    drop(client);
    // A client opened on the dir waits for the stopped one's last writes (the install key, say),
    // which are chmodded only after their rename.
    drop(common::client(config_for(&server, b"w", &fresh)));
    // And every record in it, written, rewritten or not.
    let mut records = Vec::new();
    let mut dirs = vec![fresh.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => dirs.push(path),
                false => records.push(path),
            }
        }
    }
    assert!(!records.is_empty());
    for record in &records {
        assert_eq!(mode(record), 0o600, "{}", record.display());
    }

    // Handed over open to everyone: closed at start.
    let open = parent.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _client = common::client(config_for(&server, b"w2", &open));
    assert_eq!(mode(&open), 0o700);
}
