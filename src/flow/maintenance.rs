//! What time brings: expiry, resends, refreshes and retries at each tick, and fresh invoices
//! when the wallet's channels change.

use lightning::offers::offer::OfferId;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Engine, RefreshRun, State};
use crate::clock::Time;
use crate::config::ChannelHint;
use crate::events::{Event, OfferInfo};
use crate::offers::cache::OfferState;
use crate::Error;

impl Engine {
    /// Periodic maintenance: expiry, resends, refreshes, retries.
    pub fn on_tick(&self) {
        let _held = match self.hold_data_dir() {
            Ok(held) => held,
            Err(e) => return log::debug!("maintenance skipped: {e}"),
        };
        let now = Time::of(&*self.clock);
        let mut events = Vec::new();
        let mut state = self.lock();
        let maintenance = state.cache.maintain(now);
        let removals: Vec<_> = maintenance
            .removed
            .iter()
            .chain(&maintenance.abandoned)
            .map(|offer| self.store.prepare_removal(offer))
            .collect();
        let announced: Vec<_> = maintenance
            .announced
            .iter()
            .map(|offer| self.store.prepare(offer))
            .collect();
        for offer in maintenance
            .removed
            .iter()
            .filter(|o| o.state == OfferState::Used)
        {
            log::info!(
                "the handed-out offer in slot {} of server {} expired over the retention ago; its record is deleted and its slot free",
                offer.slot,
                offer.server
            );
        }
        for offer in &maintenance.abandoned {
            log::warn!(
                "server {} never confirmed the invoice of the offer in its slot {}; requesting new paths",
                offer.server,
                offer.slot
            );
        }
        let unused_removed = maintenance
            .removed
            .iter()
            .filter(|o| o.state != OfferState::Used);
        events.extend(
            maintenance
                .expired
                .iter()
                .chain(unused_removed)
                .map(|offer| Event::OfferExpired {
                    offer_id: OfferInfo::offer_id_hex(offer.id()),
                }),
        );
        events.extend(
            maintenance
                .expiring
                .iter()
                .map(|offer| Event::OfferExpiring {
                    offer: OfferInfo::from(offer),
                }),
        );
        for (offer, reason) in &maintenance.refresh_failed {
            state.problems.insert(
                offer.server,
                format!(
                    "the invoice of the offer in slot {} is stale: {reason}",
                    offer.slot
                ),
            );
            log::warn!(
                "the handed-out offer in slot {} of server {} has had no confirmed invoice for over its refresh interval: {reason}",
                offer.slot,
                offer.server
            );
            events.push(Event::InvoiceRefreshFailed {
                offer: OfferInfo::from(offer),
                reason: reason.clone(),
            });
        }
        // After those a stopped run did not reach.
        self.owe_refreshes(&mut state, maintenance.rebuild);
        self.queue_resends(&mut state, now, None);
        self.queue_offer_paths_requests(&mut state);
        drop(state);
        // Checks after the resends and refreshes (an offer whose invoice is on its way is
        // not checked), and after the checks that timed out were judged.
        self.time_out_checks();
        let mut state = self.lock();
        self.queue_checks(&mut state, now);
        drop(state);
        self.wake_transports();
        // Written outside the lock; an offer whose removal fails is gone from memory only,
        // and is loaded, and removed, again at the next start.
        for removal in removals {
            if let Err(e) = self.store.commit(removal) {
                log::error!("{e}");
            }
        }
        // The events first, then that they were made: a crash in between repeats one (the
        // queue takes it once), never loses one.
        for event in events {
            self.events.emit(event);
        }
        for write in announced {
            if let Err(e) = self.store.commit(write) {
                log::error!("{e}");
            }
        }
    }

    /// New channel hints: every live offer (Pending ones too: the invoice the server has not
    /// confirmed yet carries the old hints) gets a fresh invoice now, built off the caller's
    /// thread and sent to its own server as fast as that server's budget allows.
    pub fn update_channels(&self, hints: Vec<ChannelHint>) -> Result<(), Error> {
        for hint in &hints {
            hint.check()?;
        }
        let mut state = self.lock();
        state.hints = hints;
        state.hints_version += 1;
        let ids = state.cache.live_offers(self.clock.now());
        // Each gets one refresh, with these hints, however many it was owed.
        state.refreshes_owed.clear();
        self.owe_refreshes(&mut state, ids);
        Ok(())
    }

    /// The chain tip, for the invoices built from now on: their payment paths' CLTV cap is
    /// counted from it instead of the clock's estimate (which a wrong clock makes wrong).
    /// Invoices already built keep theirs until their next refresh.
    pub fn set_best_block_height(&self, height: u32) {
        self.lock().best_block_height = Some(height);
    }

    /// Adds `ids` to the refreshes owed, and sets a worker on them unless one is; not once the
    /// app stopped the client (it would take the data dir for the batch, and iOS kills an app
    /// suspended holding it): those wait for the next start or sync.
    pub(super) fn owe_refreshes(&self, state: &mut State, ids: Vec<OfferId>) {
        for id in ids {
            if !state.refreshes_owed.contains(&id) {
                state.refreshes_owed.push_back(id);
            }
        }
        if state.refreshes_owed.is_empty() {
            return;
        }
        let Some(run) = self.refresh_run() else {
            return;
        };
        let Some(engine) = self.me.upgrade() else {
            return;
        };
        if self.refresh_worker.swap(true, Ordering::SeqCst) {
            return;
        }
        let working = WorkerFlag(self.refresh_worker.clone());
        // Not `run_offloaded`: the worker holds the run's own lock, or takes one per offer.
        // The job never runs inline (`Offload`), so the state's lock held here is fine.
        (self.offload)(Box::new(move || engine.refresh_owed(working, run)));
    }

