//! What the servers tell us: connections coming and going, offer paths (built into a Pending
//! offer and its invoice), invoice confirmations (the offer becomes Ready, or its refresh is
//! confirmed), and invoice requests a server forwards while the wallet is online.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::{AsyncPaymentsContext, OffersContext};
use lightning::onion_message::async_payments::OfferPaths;
use lightning::onion_message::messenger::Responder;
use lightning::onion_message::offers::OffersMessage;

use super::outbox::serve_message;
use super::{Engine, State};
use crate::clock::Time;
use crate::events::{Event, OfferInfo};
use crate::offers::builder::BuildError;
use crate::offers::cache::{
    CachedOffer, Confirmation, OfferPathsRejection, OfferState, Reachability,
};
use crate::offers::responder::reply_path_of;

impl Engine {
    /// `server` is connected: it gets its share of the missing offers, and its unconfirmed
    /// invoices again. At once if `afresh` (the first connection of a run, or one after a
    /// connection that worked); otherwise, the last connection having been dropped without a
    /// word from the server, each at its own backoff.
    pub fn on_connected(&self, server: PublicKey, afresh: bool) {
        let mut state = self.lock();
        state
            .cache
            .set_reachability(server, Reachability::Connected);
        if afresh {
            state.cache.forget_lost_requests(&server);
        }
        let afresh = afresh.then_some(server);
        let now = Time::of(&*self.clock);
        self.queue_resends(&mut state, now, afresh);
        self.queue_offer_paths_requests(&mut state);
        self.queue_checks(&mut state, now);
        drop(state);
        self.events.emit(Event::ServerConnected {
            server_node_id: OfferInfo::node_id_hex(&server),
        });
        self.wake_transports();
    }

    /// The connection to `server` went down: what waited for it is planned again, complete,
    /// on its next connection, and the other servers take over its share meanwhile.
    pub fn on_disconnected(&self, server: PublicKey) {
        self.mark_unreachable(server);
        self.events.emit(Event::ServerDisconnected {
            server_node_id: OfferInfo::node_id_hex(&server),
        });
    }

    /// The client stopped: `server` is no longer talked to, and nothing queues for it until
    /// the next start connects again (then everything due is planned afresh).
    pub fn on_stopped(&self, server: PublicKey) {
        let mut state = self.lock();
        let was_connected = state.cache.reachability(&server) == Reachability::Connected;
        state
            .cache
            .set_reachability(server, Reachability::Connecting);
        if let Some(link) = state.links.get_mut(&server) {
            link.forget();
        }
        drop(state);
        if was_connected {
            self.events.emit(Event::ServerDisconnected {
                server_node_id: OfferInfo::node_id_hex(&server),
            });
        }
    }

    /// An attempt to connect to `server` failed (`why`): the other servers take over its share.
    pub fn on_connection_failed(&self, server: PublicKey, why: &str) {
        self.note_problem(server, format!("cannot connect: {why}"));
        self.mark_unreachable(server);
    }

    pub(super) fn mark_unreachable(&self, server: PublicKey) {
        let mut state = self.lock();
        state
            .cache
            .set_reachability(server, Reachability::Unreachable);
        state.cache.note_unreachable(server, self.clock.monotonic());
        if let Some(link) = state.links.get_mut(&server) {
            link.forget();
        }
        self.queue_offer_paths_requests(&mut state);
        drop(state);
        self.wake_transports();
    }

    /// `server` sent offer paths for one of our slots: room for the next request, and the offer
    /// built and its invoice queued off the messenger's thread.
    pub fn on_offer_paths(
        &self,
        server: PublicKey,
        message: OfferPaths,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) {
        if let AsyncPaymentsContext::OfferPaths { invoice_slot, .. } = &context {
            self.request_answered(server, *invoice_slot, &message, responder.as_ref());
        }
        self.offer_builds.push(OfferBuild {
            server,
            message,
            context,
            responder,
        });
        self.run_offloaded(|engine| engine.build_offers());
    }

