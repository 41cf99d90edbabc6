//! Persistence of offers behind LDK's `KVStoreSync`: `lightning-persister`'s `FilesystemStore` by
//! default, or any store the app provides. One record per offer, keyed by its server and slot,
//! so each transition writes one small record. A record that cannot be decoded stops the client
//! at start with [`Error::CorruptStore`] and is never overwritten or removed by us.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::Hash;
use lightning::bitcoin::hex::DisplayHex;
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::io;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::messenger::Responder;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::{Readable, Writeable};
use lightning_persister::fs_store::FilesystemStore;

use crate::events::{Event, EventRecords};
use crate::offers::builder::BuiltInvoice;
use crate::offers::cache::{CachedOffer, OfferState};
use crate::offers::responder::{reply_path_of, responder_encoding};
use crate::Error;

/// A `KVStoreSync` the client can share across threads.
pub type DynStore = dyn KVStoreSync + Send + Sync;

const PRIMARY_NAMESPACE: &str = "async_offers";
const OFFERS_NAMESPACE: &str = "offers";
/// The current record: the fields of `AOF3`, then those added since as an LDK TLV stream
/// (`write_tlv_fields!`), so that later fields need no new format: odd types, which readers
/// that do not know them skip.
pub(crate) const MAGIC: &[u8; 4] = b"AOF4";
/// Records of releases 0.1.x: as `AOF4` without the TLV stream. Read as they are, rewritten in
/// the current format the next time their offer changes; each record is either, so no crash
/// can leave one half-migrated.
const PREVIOUS_MAGIC: &[u8; 4] = b"AOF3";
/// Records of the single-server releases: no server in the record, keyed `slot_NNNNN`. They
/// are read as the first configured server's and rewritten in the current format at start.
const SINGLE_SERVER_MAGIC: &[u8; 4] = b"AOF2";
pub(crate) const CHECKSUM_LEN: usize = 8;
/// The record of this install's slot key, beside the offers.
const INSTALL_KEY: &str = "install_key";
const INSTALL_MAGIC: &[u8; 4] = b"AOK1";
/// The events that wait for the app to handle them, one record each under their sequence
/// number (16 hex digits, so that keys sort in order): `AOE1`, the event in LDK's encoding
/// (TLV-based, as below), and a checksum. One record each: an event costs one small write and
/// its handling one removal, however many wait.
const EVENTS_NAMESPACE: &str = "events";
const EVENTS_MAGIC: &[u8; 4] = b"AOE1";

/// `lightning-persister`'s `FilesystemStore`, with every record file made readable by its owner
/// only (mode 0600 on Unix) once written: records name the app's contacts in their labels.
/// The data dir itself is already the owner's alone; this makes the files say so too.
pub(crate) struct PrivateFilesystemStore {
    inner: FilesystemStore,
    data_dir: PathBuf,
}

impl PrivateFilesystemStore {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            inner: FilesystemStore::new(data_dir.clone()),
            data_dir,
        }
    }

    /// Where `FilesystemStore` puts a record: `data_dir/primary[/secondary]/key`.
    fn record_path(&self, primary: &str, secondary: &str, key: &str) -> PathBuf {
        let mut path = self.data_dir.join(primary);
        if !secondary.is_empty() {
            path.push(secondary);
        }
        path.join(key)
    }
}

impl KVStoreSync for PrivateFilesystemStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
        self.inner.read(primary, secondary, key)
    }

    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> Result<(), io::Error> {
        self.inner.write(primary, secondary, key, buf)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = self.record_path(primary, secondary, key);
            if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            {
                // Written and durable; inside the private data dir no one else reaches it anyway.
                log::warn!("could not make {} private: {e}", path.display());
            }
        }
        Ok(())
    }

    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> Result<(), io::Error> {
        self.inner.remove(primary, secondary, key, lazy)
    }

    fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
        self.inner.list(primary, secondary)
    }
}

/// Reads and writes offer records.
///
/// Writes are split in two so the slow, durable part runs outside the engine's lock and
/// writes to different slots overlap: [`Self::prepare`] (under the lock) snapshots a record and
/// numbers it; [`Self::commit`] (after the lock) writes it unless a later snapshot of the same
/// slot is already on disk. Whatever order threads commit in, each slot ends up holding the
/// newest state.
#[derive(Clone)]
pub(crate) struct OfferStore {
    kv: Arc<DynStore>,
    next_revision: Arc<AtomicU64>,
    /// Per server slot, the revision on disk; its lock is held while that slot is written.
    written: Arc<Mutex<HashMap<SlotKey, Arc<Mutex<u64>>>>>,
}

/// A server and one of its slots: where a record lives.
type SlotKey = (PublicKey, u16);