    /// Builds, writes and queues a new invoice for each offer owed one, one at a time, until
    /// none is left. When the app stops the client it ends at the next offer, so that the
    /// data dir is let go of within one write; the offers not reached stay owed to the next
    /// run. Without a run, it takes the data dir for each offer, giving up the wait when the
    /// app stops the client or starts a run (whose own worker then takes over).
    fn refresh_owed(&self, working: WorkerFlag, run: RefreshRun) {
        let gave_up = || self.stopped.load(Ordering::SeqCst) || self.running_lock().is_some();
        loop {
            let _held = match &run {
                RefreshRun::Unstarted => match self.hold_data_dir_unless(&gave_up) {
                    Ok(held) => held,
                    Err(e) => {
                        log::info!("invoices to rebuild wait: {e}");
                        return self.worker_done(working);
                    }
                },
                RefreshRun::Run(_) => None,
            };
            let id = {
                let mut state = self.lock();
                if !self.refresh_run_continues(&run) {
                    log::info!(
                        "stopped with {} invoices still to rebuild; the next run rebuilds them",
                        state.refreshes_owed.len()
                    );
                    drop(state);
                    return self.worker_done(working);
                }
                let Some(id) = state.refreshes_owed.pop_front() else {
                    // Let go with the state locked: an offer owed from now on finds no worker.
                    drop(working);
                    return;
                };
                state.refresh_under_way = Some(id);
                id
            };
            self.refresh_invoice(id);
            self.lock().refresh_under_way = None;
        }
    }

    /// A worker ends with refreshes still owed: its flag goes with the state locked, and a
    /// run begun meanwhile gets a worker of its own at once rather than at its next tick.
    /// (Without a run, the next call of the app's or tick tries again: not at once, which
    /// would spin while another client holds the data dir.)
    fn worker_done(&self, working: WorkerFlag) {
        let mut state = self.lock();
        drop(working);
        if matches!(self.refresh_run(), Some(RefreshRun::Run(_))) {
            self.owe_refreshes(&mut state, Vec::new());
        }
    }

    pub(super) fn refresh_invoice(&self, id: OfferId) {
        let now = Time::of(&*self.clock);
        // The hints and the creation time are taken together: a refresh begun later, with
        // newer hints, makes a later invoice, whichever build finishes first. (Invoices carry
        // whole seconds; a confirmation names its invoice by that time, so one of an older
        // invoice never passes for a newer one's.)
        let (offer, nonce, server, hints, best_block_height, created_at) = {
            let mut state = self.lock();
            let Some(created_at) = state.cache.reserve_invoice_time(id, now.wall) else {
                return;
            };
            let Some(cached) = state.cache.get(id) else {
                return;
            };
            (
                cached.offer.clone(),
                cached.nonce,
                cached.server,
                state.hints.clone(),
                state.best_block_height,
                created_at,
            )
        };
        // Built outside the lock: a refresh of many offers must not stall the messenger.
        let invoice = match self.factory.build_invoice(
            &offer,
            nonce,
            server,
            &hints,
            created_at,
            best_block_height,
        ) {
            Ok(invoice) => invoice,
            Err(e) => {
                log::error!("could not rebuild an offer's invoice, trying again at the next maintenance: {e}");
                self.lock()
                    .cache
                    .refresh_problem(id, format!("its invoice could not be rebuilt: {e}"));
                return;
            }
        };
        // One refresh at a time from here to its install: a newer invoice written and
        // installed is never followed on disk by an older one.
        let _in_order = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
        // The new invoice is written before the cache takes it: until then nothing (a resend,
        // a reconnection) can send the server an invoice the disk does not know.
        let (write, slot) = {
            let state = self.lock();
            let Some(cached) = state.cache.get(id) else {
                return;
            };
            if !state
                .cache
                .is_newer_invoice(id, invoice.invoice.created_at())
            {
                log::debug!(
                    "a newer invoice of the offer in slot {} came first; this one is dropped",
                    cached.slot
                );
                return;
            }
            let write = (cached.state != OfferState::Pending).then(|| {
                let mut refreshed = cached.clone();
                refreshed.invoice = invoice.clone();
                refreshed.invoice_confirmed = false;
                self.store.prepare(&refreshed)
            });
            (write, cached.slot)
        };
        if let Some(Err(e)) = write.map(|write| self.store.commit(write)) {
            log::error!(
                "not sending the refreshed invoice of the offer in slot {slot}: {e}; the previous one stays, and the next maintenance tries again"
            );
            self.lock().cache.refresh_problem(
                id,
                format!("its refreshed invoice could not be written: {e}"),
            );
            return;
        }
        let mut state = self.lock();
        if state.cache.replace_invoice(id, invoice, now.monotonic) {
            self.queue_invoice(&mut state, id);
        }
        drop(state);
        self.wake_transports();
    }
}

/// Set while a worker takes the refreshes owed; cleared when the worker's job ends or is
/// dropped unrun.
struct WorkerFlag(Arc<AtomicBool>);

impl Drop for WorkerFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