    /// Builds offers over the offer paths received, in the order they came, as one of at most
    /// [`OfferBuilds`]' builders; returns when none waits or every builder is at work.
    fn build_offers(&self) {
        while let Some(_builder) = self.offer_builds.start_builder() {
            while let Some(build) = self.offer_builds.next() {
                let OfferBuild {
                    server,
                    message,
                    context,
                    responder,
                } = build;
                // A panic ends this build only, not the builds queued behind it.
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.accept_offer_paths(server, message, context, responder)
                }));
                match built {
                    Ok(Ok(())) => self.wake_transports(),
                    Ok(Err(why)) => {
                        log::warn!("rejected OfferPaths: {why}");
                        self.note_problem(server, format!("rejected its offer paths: {why}"));
                    }
                    Err(_) => log::error!("building an offer over offer paths panicked"),
                }
            }
            // Ended before the loop asks again: an answer queued meanwhile, whose job found
            // every builder busy, is taken then.
        }
    }

    /// `server` stored one of our invoices: room for the next one, and the offer (or its
    /// refresh) confirmed off the messenger's thread.
    pub fn on_invoice_persisted(&self, server: PublicKey, context: AsyncPaymentsContext) {
        if let AsyncPaymentsContext::StaticInvoicePersisted {
            offer_id,
            invoice_created_at,
        } = &context
        {
            self.invoice_answered(server, *offer_id, *invoice_created_at);
        }
        self.run_offloaded(move |engine| engine.confirm_invoice(context));
    }

    /// Checks an `OfferPaths` from `server`, builds the offer and its invoice, and queues the
    /// invoice. The offer is Pending, in memory only: it is first written once the server
    /// confirms its invoice.
    pub(super) fn accept_offer_paths(
        &self,
        server: PublicKey,
        message: OfferPaths,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Result<(), Refusal> {
        let AsyncPaymentsContext::OfferPaths {
            invoice_slot,
            path_absolute_expiry,
        } = context
        else {
            return Err(Refusal::NotOverOurReplyPath);
        };
        let server_path = responder
            .as_ref()
            .map(reply_path_of)
            .ok_or(Refusal::NoReplyPath)?
            .map_err(Refusal::UndecodableReplyPath)?;
        let refused = |why| Refusal::Slot {
            slot: invoice_slot,
            server,
            why,
        };
        let Time {
            wall: now,
            monotonic,
        } = Time::of(&*self.clock);
        let paths_expiry = message.paths_absolute_expiry.map(Duration::from_secs);
        let check = |state: &State| {
            state
                .cache
                .check_offer_paths(
                    server,
                    invoice_slot,
                    path_absolute_expiry,
                    &message.paths,
                    paths_expiry,
                    now,
                )
                .map_err(|why| refused(SlotRefusal::Rejected(why)))
        };
        let (hints, hints_version, best_block_height) = {
            let state = self.lock();
            check(&state)?;
            (
                state.hints.clone(),
                state.hints_version,
                state.best_block_height,
            )
        };
        // Built outside the lock: offers for several slots are built at once.
        let (offer, nonce) = self
            .factory
            .build_offer(message.paths.clone(), paths_expiry)
            .map_err(|why| refused(SlotRefusal::Unbuildable(why)))?;
        // Over the size servers store even with one channel, sending it would only be retried
        // for ever.
        let invoice = self
            .factory
            .build_invoice(&offer, nonce, server, &hints, now, best_block_height)
            .map_err(|why| refused(SlotRefusal::Unbuildable(why)))?;
        let mut state = self.lock();
        // Again: a duplicate of this message may have filled the slot meanwhile.
        check(&state)?;
        let mut offer = CachedOffer::new_pending(
            server,
            invoice_slot,
            offer,
            nonce,
            server_path,
            invoice,
            now,
            monotonic,
        );
        let id = offer.id();
        // Queued under the lock that inserts the offer: a reconnection's resends cannot slip
        // in between and queue it a second time.
        let connected = state.cache.reachability(&server) == Reachability::Connected;
        match (connected, state.links.get_mut(&server)) {
            (true, Some(link)) => link.queue(serve_message(&offer)),
            // Paths for a lost request that came before the client heard the server is
            // connected again, or as the link dropped: the invoice is not sent yet, and the
            // resends planned on connection send it, once.
            _ => offer.invoice_not_sent(),
        }
        state.cache.insert_pending(offer);
        let hints_changed = state.hints_version != hints_version;
        drop(state);
        if hints_changed {
            // `update_channels` ran while this offer was built and did not see it.
            self.run_offloaded(move |engine| engine.refresh_invoice(id));
        }
        log::debug!(
            "built offer for slot {invoice_slot} of server {server}; sending its static invoice"
        );
        Ok(())
    }

    pub(super) fn confirm_invoice(&self, context: AsyncPaymentsContext) {
        let AsyncPaymentsContext::StaticInvoicePersisted {
            offer_id,
            invoice_created_at,
        } = context
        else {
            log::warn!("StaticInvoicePersisted over an unexpected path; ignored");
            return;
        };
        let now = Time::of(&*self.clock);
        let mut state = self.lock();
        let outcome = state
            .cache
            .invoice_persisted(offer_id, invoice_created_at, now);
        let confirmed_by = state.cache.get(offer_id).map(|offer| offer.server);
        if let (Some(server), false) = (confirmed_by, matches!(outcome, Confirmation::Ignored)) {
            // The server stores our invoices: what went wrong with it is past.
            state.problems.remove(&server);
        }
        let Some(cached) = state.cache.get(offer_id) else {
            log::debug!("confirmation for an unknown offer ignored");
            return;
        };
        let now_ready = matches!(outcome, Confirmation::NowReady { .. });
        let served_again = matches!(outcome, Confirmation::ServedAgain);
        // This offer completes the fill: the first one's, for a fresh install's slot key.
        let filled = now_ready
            && state
                .cache
                .offers()
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count()
                >= self.target_ready;
        let mut removals = Vec::new();
        let events = match outcome {
            Confirmation::Ignored => {
                log::debug!(
                    "duplicate or stale confirmation for slot {} of server {} ignored",
                    cached.slot,
                    cached.server
                );
                return;
            }
            Confirmation::Superseded => {
                log::debug!(
                    "an older invoice of the offer in slot {} of server {} was confirmed after the current one was installed; sending the current one (again)",
                    cached.slot,
                    cached.server
                );
                self.queue_invoice(&mut state, offer_id);
                drop(state);
                self.wake_transports();
                return;
            }
            Confirmation::Refreshed => vec![Event::InvoiceRefreshed {
                offer_id: OfferInfo::offer_id_hex(offer_id),
            }],
            // The same invoice, served again after a check: nothing new for the app.
            Confirmation::ServedAgain => Vec::new(),
            Confirmation::NowReady { replaced } => {
                // Encoded only here: duplicates and refreshes need no bech32 offer.
                let offer = OfferInfo::from(cached);
                removals.extend(replaced.iter().map(|old| self.store.prepare_removal(old)));
                let mut events = vec![Event::OfferReady {
                    offer: offer.clone(),
                }];
                events.extend(replaced.iter().map(|old| Event::OfferReplaced {
                    old_offer_id: OfferInfo::offer_id_hex(old.id()),
                    new_offer: offer.clone(),
                }));
                events
            }
        };
        let write = self.store.prepare(cached);
        state.confirmations_unwritten.push(offer_id);
        drop(state);
        for removal in removals {
            if let Err(e) = self.store.commit(removal) {
                // Gone from memory; loaded, and dropped again, at the next start.
                log::error!("{e}");
            }
        }
        let written = self.store.commit(write);
        let mut state = self.lock();
        state.confirmations_unwritten.retain(|id| *id != offer_id);
        if let (Err(e), true) = (&written, served_again) {
            // The disk already holds this invoice as confirmed: nothing to take back.
            return log::warn!("the confirmation of an invoice served again was not written: {e}");
        }
        if let Err(e) = written {
            // What the disk does not know is taken back, and asked for again: the invoice is
            // resent, and the server's next confirmation written. Until then no wait counts
            // it, and the app hears nothing of it.
            log::error!("{e}; the invoice is sent again");
            let problem = format!("a confirmed invoice could not be written: {e}");
            state
                .cache
                .confirmation_unwritten(offer_id, invoice_created_at, problem.clone());
            if let Some(server) = confirmed_by {
                state.problems.insert(server, problem);
            }
            return;
        }
        // A check waiting for this confirmation goes now.
        let checks_queued = self.queue_checks(&mut state, now);
        drop(state);
        if checks_queued {
            self.wake_transports();
        }
        for event in events {
            self.events.emit(event);
        }
        // After the events: what waits for this offer need not wait for the key's write.
        if filled {
            self.save_install_key();
        }
    }

    /// An offers message from `server`: the answer to one of our checks (the static invoice
    /// it gives payers, or an error saying it has none), or an invoice request it forwards,
    /// verified and reported unless it is one of our checks'; anything else is ignored.
    pub fn on_offers_message(
        &self,
        server: PublicKey,
        message: OffersMessage,
        context: Option<OffersContext>,
    ) {
        let request = match (message, context) {
            (
                OffersMessage::InvoiceRequest(request),
                Some(OffersContext::InvoiceRequest { nonce }),
            ) => (request, nonce),
            (
                OffersMessage::StaticInvoice(invoice),
                Some(OffersContext::OutboundPayment { payment_id, .. }),
            ) => return self.on_check_answer(server, payment_id.0, Some(invoice)),
            (
                OffersMessage::InvoiceError(error),
                Some(OffersContext::OutboundPayment { payment_id, .. }),
            ) => {
                log::debug!("server {server} answered a check with an error: {error}");
                return self.on_check_answer(server, payment_id.0, None);
            }
            (OffersMessage::Invoice(_), Some(OffersContext::OutboundPayment { .. })) => {
                // The wallet node, online, answered the request of a check that the server
                // forwarded to it; nobody pays that invoice.
                return log::debug!("the wallet node answered a check's invoice request; ignored");
            }
            _ => {
                return log::debug!(
                    "ignoring an offers message that is neither a forwarded invoice request nor a check's answer"
                )
            }
        };
        let (request, nonce) = request;
        if self.is_own_check_request(&request.payer_signing_pubkey()) {
            return log::debug!("server {server} forwarded the invoice request of our own check");
        }
        let expanded_key = self.keys.expanded_key();
        let amount_msats = request.amount_msats();
        let payer_note = request.payer_note().map(|note| note.to_string());
        match request.verify_using_recipient_data(nonce, &expanded_key, self.factory.secp()) {
            Ok(verified) => {
                let offer_id = OfferInfo::offer_id_hex(verified.offer_id);
                log::info!("verified forwarded invoice request for offer {offer_id}");
                let event = Event::InvoiceRequestForwarded {
                    offer_id,
                    amount_msats,
                    payer_note,
                };
                // Written only with the data dir held: a messenger of the app's may run this
                // while the client is not started, and another client may hold the dir, whose
                // events this one's numbering does not know.
                match self.hold_data_dir() {
                    Ok(_held) => self.events.emit(event),
                    Err(e) => {
                        log::warn!("the request waits in this process's memory only: {e}");
                        self.events.emit_unwritten(event);
                    }
                }
            }
            Err(()) => log::warn!("rejected a forwarded invoice request that failed verification"),
        }
    }
}

