//! Entry points for the fuzz targets (`fuzz/`) and for the test that replays their corpus
//! (`tests/fuzz_corpus.rs`). Not part of the API: no stability promise.
//!
//! Each takes arbitrary bytes and must never panic; it checks its own invariants and panics
//! only when one is broken, which is what the fuzzer reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lightning::bitcoin::hashes::Hash;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, OffersContext,
};
use lightning::io;
use lightning::offers::invoice_request::InvoiceRequest;
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessageHandler, OfferPaths, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::Responder;
use lightning::onion_message::offers::{OffersMessage, OffersMessageHandler};
use lightning::sign::ReceiveAuthKey;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::Readable;

use crate::clock::{Clock, ManualClock};
use crate::config::{Config, InvoiceRequestTarget, ServerConfig};
use crate::events::EventBus;
use crate::flow::{Engine, EngineHost, Offload};
use crate::handler::ProtocolHandler;
use crate::io::records::{decode, encode, MAGIC as CURRENT_RECORD_MAGIC};
use crate::io::seal::CHECKSUM_LEN;
use crate::io::store::OfferStore;
use crate::keys::WalletKeys;
use crate::offers::builder::OfferFactory;
use crate::offers::cache::OfferState;

/// A stored record, as read back at start. With a leading 0 the rest is decoded as it is
/// (the checksum catches nearly every mutation); otherwise the rest is a record body given its
/// correct checksum, so the fuzzer reaches the parsing behind it. What decodes must encode to
/// the same bytes.
pub fn decode_record(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let record = if mode == 0 {
        rest.to_vec()
    } else {
        let mut record = rest.to_vec();
        let checksum = lightning::bitcoin::hashes::sha256::Hash::hash(rest).to_byte_array();
        record.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        record
    };
    if let Ok((offer, single_server)) = decode(&record, server_id()) {
        let again = encode(&offer);
        let (back, _) = decode(&again, server_id()).expect("a re-encoded record decodes");
        assert_eq!(encode(&back), again, "encoding is stable");
        // Records of earlier formats are rewritten in the current one.
        if !single_server && record.starts_with(CURRENT_RECORD_MAGIC) {
            assert_eq!(again, record, "a record decodes to what encodes it");
        }
    }
}

/// The protocol handler and the app's calls, driven by `data`: a sequence of operations, each
/// `[kind][length: u16 big-endian][payload]`. Messages and contexts are LDK's encodings, as a
/// server could send them (contexts included, which LDK would normally authenticate). After
/// each operation: at most one offer per slot, and every offer handed out stays Used with its
/// label until it expires. Returns the states of the offers at the end.
pub fn protocol_operations(data: &[u8]) -> Vec<OfferState> {
    let harness = Harness::new();
    let mut handed_out = HandedOut::new();
    let mut rest = data;
    while let Some((kind, payload, tail)) = next_operation(rest) {
        rest = tail;
        harness.apply(kind, payload, &mut handed_out);
        harness.run_jobs();
        harness.check(&handed_out);
    }
    harness
        .engine
        .offers()
        .into_iter()
        .map(|o| o.state)
        .collect()
}

/// Offers handed out by id: their label and expiry.
type HandedOut = HashMap<String, (Option<String>, Option<Duration>)>;

fn next_operation(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&kind, rest) = data.split_first()?;
    let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let rest = &rest[2..];
    let len = len.min(rest.len());
    Some((kind, &rest[..len], &rest[len..]))
}

/// `[length: u16][bytes]` and what follows, or the whole input as one piece.
fn split_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    match data.get(..2) {
        Some(len) => {
            let len = (u16::from_be_bytes([len[0], len[1]]) as usize).min(data.len() - 2);
            (&data[2..2 + len], &data[2 + len..])
        }
        None => (data, &[]),
    }
}

fn read<T: Readable>(bytes: &[u8]) -> Option<T> {
    T::read(&mut &bytes[..]).ok()
}

fn server_id() -> PublicKey {
    static SERVER: OnceLock<PublicKey> = OnceLock::new();
    *SERVER.get_or_init(|| {
        PublicKey::from_secret_key(
            &Secp256k1::signing_only(),
            &SecretKey::from_slice(&[0xee; 32]).expect("valid key"),
        )
    })
}

/// The time every run starts at (fixed: runs must repeat).
const START: Duration = Duration::from_secs(1_800_000_000);

type Jobs = Arc<Mutex<Vec<Box<dyn FnOnce() + Send>>>>;

struct Harness {
    handler: ProtocolHandler,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    /// Work the engine hands off, run after each operation, in order: repeatable, and never
    /// on a thread holding the engine's lock.
    jobs: Jobs,
}