/// A snapshot of one slot's record, numbered, waiting for [`OfferStore::commit`].
#[must_use = "a prepared write does nothing until committed"]
pub(crate) struct PreparedWrite {
    slot: SlotKey,
    revision: u64,
    /// `None` removes the record.
    record: Option<Vec<u8>>,
}

impl OfferStore {
    pub fn new(kv: Arc<DynStore>) -> Self {
        Self {
            kv,
            next_revision: Arc::new(AtomicU64::new(1)),
            written: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn key((server, slot): SlotKey) -> String {
        format!("{}_{slot:05}", server.serialize().as_hex())
    }

    fn single_server_key(slot: u16) -> String {
        format!("slot_{slot:05}")
    }

    /// Snapshots `offer` for writing (insert or update). Call it where the state changes.
    pub fn prepare(&self, offer: &CachedOffer) -> PreparedWrite {
        PreparedWrite {
            slot: (offer.server, offer.slot),
            revision: self.next_revision.fetch_add(1, Ordering::Relaxed),
            record: Some(encode(offer)),
        }
    }

    /// Snapshots the removal of the record of `offer`.
    pub fn prepare_removal(&self, offer: &CachedOffer) -> PreparedWrite {
        PreparedWrite {
            slot: (offer.server, offer.slot),
            revision: self.next_revision.fetch_add(1, Ordering::Relaxed),
            record: None,
        }
    }

    /// Makes a prepared write durable, unless a later one of the same slot already is.
    pub fn commit(&self, write: PreparedWrite) -> Result<(), Error> {
        let slot_lock = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(write.slot)
            .or_default()
            .clone();
        let mut on_disk = slot_lock.lock().unwrap_or_else(|e| e.into_inner());
        if *on_disk > write.revision {
            return Ok(());
        }
        let (_, slot) = write.slot;
        let key = Self::key(write.slot);
        match write.record {
            Some(record) => self
                .kv
                .write(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key, record)
                .map_err(|e| Error::Storage(format!("writing offer in slot {slot}: {e}")))?,
            None => self
                .kv
                .remove(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key, false)
                .map_err(|e| Error::Storage(format!("removing offer in slot {slot}: {e}")))?,
        }
        *on_disk = write.revision;
        Ok(())
    }

    /// Persists `offer` now (insert or update).
    pub fn save(&self, offer: &CachedOffer) -> Result<(), Error> {
        self.commit(self.prepare(offer))
    }

    /// Deletes the record of `offer` now.
    pub fn remove(&self, offer: &CachedOffer) -> Result<(), Error> {
        self.commit(self.prepare_removal(offer))
    }

    /// This install's key for choosing slots ([`crate::offers::cache::SlotSequence::Keyed`]), if it has
    /// one. One that cannot be read is taken as none, and replaced: it only decides which free
    /// slots come first.
    pub fn install_key(&self) -> Option<[u8; 32]> {
        match self.kv.read(PRIMARY_NAMESPACE, "", INSTALL_KEY) {
            Ok(bytes)
                if bytes.len() == INSTALL_MAGIC.len() + 32 && bytes.starts_with(INSTALL_MAGIC) =>
            {
                return Some(bytes[INSTALL_MAGIC.len()..].try_into().expect("32 bytes"));
            }
            Ok(_) => log::warn!("the install key record is malformed; making a new one"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("the install key is unreadable ({e}); making a new one"),
        }
        None
    }

    /// Writes this install's key.
    pub fn save_install_key(&self, key: &[u8; 32]) -> Result<(), Error> {
        let mut record = INSTALL_MAGIC.to_vec();
        record.extend_from_slice(key);
        self.kv
            .write(PRIMARY_NAMESPACE, "", INSTALL_KEY, record)
            .map_err(|e| Error::Storage(format!("writing the install key: {e}")))
    }

    /// Every stored offer. Fails on the first record that cannot be read or decoded. Records
    /// of the single-server format are taken as `first_server`'s and rewritten.
    pub fn load_all(&self, first_server: PublicKey) -> Result<Vec<CachedOffer>, Error> {
        let keys = self
            .kv
            .list(PRIMARY_NAMESPACE, OFFERS_NAMESPACE)
            .map_err(|e| Error::Storage(format!("listing offers: {e}")))?;
        let corrupt = |key: &str, reason: String| Error::CorruptStore {
            key: format!("{PRIMARY_NAMESPACE}/{OFFERS_NAMESPACE}/{key}"),
            reason,
        };
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = self
                .kv
                .read(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key)
                .map_err(|e| corrupt(&key, format!("unreadable: {e}")))?;
            records.push((key, bytes));
        }
        let decoded = decode_all(&records, first_server);
        let mut current = Vec::with_capacity(records.len());
        let mut single_server = Vec::new();
        for ((key, _), result) in records.iter().zip(decoded) {
            let (offer, is_single_server) = result.map_err(|reason| corrupt(key, reason))?;
            let expected_key = match is_single_server {
                true => Self::single_server_key(offer.slot),
                false => Self::key((offer.server, offer.slot)),
            };
            if *key != expected_key {
                return Err(corrupt(
                    key,
                    format!("holds slot {} under another key", offer.slot),
                ));
            }
            match is_single_server {
                true => single_server.push((key, offer)),
                false => current.push(offer),
            }
        }
        let mut offers = current;
        for (key, offer) in single_server {
            // Migrated by writing the new record first and removing the old one after, so a
            // crash in between loses nothing. If it left both, the new one holds the slot's
            // latest state (later changes only went there) and the old one is a stale copy of
            // the same offer: loading both would let it be handed out twice.
            let migrated = offers
                .iter()
                .any(|o| (o.server, o.slot) == (offer.server, offer.slot));
            if !migrated {
                self.save(&offer)?;
            }
            self.kv
                .remove(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, key, false)
                .map_err(|e| Error::Storage(format!("removing {key}: {e}")))?;
            if !migrated {
                offers.push(offer);
            }
        }
        offers.sort_by_key(|offer| (offer.server, offer.slot));
        Ok(offers)
    }
}

impl EventRecords for OfferStore {
    /// The events stored to wait for the app, oldest first, with their sequence numbers. A
    /// record that cannot be read is reported and skipped: the offers it was about are still
    /// there, and what is due is noticed again by maintenance.
    fn events(&self) -> Vec<(u64, Event)> {
        let keys = match self.kv.list(PRIMARY_NAMESPACE, EVENTS_NAMESPACE) {
            Ok(keys) => keys,
            Err(e) => {
                log::error!("the stored events cannot be listed ({e}); starting without them");
                return Vec::new();
            }
        };
        let mut events: Vec<(u64, Event)> = keys
            .into_iter()
            .filter_map(|key| {
                let sequence = u64::from_str_radix(&key, 16).ok()?;
                let bytes = self
                    .kv
                    .read(PRIMARY_NAMESPACE, EVENTS_NAMESPACE, &key)
                    .inspect_err(|e| log::error!("stored event {key} is unreadable: {e}"))
                    .ok()?;
                let event = decode_event(&bytes)
                    .inspect_err(|why| log::error!("stored event {key} is skipped: {why}"))
                    .ok()?;
                Some((sequence, event))
            })
            .collect();
        events.sort_by_key(|(sequence, _)| *sequence);
        events
    }

    /// Writes `event` as the one numbered `sequence`.
    fn save_event(&self, sequence: u64, event: &Event) -> Result<(), Error> {
        let mut record = EVENTS_MAGIC.to_vec();
        record.extend_from_slice(&event.encode());
        let checksum = Sha256::hash(&record).to_byte_array();
        record.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        self.kv
            .write(
                PRIMARY_NAMESPACE,
                EVENTS_NAMESPACE,
                &event_key(sequence),
                record,
            )
            .map_err(|e| Error::Storage(format!("writing an event: {e}")))
    }

    /// Deletes the event numbered `sequence`.
    fn remove_event(&self, sequence: u64) -> Result<(), Error> {
        self.kv
            .remove(
                PRIMARY_NAMESPACE,
                EVENTS_NAMESPACE,
                &event_key(sequence),
                false,
            )
            .map_err(|e| Error::Storage(format!("removing a handled event: {e}")))
    }
}

fn event_key(sequence: u64) -> String {
    format!("{sequence:016x}")
}

fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    if bytes.len() < EVENTS_MAGIC.len() + CHECKSUM_LEN
        || &bytes[..EVENTS_MAGIC.len()] != EVENTS_MAGIC
    {
        return Err("not an event record".into());
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::hash(body).to_byte_array()[..CHECKSUM_LEN] != *checksum {
        return Err("checksum mismatch".into());
    }
    let mut reader = &body[EVENTS_MAGIC.len()..];
    // One of a later release's kinds fails here, and is skipped alone.
    let event = Event::read(&mut reader).map_err(|e| format!("{e:?}"))?;
    if !reader.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(event)
}

// The events as LDK encodes its own: TLV-based, so that fields added later (odd types) are
// skipped by readers that do not know them.
// LDK's macros drop readers that have no `Drop`.
#[allow(clippy::drop_non_drop)]
mod event_encoding {
    use crate::events::{Event, OfferInfo};
    use crate::offers::cache::OfferState;

    lightning::impl_writeable_tlv_based_enum!(OfferState,
        (0, Pending) => {},
        (2, Ready) => {},
        (4, Used) => {},
    );

    lightning::impl_writeable_tlv_based!(OfferInfo, {
        (0, server_node_id, required),
        (2, slot, required),
        (4, state, required),
        (6, offer, required),
        (8, offer_id, required),
        (10, label, option),
        (12, created_at, required),
        (14, expires_at, option),
        (16, invoice_confirmed_at, option),
    });

    lightning::impl_writeable_tlv_based_enum!(Event,
        (0, OfferReady) => { (0, offer, required) },
        (2, OfferReplaced) => { (0, old_offer_id, required), (2, new_offer, required) },
        (4, OfferExpiring) => { (0, offer, required) },
        (6, OfferExpired) => { (0, offer_id, required) },
        (8, InvoiceRefreshed) => { (0, offer_id, required) },
        (10, InvoiceRefreshFailed) => { (0, offer, required), (2, reason, required) },
        (12, ServerConnected) => { (0, server_node_id, required) },
        (14, ServerDisconnected) => { (0, server_node_id, required) },
        (16, InvoiceRequestForwarded) => {
            (0, offer_id, required),
            (2, amount_msats, option),
            (4, payer_note, option),
        },
    );
}

/// An offer book: the handed-out offers of one install, for another to import. Version 1 is
/// `AOB1`, the number of offers (u32), each offer's record as it is stored (length-prefixed,
/// so an importer reads records of any format it can load), and a checksum of it all.
const BOOK_MAGIC: &[u8; 4] = b"AOB1";

/// The book of `offers`.
pub(crate) fn encode_book<'a>(offers: impl Iterator<Item = &'a CachedOffer>) -> Vec<u8> {
    let records: Vec<Vec<u8>> = offers.map(encode).collect();
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + 4).sum::<usize>() + 16);
    out.extend_from_slice(BOOK_MAGIC);
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in &records {
        put_bytes(&mut out, record);
    }
    let checksum = Sha256::hash(&out).to_byte_array();
    out.extend_from_slice(&checksum[..CHECKSUM_LEN]);
    out
}