/// Why an `OfferPaths` was not turned into an offer.
#[derive(Debug)]
pub(super) enum Refusal {
    /// It came over a path that was not one of our `OfferPaths` reply paths.
    NotOverOurReplyPath,
    /// It carried no reply path to send the invoice over.
    NoReplyPath,
    /// Its reply path could not be read.
    UndecodableReplyPath(lightning::ln::msgs::DecodeError),
    /// It answered for `slot`, but could not fill it.
    Slot {
        slot: u16,
        server: PublicKey,
        why: SlotRefusal,
    },
}

/// Why a slot's `OfferPaths` could not fill it.
#[derive(Debug)]
pub(super) enum SlotRefusal {
    /// The cache refused the paths (not asked for, expiring too soon, ...).
    Rejected(OfferPathsRejection),
    /// The offer or its invoice could not be built over them.
    Unbuildable(BuildError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotOverOurReplyPath => {
                f.write_str("arrived over a path that was not an OfferPaths reply path")
            }
            Self::NoReplyPath => f.write_str("no reply path to send the invoice over"),
            Self::UndecodableReplyPath(e) => write!(f, "undecodable reply path: {e:?}"),
            Self::Slot { slot, server, why } => write!(f, "slot {slot} of server {server}: {why}"),
        }
    }
}