impl Harness {
    fn new() -> Self {
        let keys = Arc::new(WalletKeys::with_rng_start(&[0x5a; 32], START));
        let secp = Secp256k1::new();
        let context = MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
            recipient_id: vec![1],
            path_absolute_expiry: None,
        });
        let server_path = BlindedMessagePath::one_hop(
            server_id(),
            ReceiveAuthKey([7; 32]),
            context,
            &**keys.wallet_keys_manager(),
            &secp,
        );
        let mut config = Config::new(
            Network::Regtest,
            "unused",
            ServerConfig {
                node_id: server_id(),
                address: "127.0.0.1:9735".into(),
                paths: vec![server_path],
            },
        );
        config.ready_offer_target = 4;
        let factory = OfferFactory::new(
            keys.clone(),
            Network::Regtest,
            InvoiceRequestTarget::WalletNode,
        );
        let clock = Arc::new(ManualClock::new(START));
        let jobs: Jobs = Arc::default();
        let queued = jobs.clone();
        let offload: Offload =
            Arc::new(move |job| queued.lock().unwrap_or_else(|e| e.into_inner()).push(job));
        let engine = Engine::new(
            &config,
            keys,
            factory,
            OfferStore::new(Arc::new(MemoryStore::default())),
            EngineHost {
                clock: clock.clone(),
                events: events(),
                offload,
                keyed_slots: false,
                lock: None,
            },
        )
        .expect("the harness's engine builds");
        Self {
            handler: ProtocolHandler::new(engine.clone(), server_id()),
            engine,
            clock,
            jobs,
        }
    }

    fn run_jobs(&self) {
        loop {
            let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
            if jobs.is_empty() {
                return;
            }
            for job in jobs {
                job();
            }
        }
    }

    fn apply(&self, kind: u8, payload: &[u8], handed_out: &mut HandedOut) {
        match kind % 10 {
            0 => {
                let (context, rest) = split_prefixed(payload);
                let (responder, message) = split_prefixed(rest);
                if let (Some(context), Some(message)) = (
                    read::<AsyncPaymentsContext>(context),
                    read::<OfferPaths>(message),
                ) {
                    self.handler
                        .handle_offer_paths(message, context, read::<Responder>(responder));
                }
            }
            1 => {
                if let Some(context) = read::<AsyncPaymentsContext>(payload) {
                    self.handler
                        .handle_static_invoice_persisted(StaticInvoicePersisted {}, context);
                }
            }
            2 => {
                let (context, request) = split_prefixed(payload);
                if let Ok(request) = InvoiceRequest::try_from(request.to_vec()) {
                    self.handler.handle_message(
                        OffersMessage::InvoiceRequest(request),
                        read::<OffersContext>(context),
                        None,
                    );
                }
            }
            3 => {
                let secs = payload.iter().take(4).fold(0u64, |n, b| n << 8 | *b as u64);
                self.clock.advance(Duration::from_secs(secs));
            }
            4 | 5 => {
                let label = String::from_utf8_lossy(payload).into_owned();
                let handed = match kind % 10 {
                    4 => self.engine.take_offer(Some(label.clone())),
                    _ => self.engine.offer_for(&label),
                };
                if let Ok(offer) = handed {
                    assert_eq!(offer.state, OfferState::Used);
                    let id = offer.offer_id.clone();
                    match handed_out.insert(offer.offer_id, (Some(label.clone()), offer.expires_at))
                    {
                        None => {}
                        // `offer_for` gives a label the offer it gave that label before.
                        Some((earlier, _))
                            if kind % 10 == 5 && earlier.as_ref() == Some(&label) => {}
                        Some((earlier, _)) => panic!(
                            "offer {id} handed out again, under {label:?}; first under {earlier:?}"
                        ),
                    }
                }
            }
            6 => self.handler.server_connected(),
            7 => self.handler.server_disconnected(),
            8 => self.handler.tick(),
            _ => {
                let _ = self.engine.release_for_transport(&server_id());
            }
        }
    }

    fn check(&self, handed_out: &HandedOut) {
        let offers = self.engine.offers();
        let mut slots = std::collections::HashSet::new();
        for offer in &offers {
            assert!(
                slots.insert((offer.server_node_id.clone(), offer.slot)),
                "two offers in slot {}",
                offer.slot
            );
        }
        let now = self.clock.now();
        for (id, (label, expires_at)) in handed_out {
            match offers.iter().find(|o| &o.offer_id == id) {
                Some(kept) => {
                    assert_eq!(kept.state, OfferState::Used, "a handed-out offer is Used");
                    assert_eq!(&kept.label, label, "a handed-out offer keeps its label");
                }
                None => assert!(
                    expires_at.is_some_and(|expiry| expiry <= now),
                    "handed-out offer {id} gone before it expired"
                ),
            }
        }
    }
}

/// One event bus for every run: each would otherwise start a thread.
fn events() -> Arc<EventBus> {
    static EVENTS: OnceLock<Arc<EventBus>> = OnceLock::new();
    EVENTS.get_or_init(|| Arc::new(EventBus::new(None))).clone()
}

/// Records in memory: the fuzz targets must not wait for disks.
#[derive(Default)]
struct MemoryStore(Mutex<HashMap<(String, String, String), Vec<u8>>>);

impl KVStoreSync for MemoryStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(primary.into(), secondary.into(), key.into()))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, key.to_string()))
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> Result<(), io::Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((primary.into(), secondary.into(), key.into()), buf);
        Ok(())
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        _lazy: bool,
    ) -> Result<(), io::Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&(
            primary.into(),
            secondary.into(),
            key.into(),
        ));
        Ok(())
    }

    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|(p, s, _)| p == primary && s == secondary)
            .map(|(_, _, key)| key.clone())
            .collect())
    }
}

