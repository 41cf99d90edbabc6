//! Offer books: the handed-out offers of another install of this wallet merged in, and an
//! import taken back when its write failed.

use std::time::Duration;

use super::*;

/// What [`OfferCache::import`] did.
#[derive(Debug, Default)]
pub(crate) struct Import {
    /// Offers new here or newly Used, to write, each with what it was here before.
    pub written: Vec<Imported>,
    /// Imported offers already handed out here.
    pub already_here: usize,
    /// Imported offers whose slot an offer handed out here holds: not imported.
    pub conflicts: Vec<CachedOffer>,
}

/// One offer an import made Used here, and how to take that back
/// ([`OfferCache::undo_import`]) if its record cannot be written.
#[derive(Debug)]
pub(crate) struct Imported {
    pub offer: CachedOffer,
    before: BeforeImport,
}

/// What an imported offer was here before the import.
#[derive(Debug)]
enum BeforeImport {
    /// Known here, Ready or Pending, with this label and hand-out time.
    Known {
        state: OfferState,
        label: Option<String>,
        handed_out_at: Option<Duration>,
    },
    /// New here; it took its slot from this Ready or Pending offer of ours, if any.
    New { made_way: Option<Box<CachedOffer>> },
}

impl Imported {
    /// The Ready or Pending offer of ours that made way for it, if any.
    #[cfg(test)]
    pub fn made_way(&self) -> Option<&CachedOffer> {
        match &self.before {
            BeforeImport::New { made_way } => made_way.as_deref(),
            BeforeImport::Known { .. } => None,
        }
    }
}

impl OfferCache {
    /// Handed-out offers of another install of this wallet's (a backup, another device), merged
    /// so that none is handed out again and none loses its slot. An offer known here as Ready
    /// becomes Used with the book's label; one already Used here stays as it is; a new one
    /// takes its slot from a Ready offer or a request of ours there, which make way, but never
    /// from an offer handed out here (the server holds one invoice per slot: one of the two is
    /// already broken, and ours is the one this install kept refreshing).
    pub fn import(&mut self, book: Vec<CachedOffer>) -> Import {
        let mut import = Import::default();
        for mut offer in book.into_iter().filter(|o| o.state == OfferState::Used) {
            let slot = (offer.server, offer.slot);
            if let Some(known) = self.get_mut(offer.id()) {
                if known.state == OfferState::Used {
                    import.already_here += 1;
                    continue;
                }
                let before = BeforeImport::Known {
                    state: known.state,
                    label: known.label.take(),
                    handed_out_at: known.handed_out_at,
                };
                known.state = OfferState::Used;
                known.label = offer.label;
                known.handed_out_at = offer.handed_out_at;
                import.written.push(Imported {
                    offer: known.clone(),
                    before,
                });
                continue;
            }
            let mut made_way = None;
            if let Some(index) = self.offers.iter().position(|o| (o.server, o.slot) == slot) {
                if self.offers[index].state == OfferState::Used {
                    import.conflicts.push(offer);
                    continue;
                }
                made_way = Some(Box::new(self.offers.remove(index)));
            }
            self.requests.remove(&slot);
            if made_way.is_some() {
                // The server holds the invoice of the offer that made way in that slot: the
                // imported offer's is sent (and written unconfirmed, so a restart sends it too).
                offer.invoice_confirmed = false;
            }
            offer.invoice_sent_at = None;
            offer.expiry_announced = false;
            offer.expired_announced = false;
            offer.refresh_failure_announced = false;
            import.written.push(Imported {
                offer: offer.clone(),
                before: BeforeImport::New { made_way },
            });
            self.offers.push(offer);
        }
        import
    }