/// The offers of a book; records of the single-server format are `first_server`'s.
pub(crate) fn decode_book(
    bytes: &[u8],
    first_server: PublicKey,
) -> Result<Vec<CachedOffer>, String> {
    if bytes.len() < BOOK_MAGIC.len() + 4 + CHECKSUM_LEN {
        return Err("not an offer book (too short)".into());
    }
    if &bytes[..BOOK_MAGIC.len()] != BOOK_MAGIC {
        return Err("not an offer book (bad magic or format version)".into());
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::hash(body).to_byte_array()[..CHECKSUM_LEN] != *checksum {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader(&body[BOOK_MAGIC.len()..]);
    let count = u32::from_be_bytes(r.array("count")?);
    let mut offers = Vec::with_capacity(count.min(4096) as usize);
    for index in 0..count {
        let record = r.bytes("offer")?;
        let (offer, _) =
            decode(record, first_server).map_err(|why| format!("offer {index}: {why}"))?;
        offers.push(offer);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(offers)
}

/// Below this many records, decoding on one thread is quicker than starting others.
const PARALLEL_DECODE_FROM: usize = 32;

/// Decodes `records` in order, on every core when there are many: each takes ~0.1 ms (LDK
/// parses every key in the offer and paths, and checks the invoice's signature), so a wallet
/// holding a thousand handed-out offers would otherwise wait that long for its cache.
fn decode_all(
    records: &[(String, Vec<u8>)],
    first_server: PublicKey,
) -> Vec<Result<(CachedOffer, bool), String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || records.len() < PARALLEL_DECODE_FROM {
        return records
            .iter()
            .map(|(_, bytes)| decode(bytes, first_server))
            .collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = records
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(_, bytes)| decode(bytes, first_server))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| vec![Err("decoding panicked".to_string()); chunk])
            })
            .collect()
    })
}

