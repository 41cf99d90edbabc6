//! Checks of handed-out offers as a payer sees them: an `invoice_request` over one of the
//! offer's own paths, from a payer key made for that one request, with a reply path to this
//! client; the static invoice the server answers with is judged by the cache
//! (`offers::cache::check`), and the engine does what the verdict says: writes the offer
//! verified, serves its invoice again, or marks it broken and tells the app.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::{MessageContext, OffersContext};
use lightning::ln::channelmanager::PaymentId;
use lightning::ln::inbound_payment::ExpandedKey;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::OfferId;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::offers::OffersMessage;
use lightning::sign::EntropySource;

use super::outbox::{Message, Outgoing};
use super::{Engine, State};
use crate::clock::Time;
use crate::events::{CheckReport, Event, OfferCheckStatus, OfferInfo, ServerStatus, Unfinished};
use crate::offers::cache::{CachedOffer, CheckVerdict, Finding, OfferCache, PlannedCheck};

/// The amount a check asks for: the offers carry none, and an invoice request must name one.
/// The static invoice does not depend on it.
const CHECK_AMOUNT_MSATS: u64 = 1_000;
/// How long a check's payer key is remembered after the request left, so that the server
/// forwarding the request back to this client is recognised as the check, not a payment.
const OWN_REQUEST_MEMORY: Duration = Duration::from_secs(600);

impl Engine {
    /// Queues the checks the cache plans now, each to its offer's server; whether it queued
    /// any (for the caller to wake the transports).
    pub(super) fn queue_checks(&self, state: &mut State, now: Time) -> bool {
        let entropy = self.keys.transport_keys_manager().clone();
        let planned = state
            .cache
            .plan_checks(now, || entropy.get_secure_random_bytes());
        let queued = !planned.is_empty();
        for check in planned {
            let Some(offer) = state.cache.get(check.offer) else {
                continue;
            };
            let server = offer.server;
            match self.check_request(offer, &check) {
                Ok((outgoing, payer)) => {
                    log::debug!(
                        "checking the offer in slot {} of server {server} as a payer",
                        offer.slot
                    );
                    state.own_check_requests.remember(payer, now.monotonic);
                    if let Some(link) = state.links.get_mut(&server) {
                        link.queue(outgoing);
                    }
                }
                Err(why) => {
                    log::error!(
                        "cannot check the offer in slot {} of server {server}: {why}",
                        offer.slot
                    );
                    state.cache.check_unsendable(check.offer, now);
                }
            }
        }
        state.own_check_requests.forget_before(now.monotonic);
        queued
    }

    /// The invoice request of `check` for `offer`, and the payer key it is signed with: a
    /// key of its own (from a throwaway key and nonce), no payer note, nothing of the wallet.
    fn check_request(
        &self,
        offer: &CachedOffer,
        check: &PlannedCheck,
    ) -> Result<(Outgoing, PublicKey), String> {
        let entropy = self.keys.transport_keys_manager();
        let throwaway = ExpandedKey::new(entropy.get_secure_random_bytes());
        let nonce = Nonce::from_entropy_source(&**entropy);
        let payment_id = PaymentId(check.id);
        let request = offer
            .offer
            .request_invoice(&throwaway, nonce, self.factory.secp(), payment_id)
            .and_then(|builder| builder.chain(self.factory.network()))
            .and_then(|builder| builder.amount_msats(CHECK_AMOUNT_MSATS))
            .and_then(|builder| builder.build_and_sign())
            .map_err(|e| format!("no invoice request can be built for it: {e:?}"))?;
        let payer = request.payer_signing_pubkey();
        let destination = offer
            .offer
            .paths()
            .get(check.path)
            .cloned()
            .ok_or("the offer has no paths")?;
        let outgoing = Outgoing {
            message: Message::Offers(OffersMessage::InvoiceRequest(request)),
            destination,
            reply_context: MessageContext::Offers(OffersContext::OutboundPayment {
                payment_id,
                nonce,
            }),
        };
        Ok((outgoing, payer))
    }

    /// Whether `payer` signed one of this client's recent check requests: the server forwards
    /// those back like a payer's, and they are no payment.
    pub(super) fn is_own_check_request(&self, payer: &PublicKey) -> bool {
        self.lock().own_check_requests.contains(payer)
    }

    /// `server` answered the check `id`: with the invoice it gives payers, or (`None`) with an
    /// error saying it has none.
    pub(super) fn on_check_answer(
        &self,
        server: PublicKey,
        id: [u8; 32],
        served: Option<StaticInvoice>,
    ) {
        let now = Time::of(&*self.clock);
        let verdict = self.lock().cache.check_answered(&id, served.as_ref(), now);
        match verdict {
            Some(verdict) => self.apply_check_verdicts(vec![verdict]),
            None => log::debug!(
                "an answer from server {server} to a check no longer waited for; ignored"
            ),
        }
    }

