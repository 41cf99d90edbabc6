//! Persistence of offers behind LDK's `KVStoreSync`: `lightning-persister`'s `FilesystemStore` by
//! default, or any store the app provides. One record per offer, keyed by its server and slot,
//! so each transition writes one small record. A record that cannot be decoded stops the client
//! at start with [`Error::CorruptStore`] and is never overwritten or removed by us.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lightning::bitcoin::hex::DisplayHex;
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::io;

use super::records::{
    decode_all, decode_event, decode_install_key, encode, encode_event, encode_install_key,
};
use super::{DynStore, EVENTS_NAMESPACE, INSTALL_KEY, OFFERS_NAMESPACE, PRIMARY_NAMESPACE};
use crate::events::{Event, EventRecords};
use crate::offers::cache::CachedOffer;
use crate::Error;

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
            Ok(bytes) => match decode_install_key(&bytes) {
                Some(key) => return Some(key),
                None => log::warn!("the install key record is malformed; making a new one"),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("the install key is unreadable ({e}); making a new one"),
        }
        None
    }

    /// Writes this install's key.
    pub fn save_install_key(&self, key: &[u8; 32]) -> Result<(), Error> {
        self.kv
            .write(PRIMARY_NAMESPACE, "", INSTALL_KEY, encode_install_key(key))
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
            let (offer, is_single_server) = result.map_err(|why| corrupt(key, why.to_string()))?;
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
    fn events(&self) -> Option<Vec<(u64, Event)>> {
        let keys = match self.kv.list(PRIMARY_NAMESPACE, EVENTS_NAMESPACE) {
            Ok(keys) => keys,
            Err(e) => {
                log::error!("the stored events cannot be listed ({e}); the queue stays as it is");
                return None;
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
        Some(events)
    }

    /// Writes `event` as the one numbered `sequence`.
    fn save_event(&self, sequence: u64, event: &Event) -> Result<(), Error> {
        self.kv
            .write(
                PRIMARY_NAMESPACE,
                EVENTS_NAMESPACE,
                &event_key(sequence),
                encode_event(event),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lightning::util::persist::KVStoreSync;
    use lightning::util::ser::Writeable;
    use lightning_persister::fs_store::FilesystemStore;

    use lightning::offers::offer::OfferId;

    use super::*;
    use crate::io::legacy::writers;
    use crate::io::records::{MAGIC, PARALLEL_DECODE_FROM};
    use crate::offers::cache::OfferState;
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

    /// The single-server layout: the 0.1 record without the server, under `slot_NNNNN`.
    fn single_server_record(offer: &CachedOffer) -> Vec<u8> {
        writers::aof2(offer)
    }

    /// A store that dies as a killed process does, after `writes_left` more writes or
    /// removals: that one and every later one fail, and none of them reaches the disk.
    struct DiesAfter {
        kv: FilesystemStore,
        writes_left: std::sync::atomic::AtomicI64,
    }

    impl DiesAfter {
        fn one_more(&self) -> Result<(), io::Error> {
            match self.writes_left.fetch_sub(1, Ordering::SeqCst) > 0 {
                true => Ok(()),
                false => Err(io::Error::new(io::ErrorKind::Other, "killed")),
            }
        }
    }

    impl KVStoreSync for DiesAfter {
        fn read(&self, primary: &str, secondary: &str, key: &str) -> Result<Vec<u8>, io::Error> {
            self.kv.read(primary, secondary, key)
        }
        fn write(&self, p: &str, s: &str, key: &str, buf: Vec<u8>) -> Result<(), io::Error> {
            self.one_more()?;
            self.kv.write(p, s, key, buf)
        }
        fn remove(&self, p: &str, s: &str, key: &str, lazy: bool) -> Result<(), io::Error> {
            self.one_more()?;
            self.kv.remove(p, s, key, lazy)
        }
        fn list(&self, primary: &str, secondary: &str) -> Result<Vec<String>, io::Error> {
            self.kv.list(primary, secondary)
        }
    }

    /// What of an offer must survive its migration.
    type Kept = (
        u16,
        OfferId,
        OfferState,
        Option<String>,
        Option<Duration>,
        bool,
    );

    fn kept(offers: &[CachedOffer]) -> Vec<Kept> {
        let mut kept: Vec<Kept> = offers
            .iter()
            .map(|o| {
                let confirmed_at = o.invoice_confirmed_at;
                (
                    o.slot,
                    o.id(),
                    o.state,
                    o.label.clone(),
                    confirmed_at,
                    o.expiry_announced,
                )
            })
            .collect();
        kept.sort_by_key(|k| k.0);
        kept
    }

    #[test]
    fn a_migration_killed_at_any_point_loads_each_offer_once_in_its_state() {
        let fixture = offer_fixture();
        let made = Duration::from_secs(1_800_000_000);
        let offer = |slot: u16, state: OfferState, label: Option<&str>| {
            let mut offer = fixture.cached(slot, made, None);
            offer.state = state;
            offer.label = label.map(String::from);
            offer.handed_out_at = label.map(|_| made + Duration::from_secs(60));
            offer.invoice_confirmed = true;
            // Whole seconds: what the formats before AOF4 could say (the invoice's own time).
            offer.invoice_confirmed_at = Some(offer.invoice.invoice.created_at());
            offer
        };
        let single_server = offer(0, OfferState::Used, Some("bio"));
        let of_0_1_0 = offer(1, OfferState::Used, Some("shop"));
        let mut announced = offer(2, OfferState::Used, Some("old"));
        announced.expiry_announced = true;
        announced.invoice_confirmed_at = Some(made + Duration::new(7, 250));
        let ready = offer(3, OfferState::Ready, None);
        let current = offer(4, OfferState::Used, Some("new"));
        let expected = kept(&[
            single_server.clone(),
            of_0_1_0.clone(),
            announced.clone(),
            ready.clone(),
            current.clone(),
        ]);
        let write_all = |dir: &std::path::Path| {
            let kv = FilesystemStore::new(dir.to_path_buf());
            let put = |key: String, record: Vec<u8>| {
                kv.write(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key, record)
                    .unwrap()
            };
            put("slot_00000".into(), writers::aof2(&single_server));
            put(OfferStore::key((server_key(), 1)), writers::aof3(&of_0_1_0));
            put(
                OfferStore::key((server_key(), 2)),
                writers::aof4(&announced),
            );
            put(OfferStore::key((server_key(), 3)), writers::aof4(&ready));
            put(OfferStore::key((server_key(), 4)), encode(&current));
        };

        for kill_after in 0.. {
            let dir = tempfile::tempdir().unwrap();
            write_all(dir.path());
            let dying = OfferStore::new(Arc::new(DiesAfter {
                kv: FilesystemStore::new(dir.path().to_path_buf()),
                writes_left: kill_after.into(),
            }));
            // The load moves the single-server record; each offer's next change writes it in
            // the current format.
            let mut killed = true;
            if let Ok(loaded) = dying.load_all(server_key()) {
                assert_eq!(kept(&loaded), expected, "loaded as written");
                killed = loaded.iter().any(|offer| dying.save(offer).is_err());
            }
            let after = store(dir.path()).load_all(server_key()).unwrap();
            assert_eq!(kept(&after), expected, "killed after {kill_after} writes");
            if !killed {
                let kv = FilesystemStore::new(dir.path().to_path_buf());
                let keys = kv.list(PRIMARY_NAMESPACE, OFFERS_NAMESPACE).unwrap();
                assert_eq!(keys.len(), 5);
                for key in keys {
                    let record = kv.read(PRIMARY_NAMESPACE, OFFERS_NAMESPACE, &key).unwrap();
                    assert_eq!(&record[..4], MAGIC, "{key} in the current format");
                }
                assert!(kill_after >= 6, "a move (write, remove) and five rewrites");
                break;
            }
        }
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
        let old = writers::aof3(&offer);
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
        assert_eq!(
            store(dir.path()).load_all(server_key()).unwrap()[0].invoice_confirmed_at,
            offer.invoice_confirmed_at
        );
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
        let loaded = store(dir.path()).events().unwrap();
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
        let loaded = store(dir.path()).events().unwrap();
        assert_eq!(
            loaded.len(),
            events.len() - 2,
            "the handled one gone, the corrupt one skipped"
        );
        assert_eq!(loaded[0], (14, events[2].clone()));
    }
}