impl std::fmt::Display for SlotRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(why) => why.fmt(f),
            Self::Unbuildable(why) => why.fmt(f),
        }
    }
}

/// Offer paths received from a server, to build an offer and its invoice over.
pub(super) struct OfferBuild {
    server: PublicKey,
    message: OfferPaths,
    context: AsyncPaymentsContext,
    responder: Option<Responder>,
}

/// Offer paths waiting for their offers to be built: first come, first built, by one builder
/// per core but one (at least one). The core left over serves the later steps of the offers
/// built first (their invoices' onions, their confirmations' writes), so the first offer of a
/// fill is Ready sooner, rather than every offer at the pace of all of them sharing the cores
/// (`docs/PERFORMANCE.md`).
pub(super) struct OfferBuilds {
    queue: Mutex<VecDeque<OfferBuild>>,
    builders: AtomicUsize,
    max_builders: usize,
}

impl Default for OfferBuilds {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_builders(cores.saturating_sub(1).max(1))
    }
}

/// One builder at work; its end makes room for another.
struct Builder<'a>(&'a OfferBuilds);

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        self.0.builders.fetch_sub(1, Ordering::SeqCst);
    }
}

impl OfferBuilds {
    fn with_builders(max_builders: usize) -> Self {
        Self {
            queue: Mutex::default(),
            builders: AtomicUsize::new(0),
            max_builders,
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<OfferBuild>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, build: OfferBuild) {
        self.queue().push_back(build);
    }

    fn next(&self) -> Option<OfferBuild> {
        self.queue().pop_front()
    }

    /// Drops what waits: answers to requests a reloaded cache no longer has.
    pub(super) fn clear(&self) {
        self.queue().clear();
    }

    /// A builder's place, if something waits to be built and not every core has a builder.
    fn start_builder(&self) -> Option<Builder<'_>> {
        if self.queue().is_empty() {
            return None;
        }
        self.builders
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |builders| {
                (builders < self.max_builders).then_some(builders + 1)
            })
            .ok()?;
        Some(Builder(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::pubkey;
    use lightning::onion_message::async_payments::OfferPaths;

    fn build(slot: u16) -> OfferBuild {
        OfferBuild {
            server: pubkey(1),
            message: OfferPaths {
                paths: Vec::new(),
                paths_absolute_expiry: None,
            },
            context: AsyncPaymentsContext::OfferPaths {
                invoice_slot: slot,
                path_absolute_expiry: Duration::ZERO,
            },
            responder: None,
        }
    }

    fn slot_of(build: OfferBuild) -> u16 {
        match build.context {
            AsyncPaymentsContext::OfferPaths { invoice_slot, .. } => invoice_slot,
            _ => unreachable!(),
        }
    }

    #[test]
    fn offer_paths_are_built_in_the_order_they_came_by_at_most_the_builders_allowed() {
        let builds = OfferBuilds::with_builders(2);
        assert!(builds.start_builder().is_none(), "nothing waits");
        for slot in 0..5 {
            builds.push(build(slot));
        }
        let first = builds.start_builder().expect("one builder");
        let second = builds.start_builder().expect("a second");
        assert!(builds.start_builder().is_none(), "no third");
        assert_eq!(slot_of(builds.next().unwrap()), 0);
        assert_eq!(slot_of(builds.next().unwrap()), 1);
        // A builder ending makes room for one, while something waits.
        drop(first);
        let third = builds.start_builder().expect("room again");
        let order: Vec<u16> = std::iter::from_fn(|| builds.next()).map(slot_of).collect();
        assert_eq!(order, [2, 3, 4]);
        drop((second, third));
        assert!(builds.start_builder().is_none(), "nothing waits");
        assert_eq!(builds.builders.load(Ordering::SeqCst), 0);
    }
}