    /// Ends the checks the servers left unanswered for too long: they gave no invoice.
    pub(crate) fn time_out_checks(&self) {
        let now = Time::of(&*self.clock);
        let verdicts = self.lock().cache.time_out_checks(now);
        if !verdicts.is_empty() {
            self.apply_check_verdicts(verdicts);
        }
    }

    /// Does what each check found: writes what the round did (verified, ended, a repair, a
    /// broken offer; off the caller's thread, holding the data dir), serves again the invoices
    /// found missing or older, tells the app of broken offers, and queues the next checks.
    fn apply_check_verdicts(&self, verdicts: Vec<(OfferId, CheckVerdict)>) {
        let now = Time::of(&*self.clock);
        let mut state = self.lock();
        let mut writes = Vec::new();
        let mut events = Vec::new();
        for (id, verdict) in verdicts {
            let Some(offer) = state.cache.get(id) else {
                continue;
            };
            let (slot, server) = (offer.slot, offer.server);
            match verdict {
                CheckVerdict::Verified => {
                    log::debug!("the offer in slot {slot} of server {server} is served to payers as confirmed");
                }
                CheckVerdict::ServeAgain(finding) => {
                    log::warn!("the offer in slot {slot} of server {server}: {finding}");
                }
                CheckVerdict::GaveUp(finding) => {
                    log::warn!("the offer in slot {slot} of server {server}: {finding}");
                    state
                        .problems
                        .insert(server, format!("the offer in slot {slot}: {finding}"));
                }
                CheckVerdict::Broken(finding) => {
                    log::error!("the offer in slot {slot} of server {server} is broken: {finding}");
                    events.push(Event::OfferBroken {
                        offer: OfferInfo::from(offer),
                        reason: finding.to_string(),
                    });
                    // Nothing of it leaves again: a send would overwrite the other offer.
                    state.refreshes_owed.retain(|owed| *owed != id);
                    if let Some(link) = state.links.get_mut(&server) {
                        link.drop_invoices_of(id);
                    }
                }
                CheckVerdict::CheckAgain => {
                    log::warn!("the offer in slot {slot} of server {server}: the server gave another offer's invoice; checking again");
                    continue;
                }
                CheckVerdict::Inconclusive => continue,
            }
            writes.push(id);
        }
        // The Ready offers of a server suspected of losing its store are served again.
        self.queue_resends(&mut state, now, None);
        self.queue_checks(&mut state, now);
        // Not ended for the reports until written (and a broken offer's event queued).
        state
            .check_findings_unwritten
            .extend(writes.iter().copied());
        drop(state);
        self.wake_transports();
        if writes.is_empty() && events.is_empty() {
            return;
        }
        self.run_offloaded(move |engine| {
            // The event first, then the offer marked broken: a crash in between repeats the
            // event (the queue takes it once), never loses it.
            for event in events {
                engine.events.emit(event);
            }
            for id in writes {
                let write = engine
                    .lock()
                    .cache
                    .get(id)
                    .map(|offer| engine.store.prepare(offer));
                if let Some(Err(e)) = write.map(|write| engine.store.commit(write)) {
                    log::error!("{e}");
                }
                let mut state = engine.lock();
                if let Some(at) = state.check_findings_unwritten.iter().position(|x| *x == id) {
                    state.check_findings_unwritten.swap_remove(at);
                }
            }
        });
    }

    /// Asks for every handed-out offer to be checked now (the app's `check_offers`), and
    /// sends what may leave. Returns the offers asked for.
    pub fn ask_checks(&self) -> Vec<OfferId> {
        let now = Time::of(&*self.clock);
        let mut state = self.lock();
        let asked = state.cache.ask_checks(now);
        self.queue_checks(&mut state, now);
        drop(state);
        self.wake_transports();
        asked
    }
}

impl Engine {
    /// How far the checks the app asked for (`asked`, from [`Self::ask_checks`]) got, after
    /// `elapsed`.
    pub fn check_report(&self, asked: &[OfferId], elapsed: Duration) -> CheckReport {
        let now = Time::of(&*self.clock);
        let state = self.lock();
        // By the ids' bytes (`OfferId` has no `Hash`): a wallet may hold a thousand offers.
        let asked: HashSet<[u8; 32]> = asked.iter().map(|id| id.0).collect();
        let under_way = checks_unfinished(&state, now, true);
        let waiting: HashSet<[u8; 32]> = under_way.iter().map(|(o, _)| o.id().0).collect();
        let mut unfinished: Vec<Unfinished> = under_way
            .into_iter()
            .filter(|(offer, _)| asked.contains(&offer.id().0))
            .map(|(offer, why)| unfinished(offer, why))
            .collect();
        let (mut checked, mut verified, mut served_again, mut broken) = (0, 0, 0, 0);
        let offers = state.cache.offers().iter();
        for offer in offers.filter(|offer| asked.contains(&offer.id().0)) {
            checked += 1;
            if waiting.contains(&offer.id().0) {
                continue;
            }
            match &offer.check.finding {
                _ if offer.broken.is_some() => broken += 1,
                Some(Finding::Verified) => verified += 1,
                Some(Finding::Mended(_)) => {
                    verified += 1;
                    served_again += 1;
                }
                Some(finding) => unfinished.push(self::unfinished(offer, finding.to_string())),
                None => unfinished.push(self::unfinished(offer, "not checked".into())),
            }
        }
        CheckReport {
            complete: unfinished.is_empty(),
            checked,
            verified,
            served_again,
            broken,
            unfinished,
            elapsed,
        }
    }
}