    /// Takes back the import of `imported`, whose record could not be written: the offer is
    /// again what it was here before (or gone, and the offer that made way for it back), so
    /// that memory never holds an import the disk does not. Its invoice stays whatever it is
    /// now (a refresh may have replaced it meanwhile). The offer that made way comes back
    /// Pending with its invoice unconfirmed: the server may have been sent the imported
    /// offer's invoice for that slot meanwhile, so it is sent again, and the offer is Ready
    /// once it is confirmed, waiting for that from `now` (monotonic), as a Pending offer does from
    /// when it was built. Returns what the slot holds now (`None`: nothing on disk, as a
    /// Pending offer is not written), for the caller to write over whatever a refresh or an
    /// announcement may have written of the import meanwhile.
    pub fn undo_import(&mut self, imported: Imported, now: Duration) -> Option<CachedOffer> {
        let id = imported.offer.id();
        match imported.before {
            BeforeImport::Known {
                state,
                label,
                handed_out_at,
            } => {
                let offer = self.get_mut(id)?;
                offer.state = state;
                offer.label = label;
                offer.handed_out_at = handed_out_at;
                Some(offer.clone()).filter(|offer| offer.state != OfferState::Pending)
            }
            BeforeImport::New { made_way } => {
                self.offers.retain(|offer| offer.id() != id);
                if let Some(mut offer) = made_way.map(|offer| *offer) {
                    offer.state = OfferState::Pending;
                    offer.invoice_confirmed = false;
                    offer.invoice_sent_at = None;
                    offer.pending_since = now;
                    self.offers.push(offer);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn an_imported_book_never_overwrites_a_handed_out_offer_and_is_never_handed_out_again() {
        let fixture = offer_fixture();
        let used = |slot, label: &str| {
            let mut offer = fixture.cached(slot, t0(), None);
            offer.state = OfferState::Used;
            offer.label = Some(label.into());
            offer.invoice_confirmed = true;
            offer
        };
        let ready_here = fixture.cached(1, t0(), None);
        let mut cache = connected(
            policy(4),
            vec![
                ready_here.clone(),
                used(2, "here"),
                fixture.cached(3, t0(), None),
            ],
        );
        cache.plan_requests(at(t0()));
        assert!(cache.requested_slots().contains(&(server_key(), 0)));
        let mut known_as_ready = ready_here.clone();
        known_as_ready.state = OfferState::Used;
        known_as_ready.label = Some("elsewhere".into());
        let book = vec![
            known_as_ready,
            used(2, "clash"),
            used(3, "takes a Ready offer's slot"),
            used(0, "takes a requested slot"),
            fixture.cached(9, t0(), None),
        ];
        let import = cache.import(book);
        assert_eq!(import.written.len(), 3);
        assert_eq!(
            import.conflicts.len(),
            1,
            "slot 2 stays the handed-out offer's"
        );
        assert_eq!(
            import
                .written
                .iter()
                .filter_map(|imported| imported.made_way())
                .map(|o| o.slot)
                .collect::<Vec<_>>(),
            vec![3]
        );
        // The server holds the invoice of the Ready offer that made way: the imported one is
        // sent there; in the slot only requested, the server holds the book's.
        let imported_in = |cache: &OfferCache, slot| {
            cache
                .offers()
                .iter()
                .find(|o| o.slot == slot)
                .unwrap()
                .clone()
        };
        assert!(!imported_in(&cache, 3).invoice_confirmed);
        assert!(imported_in(&cache, 0).invoice_confirmed);
        let (sent, not_sent) = (imported_in(&cache, 3).id(), imported_in(&cache, 0).id());
        let resent = cache.plan_resends(at(t0()), None);
        assert!(resent.contains(&sent) && !resent.contains(&not_sent));
        assert!(cache.get(ready_here.id()).unwrap().state == OfferState::Used);
        assert!(!cache.requested_slots().contains(&(server_key(), 0)));
        assert!(
            cache.offers().iter().all(|o| o.slot != 9),
            "Ready offers of the book are not imported"
        );
        assert!(
            cache.take(None, t0()).is_none(),
            "nothing Ready is left to hand out"
        );
        let mut slots: Vec<u16> = cache.offers().iter().map(|o| o.slot).collect();
        slots.sort();
        assert_eq!(slots, vec![0, 1, 2, 3], "one offer per slot");
        assert_eq!(cache.import(cache.offers().to_vec()).already_here, 4);
    }

    #[test]
    fn an_import_taken_back_leaves_every_offer_as_it_was() {
        let fixture = offer_fixture();
        let ready_here = {
            let mut offer = fixture.cached(1, t0(), None);
            offer.state = OfferState::Ready;
            offer
        };
        let pending_here = fixture.cached(2, t0(), None);
        // Loaded from its record: this process never saw it Pending.
        let loaded_ready = {
            let mut offer = fixture.cached(3, t0(), None);
            offer.state = OfferState::Ready;
            offer.pending_since = Duration::ZERO;
            offer
        };
        let mut cache = connected(
            policy(4),
            vec![ready_here.clone(), pending_here, loaded_ready.clone()],
        );
        let before = |cache: &OfferCache| {
            let mut offers: Vec<_> = cache
                .offers()
                .iter()
                .map(|o| (o.id(), o.slot, o.state, o.label.clone(), o.handed_out_at))
                .collect();
            offers.sort_by_key(|(_, slot, ..)| *slot);
            offers
        };
        let was = before(&cache);
        let mut known_as_ready = ready_here.clone();
        known_as_ready.state = OfferState::Used;
        known_as_ready.label = Some("elsewhere".into());
        known_as_ready.handed_out_at = Some(t0());
        let mut new_in_pending_slot = fixture.cached(2, t0(), None);
        new_in_pending_slot.state = OfferState::Used;
        let mut new_in_ready_slot = fixture.cached(3, t0(), None);
        new_in_ready_slot.state = OfferState::Used;
        let import = cache.import(vec![known_as_ready, new_in_pending_slot, new_in_ready_slot]);
        assert_eq!(import.written.len(), 3);
        assert_ne!(before(&cache), was);
        let slots_now: Vec<Option<OfferState>> = import
            .written
            .into_iter()
            .map(|imported| cache.undo_import(imported, t0()).map(|o| o.state))
            .collect();
        assert_eq!(
            slots_now,
            vec![Some(OfferState::Ready), None, None],
            "to write: the Ready offer; a Pending one is not on disk"
        );
        let state_of_loaded = |cache: &OfferCache| cache.get(loaded_ready.id()).map(|o| o.state);
        assert_eq!(
            state_of_loaded(&cache),
            Some(OfferState::Pending),
            "its invoice to be confirmed again: the slot may hold the imported one's"
        );
        cache.maintain(at(t0() + Duration::from_secs(1)));
        assert_eq!(
            state_of_loaded(&cache),
            Some(OfferState::Pending),
            "waiting for that from now, not abandoned at once"
        );
        let was_but_pending: Vec<_> = was
            .iter()
            .cloned()
            .map(
                |(id, slot, state, label, at)| match id == loaded_ready.id() {
                    true => (id, slot, OfferState::Pending, label, at),
                    false => (id, slot, state, label, at),
                },
            )
            .collect();
        assert_eq!(before(&cache), was_but_pending);
        assert_eq!(
            cache.take(None, t0()).map(|o| o.id()),
            Some(ready_here.id()),
            "Ready again, as on disk"
        );
    }
}
