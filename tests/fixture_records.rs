//! Records written by earlier releases load unchanged. Each `tests/fixtures/data-dir-*` is a
//! data dir the command line of a release wrote (three offers, two handed out with labels),
//! and its `expected.json` what that run printed of them (and which release it was):
//! `data-dir-0.1.0` holds `AOF3` records, `data-dir-aof4` the `AOF4` ones of the release before
//! the current format, `data-dir-aof5` `AOF5` ones written before the refresh-failure flag
//! (type 7) was added. Every later release must read them as they are.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_offers::{AsyncOffersClient, Config, ManualClock, OfferState, ServerConfig};
use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::Network;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn expected(fixture: &str) -> Value {
    let path = Path::new(FIXTURES).join(fixture).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's records, copied to a new dir (a client may tighten their modes).
fn copy_of_fixture(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(FIXTURES)
        .join(fixture)
        .join("async_offers/offers");
    let to = dir.path().join("async_offers/offers");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    dir
}

fn records(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut records: Vec<_> = std::fs::read_dir(dir.join("async_offers/offers"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect();
    records.sort();
    records
}

fn client_of(expected: &Value, dir: &Path, clock: Arc<ManualClock>) -> AsyncOffersClient {
    let server = &expected["server"];
    let server = ServerConfig::from_hex(
        server["node_id"].as_str().unwrap(),
        server["address"].as_str().unwrap(),
        server["paths"].as_str().unwrap(),
    )
    .unwrap();
    let seed: [u8; 32] = Vec::<u8>::from_hex(expected["seed_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    AsyncOffersClient::builder(Config::new(Network::Regtest, dir, server), seed)
        .clock(clock)
        .build()
        .expect("the fixture's records load")
}

#[test]
fn records_of_release_0_1_0_load_unchanged() {
    loads_unchanged("data-dir-0.1.0");
}

#[test]
fn records_of_the_release_before_the_current_format_load_unchanged() {
    loads_unchanged("data-dir-aof4");
}

#[test]
fn records_of_the_release_before_the_refresh_failure_flag_load_unchanged() {
    loads_unchanged("data-dir-aof5");
}

/// Loads `fixture`'s records as the run that wrote them printed them, writing nothing; hands
/// out its offers as that run left them, and finds each written in the current format then.
fn loads_unchanged(fixture: &str) {
    let expected = expected(fixture);
    let dir = copy_of_fixture(fixture);
    let before = records(dir.path());
    let written_at = expected["offers"][0]["created_at"].as_u64().unwrap();
    let clock = Arc::new(ManualClock::new(Duration::from_secs(written_at + 3600)));
    let client = client_of(&expected, dir.path(), clock);

    let mut loaded: Vec<Value> = client
        .offers()
        .iter()
        .map(|offer| {
            serde_json::json!({
                "slot": offer.slot,
                "state": format!("{:?}", offer.state),
                "offer_id": offer.offer_id,
                "offer": offer.offer,
                "label": offer.label,
                "created_at": offer.created_at.as_secs(),
                "expires_at": offer.expires_at.map(|at| at.as_secs()),
            })
        })
        .collect();
    loaded.sort_by_key(|offer| offer["slot"].as_u64());
    assert_eq!(Value::Array(loaded), expected["offers"]);
    assert_eq!(records(dir.path()), before, "loading rewrites nothing");

    // The handed-out offers keep their labels; the Ready one is the one handed out next.
    let bio = client.offer_for("bio-1").unwrap();
    assert_eq!(bio.label.as_deref(), Some("bio-1"));
    assert_eq!(bio.state, OfferState::Used);
    let ready = expected["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|offer| offer["state"] == "Ready")
        .unwrap();
    let taken = client.take_offer(Some("next".into())).unwrap();
    assert_eq!(taken.offer_id, ready["offer_id"].as_str().unwrap());
    assert!(matches!(
        client.take_offer(None),
        Err(async_offers::Error::NoReadyOffer)
    ));

    // The offer handed out is written in the current format; a restart finds each offer once.
    let rewritten = records(dir.path());
    let changed: Vec<_> = rewritten
        .iter()
        .filter(|(key, _)| key.ends_with(&format!("_{:05}", taken.slot)))
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(&changed[0].1[..4], b"AOF5");
    drop(client);
    let clock = Arc::new(ManualClock::new(Duration::from_secs(written_at + 7200)));
    let again = client_of(&expected, dir.path(), clock);
    let mut states: Vec<_> = again
        .offers()
        .iter()
        .map(|offer| (offer.offer_id.clone(), offer.state, offer.label.clone()))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let mut wanted: Vec<_> = expected["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|offer| {
            let id = offer["offer_id"].as_str().unwrap().to_string();
            match offer["label"].as_str() {
                Some(label) => (id, OfferState::Used, Some(label.to_string())),
                None => (id, OfferState::Used, Some("next".to_string())),
            }
        })
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(states, wanted);
}