/// The checks not ended, and why, as `OfferCache::checks_unfinished` says, and those whose
/// finding is still being written.
pub(super) fn checks_unfinished(
    state: &State,
    now: Time,
    asked_only: bool,
) -> Vec<(&CachedOffer, String)> {
    let mut unfinished = state.cache.checks_unfinished(now, asked_only);
    for id in &state.check_findings_unwritten {
        let listed = unfinished.iter().any(|(offer, _)| offer.id() == *id);
        if let Some(offer) = state.cache.get(*id).filter(|_| !listed) {
            unfinished.push((offer, "what its check found is being written".to_string()));
        }
    }
    unfinished
}

/// `offer`'s entry in a report's unfinished list.
pub(super) fn unfinished(offer: &CachedOffer, reason: String) -> Unfinished {
    Unfinished {
        server_node_id: OfferInfo::node_id_hex(&offer.server),
        offer_id: Some(OfferInfo::offer_id_hex(offer.id())),
        reason,
    }
}

/// What the checks found of each handed-out live offer of a configured server, for `status`.
pub(super) fn offer_checks(cache: &OfferCache, now: Time) -> Vec<OfferCheckStatus> {
    cache
        .handed_out()
        .filter(|offer| cache.is_configured(&offer.server) && !offer.is_expired(now.wall))
        .map(|offer| OfferCheckStatus {
            server_node_id: OfferInfo::node_id_hex(&offer.server),
            offer_id: OfferInfo::offer_id_hex(offer.id()),
            verified_at: offer.verified_at,
            finding: check_finding(offer),
        })
        .collect()
}

/// What the checks found of `offer`, in a sentence.
fn check_finding(offer: &CachedOffer) -> String {
    if let Some(broken) = &offer.broken {
        return format!("broken: {broken}");
    }
    let under_way = offer.check.out.is_some() || offer.check.recheck_on_confirmation;
    let found = match (&offer.check.finding, offer.verified_at) {
        (Some(finding), _) => finding.to_string(),
        (None, Some(_)) => Finding::Verified.to_string(),
        (None, None) => "not checked yet".to_string(),
    };
    match under_way {
        true => format!("{found} (a check is under way)"),
        false => found,
    }
}

/// One sentence on the checks of `server`'s handed-out offers (`None`: it holds none).
pub(super) fn server_checks(checks: &[OfferCheckStatus], server: &ServerStatus) -> Option<String> {
    let of_server: Vec<&OfferCheckStatus> = checks
        .iter()
        .filter(|check| check.server_node_id == server.server_node_id)
        .collect();
    if of_server.is_empty() {
        return None;
    }
    let count = |prefix: &str| {
        of_server
            .iter()
            .filter(|check| check.finding.starts_with(prefix))
            .count()
    };
    let verified = count("payers get the invoice");
    let unchecked = count("not checked yet");
    let broken = count("broken");
    let failing = of_server.len() - verified - unchecked - broken;
    Some(format!(
        "{} handed-out offers: {verified} served to payers as confirmed, {failing} not (being mended), {broken} broken, {unchecked} not checked yet",
        of_server.len()
    ))
}

/// The payer keys of this client's recent check requests, for [`OWN_REQUEST_MEMORY`]: found by
/// their serialized bytes (a key comparison serializes both keys), a thousand checks a round.
#[derive(Default)]
pub(super) struct OwnRequests {
    keys: HashSet<[u8; 33]>,
    /// When each was made (monotonic), oldest first.
    made: VecDeque<([u8; 33], Duration)>,
}

impl OwnRequests {
    fn remember(&mut self, payer: PublicKey, now: Duration) {
        let key = payer.serialize();
        self.keys.insert(key);
        self.made.push_back((key, now));
    }

    fn contains(&self, payer: &PublicKey) -> bool {
        self.keys.contains(&payer.serialize())
    }

    fn forget_before(&mut self, now: Duration) {
        while let Some((key, _)) = self
            .made
            .front()
            .filter(|(_, at)| at.saturating_add(OWN_REQUEST_MEMORY) <= now)
        {
            self.keys.remove(key);
            self.made.pop_front();
        }
    }
}
