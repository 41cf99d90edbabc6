//! What the app takes: offers handed out (each written as handed out before it is returned),
//! and offer books exported and imported.

use std::time::Duration;

use super::{count, Engine};
use crate::clock::Time;
use crate::events::{ImportedOffers, OfferInfo};
use crate::io::records::{decode_book, encode_book};
use crate::offers::cache::{CachedOffer, Imported, OfferCache, Pick};
use crate::Error;

impl Engine {
    /// Hands out a Ready offer never handed out before, persisted as Used first.
    pub fn take_offer(&self, label: Option<String>) -> Result<OfferInfo, Error> {
        self.hand_out(|cache, now| cache.take(label, now).map(|offer| (offer, Pick::HandedOut)))
    }

    /// The offer for `label`: the same one every time while it lives.
    pub fn offer_for(&self, label: &str) -> Result<OfferInfo, Error> {
        self.hand_out(|cache, now| cache.offer_for(label, now))
    }

    /// Runs `pick`; an offer it newly hands out is persisted as Used before it is returned, and
    /// its slot's replacement requested. The write is made outside the engine's lock: message
    /// handling and maintenance never wait for it; hand-outs (and exports) wait for each
    /// other, so no two see an offer whose hand-out is not yet durable. An expiring offer whose
    /// notice is owed again is written too, but a failed write only costs that notice after a
    /// restart, and is logged.
    pub(super) fn hand_out(
        &self,
        pick: impl FnOnce(&mut OfferCache, Duration) -> Option<(CachedOffer, Pick)>,
    ) -> Result<OfferInfo, Error> {
        let _held = self.hold_data_dir()?;
        let _one_at_a_time = self.hand_outs.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        let (offer, write) = {
            let mut state = self.lock();
            let (offer, picked) = pick(&mut state.cache, now).ok_or(Error::NoReadyOffer)?;
            let write = (picked != Pick::Unchanged).then(|| (self.store.prepare(&offer), picked));
            (offer, write)
        };
        if let Some((write, picked)) = write {
            match (self.store.commit(write), picked) {
                (Ok(()), _) => {}
                (Err(e), Pick::NoticeOwed) => {
                    log::warn!("{e}; the offer's expiry notice is owed in memory only")
                }
                (Err(e), _) => {
                    // Ready again, and written so (best effort): a refresh may have written
                    // the offer as handed out meanwhile, which the disk must not keep.
                    let mut state = self.lock();
                    state.cache.untake(offer.id());
                    let rewrite = state.cache.get(offer.id()).map(|o| self.store.prepare(o));
                    drop(state);
                    if let Some(Err(again)) = rewrite.map(|write| self.store.commit(write)) {
                        log::warn!("after a failed hand-out: {again}");
                    }
                    return Err(e);
                }
            }
            let mut state = self.lock();
            self.queue_offer_paths_requests(&mut state);
            drop(state);
            self.wake_transports();
        }
        Ok(OfferInfo::from(&offer))
    }

    /// The handed-out offers as an offer book (see [`crate::io::store`]), as on disk now.
    pub fn export_offers(&self) -> Result<Vec<u8>, Error> {
        let _held = self.hold_data_dir()?;
        // Not while a hand-out is being written: its offer may yet go back to Ready.
        let _no_hand_out = self.hand_outs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(encode_book(self.lock().cache.handed_out()))
    }

    /// Merges the handed-out offers of `book` (see [`OfferCache::import`]), written before this
    /// returns; their unconfirmed invoices are sent, and they are refreshed as ours from now on.
    ///
    /// A book not this wallet's changes nothing. The merge is made in memory with the
    /// hand-outs held (so no hand-out whose write fails can put an imported offer back to
    /// Ready meanwhile), then written offer by offer; if a write fails, that offer and those
    /// after it are taken back in memory, and a retry imports them. Those written before stay
    /// imported: the disk holds them as handed out, and memory must never offer them again.
    pub fn import_offers(&self, book: &[u8]) -> Result<ImportedOffers, Error> {
        let offers = decode_book(book, self.first_server)
            .map_err(|why| Error::InvalidOfferBook(why.to_string()))?;
        if let Some((index, offer)) = offers
            .iter()
            .enumerate()
            .find(|(_, offer)| !self.factory.built_here(&offer.offer, offer.nonce))
        {
            return Err(Error::InvalidOfferBook(format!(
                "offer {} of {} ({}) was not made by this wallet: its signing key is not one this seed derives on this network",
                index + 1,
                offers.len(),
                OfferInfo::offer_id_hex(offer.id())
            )));
        }
        let _held = self.hold_data_dir()?;
        let _no_hand_out = self.hand_outs.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.lock();
        let import = state.cache.import(offers);
        // An imported offer's record replaces, under the same key, that of the offer that made
        // way for it.
        let writes: Vec<_> = import
            .written
            .iter()
            .map(|imported| self.store.prepare(&imported.offer))
            .collect();
        drop(state);
        for offer in &import.conflicts {
            log::warn!(
                "not importing the offer in slot {} of server {}: an offer handed out here holds that slot",
                offer.slot,
                offer.server
            );
        }
        let total = import.written.len();
        let mut imported = import.written.into_iter();
        for (done, write) in writes.into_iter().enumerate() {
            if let Err(e) = self.store.commit(write) {
                self.take_back_import(imported);
                let why = match e {
                    Error::Storage(why) => why,
                    other => other.to_string(),
                };
                return Err(Error::Storage(format!(
                    "importing the offer book: {why}; {done} of its {total} new offers were imported, import it again for the rest"
                )));
            }
            imported.next();
        }
        self.after_import();
        Ok(ImportedOffers {
            imported: count(total),
            already_here: count(import.already_here),
            conflicting: count(import.conflicts.len()),
        })
    }

    /// Undoes the import of offers whose records were not written, and writes what their slots
    /// hold again: a refresh or an announcement may have written one of them as imported
    /// meanwhile (best effort: the disk that refused the import may refuse this too).
    fn take_back_import(&self, not_written: impl Iterator<Item = Imported>) {
        let mut state = self.lock();
        let writes: Vec<_> = not_written
            .map(|imported| {
                let slot_key = imported.offer.clone();
                match state.cache.undo_import(imported, self.clock.monotonic()) {
                    Some(now_there) => self.store.prepare(&now_there),
                    None => self.store.prepare_removal(&slot_key),
                }
            })
            .collect();
        drop(state);
        for write in writes {
            if let Err(e) = self.store.commit(write) {
                log::warn!("after a failed import: {e}");
            }
        }
        self.after_import();
    }

    /// What an import changed goes out: invoices to send, slots to request.
    fn after_import(&self) {
        let mut state = self.lock();
        self.queue_resends(&mut state, Time::of(&*self.clock), None);
        self.queue_offer_paths_requests(&mut state);
        drop(state);
        self.wake_transports();
    }
}