/// Starting inputs for the fuzzers, as (target, name, bytes): real records, and operation
/// sequences of a whole fill (offer paths, confirmations, a handout, a refill) with the bad
/// messages a hostile server could send woven in.
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    use lightning::util::ser::Writeable;

    let mut seeds = Vec::new();
    let op = |kind: u8, payload: &[u8]| {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    let prefixed = |parts: &[&[u8]]| {
        let mut bytes = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if i + 1 < parts.len() {
                bytes.extend_from_slice(&(part.len() as u16).to_be_bytes());
            }
            bytes.extend_from_slice(part);
        }
        bytes
    };

    let harness = Harness::new();
    let secp = Secp256k1::new();
    let server_path = |byte: u8| {
        BlindedMessagePath::one_hop(
            server_id(),
            ReceiveAuthKey([byte; 32]),
            MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
                recipient_id: vec![byte],
                path_absolute_expiry: None,
            }),
            &lightning::sign::KeysManager::new(&[byte; 32], 1, 1, true),
            &secp,
        )
    };
    let offer_paths = |slot: u16, expiry: Option<u64>| {
        let context = AsyncPaymentsContext::OfferPaths {
            invoice_slot: slot,
            path_absolute_expiry: START + Duration::from_secs(7200),
        };
        let message = OfferPaths {
            paths: vec![server_path(slot as u8 + 1)],
            paths_absolute_expiry: expiry,
        };
        op(
            0,
            &prefixed(&[
                &context.encode(),
                &crate::offers::responder::responder_encoding(&server_path(0x30 + slot as u8)),
                &message.encode(),
            ]),
        )
    };

    // A fill of two slots, confirmations learnt from the engine itself.
    let mut fill = op(6, &[]);
    fill.extend(op(9, &[]));
    let year = START.as_secs() + 365 * 24 * 3600;
    for slot in 0..2 {
        fill.extend(offer_paths(slot, Some(year)));
    }
    let mut handed_out = HandedOut::new();
    let mut rest = &fill[..];
    while let Some((kind, payload, tail)) = next_operation(rest) {
        rest = tail;
        harness.apply(kind, payload, &mut handed_out);
        harness.run_jobs();
    }
    for offer in harness.engine.offers() {
        let context = AsyncPaymentsContext::StaticInvoicePersisted {
            offer_id: offer_id_from_hex(&offer.offer_id),
            invoice_created_at: offer.created_at,
        };
        fill.extend(op(1, &context.encode()));
    }
    seeds.push(("protocol_operations", "fill".to_string(), fill.clone()));

    let mut handout = fill.clone();
    handout.extend(op(4, b"alice"));
    handout.extend(op(5, b"bob"));
    handout.extend(op(5, b"alice"));
    handout.extend(op(8, &[]));
    handout.extend(op(3, &[0, 1, 81, 128])); // a day
    handout.extend(op(8, &[]));
    seeds.push((
        "protocol_operations",
        "handout".to_string(),
        handout.clone(),
    ));

    let mut hostile = handout;
    hostile.extend(offer_paths(0, Some(year))); // an already-filled slot
    hostile.extend(offer_paths(9, Some(year))); // a slot out of range
    hostile.extend(offer_paths(2, Some(START.as_secs() + 60))); // expiring too soon
    hostile.extend(offer_paths(3, None));
    let empty = OfferPaths {
        paths: vec![],
        paths_absolute_expiry: None,
    };
    hostile.extend(op(
        0,
        &prefixed(&[
            &AsyncPaymentsContext::OfferPaths {
                invoice_slot: 2,
                path_absolute_expiry: START,
            }
            .encode(),
            &[],
            &empty.encode(),
        ]),
    ));
    hostile.extend(op(1, &[0xff; 40])); // an undecodable confirmation
    hostile.extend(op(7, &[]));
    hostile.extend(op(3, &[0xff, 0, 0, 0])); // far beyond every expiry
    hostile.extend(op(8, &[]));
    seeds.push(("protocol_operations", "hostile".to_string(), hostile));

    // Records of each state.
    let dir = std::env::temp_dir().join(format!("async-offers-seeds-{}", std::process::id()));
    if let Ok(work) = super::bench::CacheWork::new(3, &dir) {
        for (i, record) in work.records().iter().enumerate() {
            let mut raw = vec![0];
            raw.extend_from_slice(record);
            seeds.push(("decode_record", format!("record-{i}"), raw));
            let mut body = vec![1];
            body.extend_from_slice(&record[..record.len() - CHECKSUM_LEN]);
            seeds.push(("decode_record", format!("body-{i}"), body));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    seeds
}

fn offer_id_from_hex(hex: &str) -> lightning::offers::offer::OfferId {
    use lightning::bitcoin::hex::FromHex;
    let bytes = <[u8; 32]>::from_hex(hex).unwrap_or([0; 32]);
    lightning::offers::offer::OfferId(bytes)
}