fn state_byte(state: OfferState) -> u8 {
    match state {
        OfferState::Pending => 0,
        OfferState::Ready => 1,
        OfferState::Used => 2,
    }
}

pub(crate) fn encode(offer: &CachedOffer) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&offer.server.serialize());
    out.extend_from_slice(&offer.slot.to_be_bytes());
    out.push(state_byte(offer.state));
    put_bytes(&mut out, &offer.offer.encode());
    out.extend_from_slice(offer.nonce.as_slice());
    match &offer.label {
        Some(label) => {
            out.push(1);
            put_bytes(&mut out, label.as_bytes());
        }
        None => out.push(0),
    }
    // Nanoseconds (good until 2554): what the app was shown before a restart, it sees after.
    out.extend_from_slice(&nanos(offer.created_at).to_be_bytes());
    match offer.handed_out_at {
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&nanos(at).to_be_bytes());
        }
        None => out.push(0),
    }
    // In a responder's encoding, as LDK persists the reply path.
    put_bytes(&mut out, &responder_encoding(&offer.server_path));
    put_bytes(&mut out, &offer.invoice.invoice.encode());
    put_bytes(
        &mut out,
        &offer.invoice.forward_invoice_request_path.encode(),
    );
    out.push(offer.invoice_confirmed as u8);
    write_extension(&mut out, offer).expect("writing to a Vec cannot fail");
    let checksum = Sha256::hash(&out).to_byte_array();
    out.extend_from_slice(&checksum[..CHECKSUM_LEN]);
    out
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("truncated at {what}"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.array(what)?) as usize;
        self.take(len, what)
    }

    fn ldk<T: Readable>(&mut self, what: &str) -> Result<T, String> {
        let mut bytes = self.bytes(what)?;
        let value = T::read(&mut bytes).map_err(|e| format!("bad {what}: {e:?}"))?;
        if !bytes.is_empty() {
            return Err(format!("trailing bytes in {what}"));
        }
        Ok(value)
    }
}

/// Decodes a record, and says whether it was in the single-server format (then on
/// `first_server`).
pub(crate) fn decode(bytes: &[u8], first_server: PublicKey) -> Result<(CachedOffer, bool), String> {
    if bytes.len() < MAGIC.len() + CHECKSUM_LEN {
        return Err("not an offer record (too short)".into());
    }
    let magic = &bytes[..MAGIC.len()];
    let single_server = magic == SINGLE_SERVER_MAGIC;
    let has_extension = magic == MAGIC;
    if !has_extension && magic != PREVIOUS_MAGIC && !single_server {
        return Err("not an offer record (bad magic or format version)".into());
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::hash(body).to_byte_array()[..CHECKSUM_LEN] != *checksum {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let server = match single_server {
        true => first_server,
        false => PublicKey::from_slice(&r.array::<33>("server")?)
            .map_err(|e| format!("bad server node id: {e}"))?,
    };
    let slot = u16::from_be_bytes(r.array("slot")?);
    let state = match r.array::<1>("state")?[0] {
        0 => OfferState::Pending,
        1 => OfferState::Ready,
        2 => OfferState::Used,
        other => return Err(format!("unknown state {other}")),
    };
    let offer =
        Offer::try_from(r.bytes("offer")?.to_vec()).map_err(|e| format!("bad offer: {e:?}"))?;
    let nonce = Nonce::try_from(&r.array::<{ Nonce::LENGTH }>("nonce")?[..])
        .map_err(|()| "bad nonce".to_string())?;
    let label = match r.array::<1>("label flag")?[0] {
        0 => None,
        1 => Some(String::from_utf8(r.bytes("label")?.to_vec()).map_err(|_| "label is not UTF-8")?),
        other => return Err(format!("bad label flag {other}")),
    };
    let created_at = Duration::from_nanos(u64::from_be_bytes(r.array("created_at")?));
    let handed_out_at = match r.array::<1>("handed-out flag")?[0] {
        0 => None,
        1 => Some(Duration::from_nanos(u64::from_be_bytes(
            r.array("handed_out_at")?,
        ))),
        other => return Err(format!("bad handed-out flag {other}")),
    };
    let server_responder: Responder = r.ldk("server reply path")?;
    let server_path =
        reply_path_of(&server_responder).map_err(|e| format!("server reply path: {e:?}"))?;
    let invoice = StaticInvoice::try_from(r.bytes("invoice")?.to_vec())
        .map_err(|e| format!("bad invoice: {e:?}"))?;
    let forward_invoice_request_path: BlindedMessagePath = r.ldk("forward path")?;
    let invoice_confirmed = match r.array::<1>("confirmed")?[0] {
        0 => false,
        1 => true,
        other => return Err(format!("bad confirmed flag {other}")),
    };
    let extension = match has_extension {
        true => read_extension(&mut r.0).map_err(|e| format!("bad TLV fields: {e:?}"))?,
        // Earlier records did not say when; a confirmed invoice was confirmed about when it
        // was made.
        false => Extension {
            invoice_confirmed_at: invoice_confirmed.then(|| nanos(invoice.created_at())),
            announced: 0,
        },
    };
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    if invoice.offer_id() != offer.id() {
        return Err("invoice belongs to another offer".into());
    }
    let offer = CachedOffer {
        server,
        slot,
        offer,
        nonce,
        state,
        label,
        created_at,
        handed_out_at,
        server_path,
        invoice: BuiltInvoice {
            invoice,
            forward_invoice_request_path,
        },
        invoice_confirmed,
        invoice_sent_at: None,
        pending_since: Duration::ZERO,
        expiry_announced: extension.announced & EXPIRY_ANNOUNCED != 0,
        expired_announced: extension.announced & EXPIRED_ANNOUNCED != 0,
        invoice_confirmed_at: extension.invoice_confirmed_at.map(Duration::from_nanos),
        delivery: Default::default(),
    };
    Ok((offer, single_server))
}

/// What an offer's announcements were: its coming expiry, its expiry.
const EXPIRY_ANNOUNCED: u8 = 1;
const EXPIRED_ANNOUNCED: u8 = 2;

/// The fields of an `AOF4` record's TLV stream.
struct Extension {
    /// When the invoice was last confirmed, ns since the epoch.
    invoice_confirmed_at: Option<u64>,
    /// What was announced of the offer ([`EXPIRY_ANNOUNCED`], [`EXPIRED_ANNOUNCED`]).
    announced: u8,
}

/// Appends an `AOF4` record's TLV stream.
fn write_extension(out: &mut Vec<u8>, offer: &CachedOffer) -> Result<(), io::Error> {
    let invoice_confirmed_at = offer.invoice_confirmed_at.map(nanos);
    let announced = (offer.expiry_announced as u8) * EXPIRY_ANNOUNCED
        + (offer.expired_announced as u8) * EXPIRED_ANNOUNCED;
    let announced = (announced != 0).then_some(announced);
    lightning::write_tlv_fields!(out, {
        (1, invoice_confirmed_at, option),
        (3, announced, option),
    });
    Ok(())
}

/// Reads an `AOF4` record's TLV stream.
// LDK's `read_tlv_fields!` drops its reader, which has no `Drop`.
#[allow(clippy::drop_non_drop)]
fn read_extension(stream: &mut &[u8]) -> Result<Extension, lightning::ln::msgs::DecodeError> {
    let mut invoice_confirmed_at: Option<u64> = None;
    let mut announced: Option<u8> = None;
    lightning::read_tlv_fields!(stream, {
        (1, invoice_confirmed_at, option),
        (3, announced, option),
    });
    Ok(Extension {
        invoice_confirmed_at,
        announced: announced.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{offer_fixture, pubkey, server_key};

    fn store(dir: &std::path::Path) -> OfferStore {
        OfferStore::new(Arc::new(FilesystemStore::new(dir.to_path_buf())))
    }

    /// Where `FilesystemStore` keeps the record under `key`.
    fn record_file(dir: &std::path::Path, key: &str) -> std::path::PathBuf {
        dir.join(PRIMARY_NAMESPACE).join(OFFERS_NAMESPACE).join(key)
    }

    #[test]
    fn offers_round_trip_through_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let mut offer = fixture.cached(3, Duration::new(1_800_000_000, 123_456_789), None);
        offer.state = OfferState::Used;
        offer.label = Some("invoice #7 ✓".into());
        offer.handed_out_at = Some(Duration::from_secs(1_800_000_123));
        offer.invoice_confirmed = true;
        store(dir.path()).save(&offer).unwrap();
        let loaded = store(dir.path()).load_all(server_key()).unwrap();
        assert_eq!(loaded.len(), 1);
        let back = &loaded[0];
        assert_eq!(
            (
                back.slot,
                back.state,
                back.label.clone(),
                back.handed_out_at
            ),
            (
                3,
                OfferState::Used,
                offer.label.clone(),
                offer.handed_out_at
            )
        );
        assert_eq!(back.created_at, offer.created_at, "to the nanosecond");
        assert_eq!(back.offer, offer.offer);
        assert_eq!(back.nonce, offer.nonce);
        assert_eq!(back.invoice.invoice, offer.invoice.invoice);
        assert_eq!(
            back.invoice.forward_invoice_request_path,
            offer.invoice.forward_invoice_request_path
        );
        assert_eq!(back.server_path.encode(), offer.server_path.encode());
        assert!(back.invoice_confirmed);
        store(dir.path()).remove(&offer).unwrap();
        assert!(store(dir.path()).load_all(server_key()).unwrap().is_empty());
    }

    #[test]
    fn a_write_committed_late_never_overwrites_a_newer_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let fixture = offer_fixture();
        let mut offer = fixture.cached(0, Duration::from_secs(1_800_000_000), None);
        offer.state = OfferState::Ready;
        let ready = store.prepare(&offer);
        offer.state = OfferState::Used;
        let used = store.prepare(&offer);
        store.commit(used).unwrap();
        store.commit(ready).unwrap();
        assert_eq!(
            store.load_all(server_key()).unwrap()[0].state,
            OfferState::Used
        );

        let stale = store.prepare(&offer);
        let removal = store.prepare_removal(&offer);
        store.commit(removal).unwrap();
        store.commit(stale).unwrap();
        assert!(
            store.load_all(server_key()).unwrap().is_empty(),
            "a removed offer does not come back"
        );
    }

    #[test]
    fn a_corrupt_record_is_a_clear_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let offer = fixture.cached(0, Duration::from_secs(1_800_000_000), None);
        store(dir.path()).save(&offer).unwrap();
        let key = OfferStore::key((offer.server, 0));
        let path = record_file(dir.path(), &key);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        match store(dir.path()).load_all(server_key()) {
            Err(Error::CorruptStore { key: named, reason }) => {
                assert!(named.ends_with(&key));
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected a corrupt-store error, got {other:?}"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the file is kept as it was"
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            store(dir.path()).load_all(server_key()),
            Err(Error::CorruptStore { .. })
        ));
    }

    #[test]
    fn many_records_decode_on_several_threads_and_a_corrupt_one_is_still_named() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let count = PARALLEL_DECODE_FROM as u16 + 8;
        let offers: Vec<CachedOffer> = (0..count)
            .map(|slot| fixture.cached(slot, Duration::from_secs(1_800_000_000), None))
            .collect();
        for offer in &offers {
            store(dir.path()).save(offer).unwrap();
        }
        let loaded = store(dir.path()).load_all(server_key()).unwrap();
        assert_eq!(
            loaded.iter().map(|o| (o.slot, o.id())).collect::<Vec<_>>(),
            offers.iter().map(|o| (o.slot, o.id())).collect::<Vec<_>>()
        );

        let key = OfferStore::key((server_key(), count / 2));
        let path = record_file(dir.path(), &key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).unwrap();
        match store(dir.path()).load_all(server_key()) {
            Err(Error::CorruptStore { key: named, .. }) => assert!(named.ends_with(&key)),
            other => panic!("expected a corrupt-store error, got {other:?}"),
        }
    }

    #[test]
    fn each_server_has_its_own_slots_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let now = Duration::from_secs(1_800_000_000);
        let on_first = fixture.cached(0, now, None);
        let on_second = fixture.cached_on(pubkey(10), 0, now, None);
        store(dir.path()).save(&on_first).unwrap();
        store(dir.path()).save(&on_second).unwrap();
        let loaded = store(dir.path()).load_all(server_key()).unwrap();
        let found: Vec<_> = loaded
            .iter()
            .map(|o| (o.server, o.slot, o.id().0))
            .collect();
        let mut expected = vec![
            (server_key(), 0, on_first.id().0),
            (pubkey(10), 0, on_second.id().0),
        ];
        expected.sort();
        assert_eq!(found, expected, "loaded in server and slot order");
    }

    /// The body of `offer`'s record as releases 0.1.x wrote it: without the TLV stream.
    fn previous_body(offer: &CachedOffer) -> Vec<u8> {
        let current = encode(offer);
        let mut extension = Vec::new();
        write_extension(&mut extension, offer).unwrap();
        current[MAGIC.len()..current.len() - CHECKSUM_LEN - extension.len()].to_vec()
    }

    fn with_magic_and_checksum(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut record = magic.to_vec();
        record.extend_from_slice(body);
        let checksum = Sha256::hash(&record).to_byte_array();
        record.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        record
    }

    /// The single-server layout: the 0.1 record without the server, under `slot_NNNNN`.
    fn single_server_record(offer: &CachedOffer) -> Vec<u8> {
        with_magic_and_checksum(SINGLE_SERVER_MAGIC, &previous_body(offer)[33..])
    }

    #[test]
    fn a_record_of_the_release_before_loads_as_it_is_and_is_rewritten_at_its_next_change() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let made = Duration::from_secs(1_800_000_000);
        let mut offer = fixture.cached(4, made, None);
        offer.state = OfferState::Used;
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(made + Duration::from_secs(3));
        let key = OfferStore::key((offer.server, offer.slot));
        let kv = FilesystemStore::new(dir.path().to_path_buf());
        let old = with_magic_and_checksum(PREVIOUS_MAGIC, &previous_body(&offer));
        kv.write(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key, old.clone())
            .unwrap();

        let loaded = store(dir.path()).load_all(server_key()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].invoice_confirmed_at,
            Some(offer.invoice.invoice.created_at()),
            "0.1 did not record when; the confirmed invoice's own time stands in"
        );
        assert_eq!(
            kv.read(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key).unwrap(),
            old,
            "left as it is while nothing changes"
        );
        store(dir.path()).save(&offer).unwrap();
        let rewritten = kv.read(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key).unwrap();
        assert_eq!(&rewritten[..4], MAGIC);
        let again = store(dir.path()).load_all(server_key()).unwrap();
        assert_eq!(again[0].invoice_confirmed_at, offer.invoice_confirmed_at);
    }

    #[test]
    fn single_server_records_are_read_as_the_first_servers_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let mut offer = fixture.cached(4, Duration::from_secs(1_800_000_000), None);
        offer.state = OfferState::Used;
        offer.label = Some("bio".into());
        let old = single_server_record(&offer);
        let kv = FilesystemStore::new(dir.path().to_path_buf());
        kv.write(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, "slot_00004", old)
            .unwrap();

        let first = pubkey(12);
        let loaded = store(dir.path()).load_all(first).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (loaded[0].server, loaded[0].slot, loaded[0].id()),
            (first, 4, offer.id())
        );
        assert_eq!(loaded[0].label.as_deref(), Some("bio"));
        assert_eq!(
            kv.list(PRIMARY_NAMESPACE, OFFERS_NAMESPACE).unwrap(),
            vec![OfferStore::key((first, 4))],
            "rewritten under the new key, the old one gone"
        );
        let again = store(dir.path()).load_all(pubkey(13)).unwrap();
        assert_eq!(again[0].server, first, "rewritten once, for good");
    }

    #[test]
    fn a_migration_cut_short_between_its_two_writes_loads_the_offer_once() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let mut offer = fixture.cached(4, Duration::from_secs(1_800_000_000), None);
        let old = single_server_record(&offer);
        let kv = FilesystemStore::new(dir.path().to_path_buf());
        kv.write(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, "slot_00004", old)
            .unwrap();
        // The crash came after the new record was written and the offer was then handed out
        // (written to the new record only), before the old record was removed.
        offer.state = OfferState::Used;
        offer.label = Some("bio".into());
        store(dir.path()).save(&offer).unwrap();

        let loaded = store(dir.path()).load_all(server_key()).unwrap();
        assert_eq!(
            loaded
                .iter()
                .map(|o| (o.slot, o.state, o.label.clone()))
                .collect::<Vec<_>>(),
            vec![(4, OfferState::Used, Some("bio".to_string()))],
            "one offer, in its latest state"
        );
        assert_eq!(
            kv.list(PRIMARY_NAMESPACE, OFFERS_NAMESPACE).unwrap(),
            vec![OfferStore::key((server_key(), 4))],
            "the stale copy is gone"
        );
    }

    #[test]
    fn events_round_trip_through_their_records_in_order_and_a_corrupt_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = offer_fixture();
        let mut offer = fixture.cached(2, Duration::from_secs(1_800_000_000), None);
        offer.state = OfferState::Used;
        offer.label = Some("a contact".into());
        offer.invoice_confirmed_at = Some(Duration::from_secs(1_800_000_100));
        let info = crate::events::OfferInfo::from(&offer);
        let events = vec![
            Event::OfferReady {
                offer: info.clone(),
            },
            Event::OfferReplaced {
                old_offer_id: "aa".into(),
                new_offer: info.clone(),
            },
            Event::OfferExpiring {
                offer: info.clone(),
            },
            Event::OfferExpired {
                offer_id: "bb".into(),
            },
            Event::InvoiceRefreshed {
                offer_id: "cc".into(),
            },
            Event::InvoiceRefreshFailed {
                offer: info.clone(),
                reason: "no answer".into(),
            },
            Event::ServerConnected {
                server_node_id: "02ab".into(),
            },
            Event::ServerDisconnected {
                server_node_id: "02ab".into(),
            },
            Event::InvoiceRequestForwarded {
                offer_id: "dd".into(),
                amount_msats: Some(5),
                payer_note: Some("hi".into()),
            },
        ];
        // Numbered out of the order of writing, and past 9 (hex keys still sort).
        for (index, event) in events.iter().enumerate().rev() {
            store(dir.path())
                .save_event(index as u64 * 7, event)
                .unwrap();
        }
        let loaded = store(dir.path()).events();
        assert_eq!(
            loaded.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            events
        );
        store(dir.path()).remove_event(0).unwrap();
        let path = dir
            .path()
            .join("async_offers")
            .join("events")
            .join(event_key(7));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let loaded = store(dir.path()).events();
        assert_eq!(
            loaded.len(),
            events.len() - 2,
            "the handled one gone, the corrupt one skipped"
        );
        assert_eq!(loaded[0], (14, events[2].clone()));
    }
}
