//! Checks: whether a server gives payers the invoice it confirmed last. A check asks for a
//! handed-out offer's static invoice over the offer's own paths, as a payer does, and judges
//! what comes back against the offer's current invoice. Each offer is checked at most once per
//! the policy's interval (its first check at a point of the interval drawn from its id, so that
//! offers spread over it), plus the repeats a failure needs: an invoice found missing or older
//! is served again (once, not resent until confirmed), and checked again once confirmed, at
//! most [`REPAIRS_PER_ROUND`] times a round before the client gives up until the next
//! interval. When a round ended and how many repairs it has made are kept with the offer, so a
//! new process (a background task's) neither starts over nor forgets a repair. A slot found
//! twice in a row holding another offer's invoice cannot be mended by this client: the offer
//! is broken.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::offers::offer::OfferId;
use lightning::offers::static_invoice::StaticInvoice;

use super::*;
use crate::clock::Time;

/// How many times one round of checks serves an offer's invoice again before it gives up
/// until the next interval: a server that confirms invoices but never serves them costs at
/// most this many 32 KiB sends and one more check than that per offer and interval.
pub(crate) const REPAIRS_PER_ROUND: u32 = 2;
/// The most checks unanswered per server: each answer is an invoice in a 32 KiB onion (two,
/// when the server also forwards the request back to this client), and LDK's messenger drops
/// what is past 256 KiB buffered for a peer, invoices and requests of ours included.
pub(crate) const MAX_CHECKS_IN_FLIGHT: usize = 3;

/// An offer's checks as this process runs them.
#[derive(Clone, Debug, Default)]
pub(crate) struct OfferCheck {
    /// When (monotonic) its next regular check is due (`None`: not worked out yet; see
    /// [`OfferCache::check_due`]).
    pub due_at: Option<Duration>,
    /// To check now, whatever `due_at` says: the app asked ([`OfferCache::ask_checks`]), or
    /// the invoice a check served again was confirmed. Cleared when the round ends.
    pub asked: bool,
    /// The check request out now.
    pub out: Option<CheckOut>,
    /// The invoice was served again because a check found it missing or older: the check is
    /// repeated once the server confirms it.
    pub recheck_on_confirmation: bool,
    /// When (monotonic) the invoice was served again: unconfirmed after the answer timeout,
    /// the repair failed.
    pub served_again_at: Option<Duration>,
    /// Times the invoice was served again in this round (kept with the offer: see
    /// `CachedOffer::check_repairs`).
    pub repairs: u32,
    /// The last check found another offer's invoice in the slot: one more that does breaks
    /// the offer (one answer of a confused or hostile server must not).
    pub overwritten_once: bool,
    /// What the last check found.
    pub finding: Option<Finding>,
}

/// A check request on its way, named by the payment id of its reply path.
#[derive(Clone, Debug)]
pub(crate) struct CheckOut {
    pub id: [u8; 32],
    /// When it left for the server (monotonic; `None`: still in the outbox).
    pub left_at: Option<Duration>,
    /// The creation time (whole seconds) of the offer's invoice when it was sent: an answer
    /// of that invoice after a refresh was confirmed meanwhile is no rollback.
    pub for_invoice: u64,
}

/// What a check found, in words a support person can act on ([`Finding`]'s `Display`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The server gives payers the invoice it confirmed last (or a newer one of this wallet's).
    Verified,
    /// No invoice came back: the server does not have it (lost its store, restored an old
    /// backup) or did not answer.
    Missing,
    /// The server gives payers an older invoice of the offer than the one it confirmed last.
    Older,
    /// The server gives payers an invoice of the offer signed by another key: payers refuse it.
    Unpayable,
    /// Payers get the invoice again: the server gave the inner finding, and the invoice
    /// served again was then found served.
    Mended(Box<Finding>),
    /// After serving the invoice again [`REPAIRS_PER_ROUND`] times, the server still does not
    /// give it to payers as it confirmed; the last check found the inner finding.
    GaveUp(Box<Finding>),
    /// The slot holds another offer's invoice: the offer cannot be mended by this client.
    Overwritten,
    /// Once another offer's invoice, then none: nothing is sent to the slot, and the next
    /// interval's check tells.
    OverwrittenOnce,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified => f.write_str("payers get the invoice the server confirmed last"),
            Self::Missing => f.write_str(
                "the server gave no invoice for it (lost, or no answer): the invoice is served again",
            ),
            Self::Older => f.write_str(
                "the server gives payers an older invoice than the one it confirmed last: the current one is served again",
            ),
            Self::Unpayable => f.write_str(
                "the server gives payers an invoice signed by another key, which they refuse: the current one is served again",
            ),
            Self::Mended(found) => write!(
                f,
                "payers get the invoice the server confirmed last, served again after {}",
                found.what_was_served()
            ),
            Self::GaveUp(last) => write!(
                f,
                "payers still get {} after the invoice was served again {REPAIRS_PER_ROUND} times; checked again at the next interval",
                last.what_was_served()
            ),
            Self::Overwritten => f.write_str(
                "its slot on the server holds another offer's invoice (another install of this wallet, or the server, overwrote it): the offer cannot be mended",
            ),
            Self::OverwrittenOnce => f.write_str(
                "the server gave payers another offer's invoice once, then none: nothing is sent to its slot until the next check tells",
            ),
        }
    }
}

impl Finding {
    /// What payers got, for the findings that say the invoice was not the right one.
    fn what_was_served(&self) -> &'static str {
        match self {
            Self::Older => "an older invoice",
            Self::Unpayable => "an invoice signed by another key",
            _ => "no invoice",
        }
    }
}

/// What the engine does with a check's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckVerdict {
    /// Served as confirmed: write the offer (its `verified_at`).
    Verified,
    /// Serve the current invoice again now (sent once more, still confirmed), and check again
    /// once the server confirms it.
    ServeAgain(Finding),
    /// Nothing more this round.
    GaveUp(Finding),
    /// The offer is broken: write it, tell the app.
    Broken(Finding),
    /// Nothing can be told (our own newer invoice is on its way): the next check will.
    Inconclusive,
    /// Check again now (over another path): a first answer of another offer's invoice.
    CheckAgain,
}

/// A check to send: the offer, the id of its reply path, and which of the offer's paths.
#[derive(Clone, Debug)]
pub(crate) struct PlannedCheck {
    pub offer: OfferId,
    pub id: [u8; 32],
    pub path: usize,
}

/// How the invoice a server gave payers compares with the offer's current one, for a check
/// sent when the current invoice was created at `sent_for` (whole seconds).
fn judge(offer: &CachedOffer, served: Option<&StaticInvoice>, sent_for: u64) -> Option<Finding> {
    let Some(served) = served else {
        return Some(Finding::Missing);
    };
    let current = &offer.invoice.invoice;
    if served.offer_id() != offer.id() {
        return Some(Finding::Overwritten);
    }
    if served.signing_pubkey() != current.signing_pubkey() {
        return Some(Finding::Unpayable);
    }
    // Whole seconds, as invoices carry it: the one in memory may hold a fraction more.
    let (served_at, current_at) = (
        served.created_at().as_secs(),
        current.created_at().as_secs(),
    );
    if served_at > current_at {
        // Only a holder of this wallet's keys signs an invoice of this offer: another install
        // of it (an imported offer book) refreshed it later. Payers get a valid invoice.
        return Some(Finding::Verified);
    }
    if served_at < current_at {
        // Older than ours: wrong only once the server confirmed ours, and if ours was sent
        // before the check (a refresh confirmed meanwhile may have come after its answer).
        return (offer.invoice_confirmed && served_at < sent_for).then_some(Finding::Older);
    }
    Some(match served.payment_paths() == current.payment_paths() {
        true => Finding::Verified,
        false => Finding::Older,
    })
}

impl CachedOffer {
    /// Has its current invoice sent to the server once more (`plan_resends`), though the
    /// server confirmed it: not resent after that, so a server that never confirms it costs
    /// one send. Its confirmation is [`Confirmation::ServedAgain`].
    fn serve_again(&mut self) {
        self.delivery.serving_again = true;
        self.invoice_sent_at = None;
        self.check.served_again_at = None;
    }

    /// `finding` for a check `out` of it, unless its invoice changed since the check left or is
    /// not confirmed yet: then no invoice tells nothing (the server may not have had the new one
    /// yet), and the check is repeated once the current one is confirmed.
    fn unless_superseded(&mut self, finding: Option<Finding>, out: &CheckOut) -> Option<Finding> {
        let current = self.invoice.invoice.created_at().as_secs();
        if finding == Some(Finding::Missing)
            && (out.for_invoice != current || !self.invoice_confirmed)
        {
            self.check.recheck_on_confirmation = true;
            return None;
        }
        finding
    }

    /// Whether a check could tell anything of it now: handed out, live, not broken, its
    /// current invoice confirmed, not being served again, and not due for a refresh (which
    /// will send a new one).
    fn checkable(&self, refresh_interval: Duration, now: Time) -> bool {
        self.state == OfferState::Used
            && self.broken.is_none()
            && !self.is_expired(now.wall)
            && self.invoice_confirmed
            && !self.delivery.serving_again
            && !self.delivery.rebuild_under_way
            && !self.invoice_due(refresh_interval, now)
    }

    /// A point of `interval` of its own, from its id: its first check falls there after it is
    /// handed out, so that offers handed out together are not checked together.
    fn check_phase(&self, interval: Duration) -> Duration {
        let id = self.id().0;
        let draw = u64::from_le_bytes(id[..8].try_into().expect("8 bytes"));
        let nanos = interval.as_nanos().max(1);
        Duration::from_nanos((u128::from(draw) % nanos) as u64)
    }
}

impl OfferCache {
    /// When (monotonic) `offer`'s next regular check is due at `now`: as set by this process,
    /// else an interval after its last round ended (verified or not) by the wall clock, or its
    /// point of the interval after it was handed out if it never was checked. A time in the
    /// future (a clock that was ahead) counts as due.
    pub(super) fn check_due(&self, offer: &CachedOffer, now: Time) -> Duration {
        let interval = self.policy.offer_check_interval;
        offer.check.due_at.unwrap_or_else(|| {
            let due_wall = match offer.verified_at.max(offer.checked_at) {
                Some(last) if last <= now.wall => last.saturating_add(interval),
                Some(_) => now.wall,
                None => offer
                    .handed_out_at
                    .or(offer.invoice_confirmed_at)
                    .unwrap_or(offer.created_at)
                    .saturating_add(offer.check_phase(interval)),
            };
            now.monotonic + due_wall.saturating_sub(now.wall)
        })
    }

    /// Asks for every handed-out live offer of a configured server to be checked now: the
    /// app's "check my offers". Returns them.
    pub fn ask_checks(&mut self, now: Time) -> Vec<OfferId> {
        let mut asked = Vec::new();
        for index in 0..self.offers.len() {
            let offer = &self.offers[index];
            let eligible = offer.state == OfferState::Used
                && offer.broken.is_none()
                && !offer.is_expired(now.wall)
                && self.is_configured(&offer.server);
            if eligible {
                let offer = &mut self.offers[index];
                offer.check.asked = true;
                offer.check.repairs = 0;
                offer.check_repairs = 0;
                asked.push(offer.id());
            }
        }
        asked
    }

    /// How many checks of `server`'s offers are out (sent or about to be) and unanswered.
    pub fn checks_out(&self, server: &PublicKey) -> usize {
        self.offers
            .iter()
            .filter(|offer| offer.check.out.is_some() && offer.server == *server)
            .count()
    }

    /// The checks to send now, each given an id by `new_id`: offers the app asked for, and (if
    /// checks are on) those due, of connected servers, as far as each server's window of
    /// unanswered checks allows. Marked out until answered or timed out.
    pub fn plan_checks(
        &mut self,
        now: Time,
        mut new_id: impl FnMut() -> [u8; 32],
    ) -> Vec<PlannedCheck> {
        let periodic = !self.policy.offer_check_interval.is_zero();
        let refresh_interval = self.policy.invoice_refresh_interval;
        // Counted once: comparing node ids serializes both keys, and a wallet may hold a
        // thousand offers.
        let mut out: HashMap<PublicKey, usize> = HashMap::new();
        for offer in self.offers.iter().filter(|o| o.check.out.is_some()) {
            *out.entry(offer.server).or_default() += 1;
        }
        let mut planned = Vec::new();
        for index in 0..self.offers.len() {
            let offer = &self.offers[index];
            if offer.check.out.is_some() || !offer.checkable(refresh_interval, now) {
                continue;
            }
            let due =
                offer.check.asked || (periodic && self.check_due(offer, now) <= now.monotonic);
            if !due {
                continue;
            }
            let out_to_server = out.get(&offer.server).copied().unwrap_or(0);
            if out_to_server >= MAX_CHECKS_IN_FLIGHT || !self.is_connected(&offer.server) {
                continue;
            }
            out.insert(offer.server, out_to_server + 1);
            let id = new_id();
            let paths = offer.offer.paths().len().max(1);
            let offer = &mut self.offers[index];
            offer.check.out = Some(CheckOut {
                id,
                left_at: None,
                for_invoice: offer.invoice.invoice.created_at().as_secs(),
            });
            // Another path for each repeat, in case one is broken.
            let attempt = offer.check.repairs + u32::from(offer.check.overwritten_once);
            planned.push(PlannedCheck {
                offer: offer.id(),
                id,
                path: attempt as usize % paths,
            });
        }
        planned
    }

    /// The check `id` left for its server at `now` (monotonic): its answer is waited for from
    /// then.
    pub fn check_left(&mut self, id: &[u8; 32], now: Duration) {
        if let Some(offer) = self.checking(id) {
            if let Some(out) = &mut offer.check.out {
                out.left_at.get_or_insert(now);
            }
        }
    }

    fn checking(&mut self, id: &[u8; 32]) -> Option<&mut CachedOffer> {
        self.offers
            .iter_mut()
            .find(|o| o.check.out.as_ref().is_some_and(|out| out.id == *id))
    }

    /// The server answered the check `id` with `served` (`None`: it said it has no invoice).
    /// Returns the offer and what to do, if `id` is a check of ours still out.
    pub fn check_answered(
        &mut self,
        id: &[u8; 32],
        served: Option<&StaticInvoice>,
        now: Time,
    ) -> Option<(OfferId, CheckVerdict)> {
        let offer = self.checking(id)?;
        let out = offer.check.out.take()?;
        let finding = judge(offer, served, out.for_invoice);
        let finding = offer.unless_superseded(finding, &out);
        let id = offer.id();
        Some((id, self.conclude(id, finding, now)))
    }

    /// Checks unanswered for the policy's timeout since they left (the server gave no
    /// invoice), and invoices served again and not confirmed within it (the repair failed).
    pub fn time_out_checks(&mut self, now: Time) -> Vec<(OfferId, CheckVerdict)> {
        let timeout = self.policy.check_answer_timeout;
        let past =
            |at: Option<Duration>| at.is_some_and(|at| at.saturating_add(timeout) <= now.monotonic);
        let timed_out: Vec<(OfferId, Option<Finding>)> = self
            .offers
            .iter_mut()
            .filter_map(|o| {
                if past(o.check.out.as_ref().and_then(|out| out.left_at)) {
                    let out = o.check.out.take()?;
                    let finding = o.unless_superseded(Some(Finding::Missing), &out);
                    return Some((o.id(), finding));
                }
                if o.delivery.serving_again && past(o.check.served_again_at) {
                    o.delivery.serving_again = false;
                    o.check.recheck_on_confirmation = false;
                    o.check.served_again_at = None;
                    return Some((o.id(), o.check.finding.clone()));
                }
                None
            })
            .collect();
        timed_out
            .into_iter()
            .map(|(id, finding)| (id, self.conclude(id, finding, now)))
            .collect()
    }

    /// A check found `server` without an invoice it had served before: it may have lost them
    /// all (a lost disk, an old backup restored). Its other handed-out offers are checked now,
    /// and its Ready offers' invoices served again once (they are handed out without a check),
    /// at most once per check interval (or hour, if checks are off) in a process.
    fn suspect_lost_store(&mut self, server: PublicKey, now: Time) {
        let every = self
            .policy
            .offer_check_interval
            .max(Duration::from_secs(3600));
        if self
            .lost_store_suspected
            .get(&server)
            .is_some_and(|at| at.saturating_add(every) > now.monotonic)
        {
            return;
        }
        self.lost_store_suspected.insert(server, now.monotonic);
        let refresh_interval = self.policy.invoice_refresh_interval;
        for offer in self.offers.iter_mut().filter(|o| o.server == server) {
            match offer.state {
                OfferState::Used if offer.checkable(refresh_interval, now) => {
                    offer.check.asked = true;
                }
                OfferState::Ready if offer.invoice_confirmed => offer.serve_again(),
                _ => {}
            }
        }
    }

    /// Applies `finding` to the offer `id` (`None`: nothing could be told).
    fn conclude(&mut self, id: OfferId, finding: Option<Finding>, now: Time) -> CheckVerdict {
        let interval = self.policy.offer_check_interval;
        let Some(finding) = finding else {
            return CheckVerdict::Inconclusive;
        };
        let Some(offer) = self.get_mut(id) else {
            return CheckVerdict::Inconclusive;
        };
        // Only a finding that shows this offer's invoice in the slot clears a first answer of
        // another offer's; no answer does not.
        if !matches!(finding, Finding::Overwritten | Finding::Missing) {
            offer.check.overwritten_once = false;
        }
        // The round ends: nothing more until the next interval, and a new process knows it.
        let end_round = |offer: &mut CachedOffer, finding: Finding| {
            offer.check = OfferCheck {
                due_at: Some(now.monotonic.saturating_add(interval)),
                finding: Some(finding),
                ..OfferCheck::default()
            };
            offer.checked_at = Some(now.wall);
            offer.check_repairs = 0;
        };
        match finding {
            Finding::Verified => {
                let repairs = offer.check.repairs;
                let found = offer.check.finding.take().filter(|_| repairs > 0);
                let finding = match found {
                    Some(found) => Finding::Mended(Box::new(found)),
                    None => Finding::Verified,
                };
                end_round(offer, finding);
                offer.verified_at = Some(now.wall);
                CheckVerdict::Verified
            }
            Finding::Overwritten if !offer.check.overwritten_once => {
                offer.check.overwritten_once = true;
                offer.check.asked = true;
                CheckVerdict::CheckAgain
            }
            Finding::Overwritten => {
                end_round(offer, Finding::Overwritten);
                offer.broken = Some(Finding::Overwritten.to_string());
                CheckVerdict::Broken(Finding::Overwritten)
            }
            Finding::Missing if offer.check.overwritten_once => {
                // Serving ours again could overwrite another offer: the next round tells.
                end_round(offer, Finding::OverwrittenOnce);
                offer.check.overwritten_once = true;
                CheckVerdict::GaveUp(Finding::OverwrittenOnce)
            }
            finding if offer.check.repairs >= REPAIRS_PER_ROUND => {
                let gave_up = Finding::GaveUp(Box::new(finding));
                end_round(offer, gave_up.clone());
                CheckVerdict::GaveUp(gave_up)
            }
            finding => {
                let (server, served_before) = (offer.server, offer.verified_at.is_some());
                offer.check.repairs += 1;
                offer.check_repairs = offer.check.repairs;
                offer.check.recheck_on_confirmation = true;
                offer.check.served_again_at = Some(now.monotonic);
                offer.check.finding = Some(finding.clone());
                offer.serve_again();
                // Lost after the server had served it: the whole store may be gone. (A server
                // that never served an invoice is no sign of one.)
                if finding == Finding::Missing && served_before {
                    self.suspect_lost_store(server, now);
                }
                CheckVerdict::ServeAgain(finding)
            }
        }
    }

    /// The check of `id` could not be sent (no request can be built for the offer): nothing
    /// more this round.
    pub fn check_unsendable(&mut self, id: OfferId, now: Time) {
        let interval = self.policy.offer_check_interval;
        if let Some(offer) = self.get_mut(id) {
            offer.check = OfferCheck {
                due_at: Some(now.monotonic.saturating_add(interval)),
                ..OfferCheck::default()
            };
            offer.checked_at = Some(now.wall);
            offer.check_repairs = 0;
        }
    }

    /// Forgets the checks out to `server`: it is no longer connected, and their answers cannot
    /// come. Each is sent again once it is.
    pub(super) fn forget_checks_of(&mut self, server: &PublicKey) {
        for offer in self.offers.iter_mut().filter(|o| o.server == *server) {
            offer.check.out = None;
            if offer.delivery.serving_again {
                // What was served again may not have left: sent again, and waited for, from
                // the next connection.
                offer.invoice_sent_at = None;
                offer.check.served_again_at = None;
            }
        }
    }

    /// Handed-out offers whose check the app asked for (`asked_only`) or that are due a
    /// check, not concluded at `now`, and why.
    pub fn checks_unfinished(&self, now: Time, asked_only: bool) -> Vec<(&CachedOffer, String)> {
        let periodic = !self.policy.offer_check_interval.is_zero();
        self.offers
            .iter()
            .filter(|o| o.state == OfferState::Used && o.broken.is_none())
            .filter(|o| self.is_configured(&o.server) && !o.is_expired(now.wall))
            .filter(|o| {
                o.check.asked
                    || o.check.out.is_some()
                    || o.check.recheck_on_confirmation
                    || (!asked_only && periodic && self.check_due(o, now) <= now.monotonic)
            })
            .map(|o| {
                let why = if !self.is_connected(&o.server) {
                    "its check waits for the server's connection".to_string()
                } else if o.check.out.is_some() {
                    "its check is waiting for the server's answer".to_string()
                } else if o.check.recheck_on_confirmation {
                    format!(
                        "{}; its check is repeated once the server confirms it",
                        o.check.finding.as_ref().unwrap_or(&Finding::Missing)
                    )
                } else if !o.invoice_confirmed || o.delivery.rebuild_under_way {
                    "its check waits for its new invoice to be confirmed".to_string()
                } else {
                    "its check is not sent yet".to_string()
                };
                (o, why)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    /// Ids for the planned checks: 1, 2, 3, ... in their first byte.
    fn ids() -> impl FnMut() -> [u8; 32] {
        let mut next = 0u8;
        move || {
            next += 1;
            [next; 32]
        }
    }

    /// A cache with `count` offers handed out at `t0()`, and them.
    fn handed_out(count: u16) -> (OfferFixture, OfferCache, Vec<CachedOffer>) {
        let fixture = offer_fixture();
        // Refreshes out of the way: an offer due one is not checked.
        let policy = CachePolicy {
            invoice_refresh_interval: 30 * DAY,
            ..policy(count)
        };
        let mut cache = connected(policy, vec![]);
        let mut offers = Vec::new();
        for _ in 0..count {
            fill(&mut cache, &fixture, t0());
        }
        for _ in 0..count {
            offers.push(cache.take(None, t0()).unwrap());
        }
        (fixture, cache, offers)
    }

    /// The offers whose check `plan_checks` sends at `now`, answered at once by `served`.
    fn check_all(
        cache: &mut OfferCache,
        now: Duration,
        served: impl Fn(&CachedOffer) -> Option<StaticInvoice>,
    ) -> Vec<(OfferId, CheckVerdict)> {
        let planned = cache.plan_checks(at(now), ids());
        planned
            .into_iter()
            .filter_map(|check| {
                let offer = cache.get(check.offer).unwrap().clone();
                cache.check_left(&check.id, now);
                cache.check_answered(&check.id, served(&offer).as_ref(), at(now))
            })
            .collect()
    }

    /// A cache with one offer handed out, whose first check found its invoice missing: it is
    /// being served again.
    fn serving_again() -> (OfferCache, OfferId) {
        let (_, mut cache, offers) = handed_out(1);
        let id = offers[0].id();
        cache.ask_checks(at(t0()));
        let verdicts = check_all(&mut cache, t0(), |_| None);
        assert_eq!(
            verdicts,
            vec![(id, CheckVerdict::ServeAgain(Finding::Missing))]
        );
        (cache, id)
    }

    fn own_invoice(offer: &CachedOffer) -> Option<StaticInvoice> {
        Some(offer.invoice.invoice.clone())
    }

    #[test]
    fn each_offer_is_checked_once_per_interval_at_a_point_of_its_own() {
        let (_, mut cache, offers) = handed_out(6);
        let mut first_checked = std::collections::BTreeMap::new();
        // Every 10 minutes over three intervals.
        let step = Duration::from_secs(600);
        let mut now = t0();
        while now < t0() + 3 * DAY {
            for (id, verdict) in check_all(&mut cache, now, own_invoice) {
                assert_eq!(verdict, CheckVerdict::Verified);
                let checks = first_checked.entry(id.0).or_insert_with(Vec::new);
                checks.push(now);
            }
            now += step;
        }
        assert_eq!(first_checked.len(), 6, "every offer");
        for (id, checks) in &first_checked {
            // Once per interval, to the step: neither more often nor less.
            assert!(checks.len() >= 2, "{checks:?}");
            assert!(
                checks
                    .windows(2)
                    .all(|pair| pair[1] - pair[0] >= DAY && pair[1] - pair[0] < DAY + step),
                "once per interval: {checks:?}"
            );
            let offer = cache.get(OfferId(*id)).unwrap();
            assert_eq!(offer.verified_at, checks.last().copied());
        }
        // Six points drawn over the day: all within an hour of each other one time in a million.
        let firsts: Vec<Duration> = first_checked.values().map(|checks| checks[0]).collect();
        let span = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
        assert!(span > HOUR, "spread over the interval: {firsts:?}");
        assert!(offers
            .iter()
            .all(|o| cache.get(o.id()).unwrap().broken.is_none()));
    }

    #[test]
    fn an_invoice_the_server_lost_is_served_again_and_checked_again_at_most_twice_a_round() {
        let (_, mut cache, offers) = handed_out(1);
        let id = offers[0].id();
        cache.ask_checks(at(t0()));
        let timeout = Duration::from_secs(10);
        let mut now = t0() + HOUR;
        let mut served_again = 0;
        for round_check in 0..=REPAIRS_PER_ROUND {
            let planned = cache.plan_checks(at(now), ids());
            assert_eq!(planned.len(), 1, "check {round_check}");
            assert!(
                cache.plan_checks(at(now), ids()).is_empty(),
                "one out at a time"
            );
            cache.check_left(&planned[0].id, now);
            assert!(cache.time_out_checks(at(now + timeout / 2)).is_empty());
            now += timeout;
            let verdicts = cache.time_out_checks(at(now));
            match &verdicts[..] {
                [(of, CheckVerdict::ServeAgain(Finding::Missing))] if *of == id => {
                    served_again += 1;
                    let created = cache.get(id).unwrap().invoice.invoice.created_at();
                    assert_eq!(cache.plan_resends(at(now), None), vec![id], "sent again");
                    assert!(
                        cache.plan_resends(at(now + HOUR), None).is_empty(),
                        "once, not resent"
                    );
                    assert!(
                        cache.plan_checks(at(now), ids()).is_empty(),
                        "not checked again before the server confirms it"
                    );
                    let confirmed = cache.invoice_persisted(id, created, at(now));
                    assert!(
                        matches!(confirmed, Confirmation::ServedAgain),
                        "{confirmed:?}"
                    );
                }
                [(of, CheckVerdict::GaveUp(Finding::GaveUp(found)))] if *of == id => {
                    assert_eq!(**found, Finding::Missing);
                    assert_eq!(round_check, REPAIRS_PER_ROUND);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(served_again, REPAIRS_PER_ROUND);
        assert!(
            cache.plan_checks(at(now + DAY - HOUR), ids()).is_empty(),
            "nothing more until the next interval"
        );
        assert_eq!(cache.plan_checks(at(now + DAY), ids()).len(), 1);
        assert_eq!(cache.get(id).unwrap().verified_at, None);
    }

    #[test]
    fn a_served_again_invoice_found_served_is_mended() {
        let (mut cache, id) = serving_again();
        let created = cache.get(id).unwrap().invoice.invoice.created_at();
        cache.invoice_persisted(id, created, at(t0()));
        let verdicts = check_all(&mut cache, t0(), own_invoice);
        assert_eq!(verdicts, vec![(id, CheckVerdict::Verified)]);
        let offer = cache.get(id).unwrap();
        assert_eq!(
            offer.check.finding,
            Some(Finding::Mended(Box::new(Finding::Missing)))
        );
        assert_eq!(offer.verified_at, Some(t0()));
        assert!(!offer.check.asked, "the round is over");
    }

    #[test]
    fn an_older_invoice_is_replaced_and_a_newer_one_of_this_wallet_is_accepted() {
        let (fixture, mut cache, offers) = handed_out(1);
        let offer = &offers[0];
        let older = offer.invoice.invoice.clone();
        let later = t0() + 3 * HOUR;
        let newer = fixture.invoice_for(offer, later);
        assert!(cache.replace_invoice(offer.id(), newer.clone(), later));
        cache.invoice_persisted(offer.id(), newer.invoice.created_at(), at(later));
        cache.ask_checks(at(later));
        let verdicts = check_all(&mut cache, later, |_| Some(older.clone()));
        assert_eq!(
            verdicts,
            vec![(offer.id(), CheckVerdict::ServeAgain(Finding::Older))]
        );
        // Another install of the wallet refreshed it later still: payers get a valid invoice.
        cache.invoice_persisted(offer.id(), newer.invoice.created_at(), at(later));
        let newest = fixture.invoice_for(offer, later + HOUR);
        let verdicts = check_all(&mut cache, later, |_| Some(newest.invoice.clone()));
        assert_eq!(verdicts, vec![(offer.id(), CheckVerdict::Verified)]);
    }

    /// One handed-out offer with a check out, then a newer invoice of it installed an hour
    /// later: the cache, the offer as it was, the check, that hour, and the newer invoice.
    fn checked_then_refreshed() -> (
        OfferCache,
        CachedOffer,
        Vec<PlannedCheck>,
        Duration,
        crate::offers::builder::BuiltInvoice,
    ) {
        let (fixture, mut cache, offers) = handed_out(1);
        let offer = offers[0].clone();
        cache.ask_checks(at(t0()));
        let planned = cache.plan_checks(at(t0()), ids());
        let later = t0() + HOUR;
        let newer = fixture.invoice_for(&offer, later);
        assert!(cache.replace_invoice(offer.id(), newer.clone(), later));
        (cache, offer, planned, later, newer)
    }

    #[test]
    fn an_older_answer_while_a_newer_invoice_is_on_its_way_tells_nothing() {
        let (mut cache, offer, planned, later, _) = checked_then_refreshed();
        let answer = cache.check_answered(&planned[0].id, Some(&offer.invoice.invoice), at(later));
        assert_eq!(answer, Some((offer.id(), CheckVerdict::Inconclusive)));
        assert!(
            cache.plan_checks(at(later), ids()).is_empty(),
            "not before the new invoice is confirmed"
        );
    }

    #[test]
    fn a_slot_holding_another_offers_invoice_breaks_the_offer_for_good() {
        let (_, mut cache, offers) = handed_out(3);
        let (broken, other) = (&offers[0], &offers[1]);
        let label = "alice";
        let mut labelled = cache.get(broken.id()).unwrap().clone();
        labelled.label = Some(label.into());
        *cache.get_mut(broken.id()).unwrap() = labelled;
        cache.ask_checks(at(t0()));
        let overwritten = |offer: &CachedOffer| match offer.id() == broken.id() {
            true => Some(other.invoice.invoice.clone()),
            false => Some(offer.invoice.invoice.clone()),
        };
        let verdicts = check_all(&mut cache, t0(), overwritten);
        // One answer could be a confused server's: checked again first.
        assert!(verdicts.contains(&(broken.id(), CheckVerdict::CheckAgain)));
        assert!(cache.get(broken.id()).unwrap().broken.is_none());
        let again = check_all(&mut cache, t0(), overwritten);
        assert_eq!(
            again,
            vec![(broken.id(), CheckVerdict::Broken(Finding::Overwritten))]
        );
        assert_eq!(
            verdicts
                .iter()
                .filter(|(_, v)| *v == CheckVerdict::Verified)
                .count(),
            2
        );
        let offer = cache.get(broken.id()).unwrap();
        assert!(offer
            .broken
            .as_ref()
            .unwrap()
            .contains("another offer's invoice"));
        // Never sent, refreshed, checked or given to its label again.
        let later = t0() + 10 * DAY;
        assert!(!cache
            .plan_resends(at(later), Some(server_key()))
            .contains(&broken.id()));
        assert!(!cache.maintain(at(later)).rebuild.contains(&broken.id()));
        assert!(!cache.live_offers(later).contains(&broken.id()));
        assert_eq!(cache.ask_checks(at(later)).len(), 2);
        assert!(cache
            .plan_checks(at(later), ids())
            .iter()
            .all(|check| check.offer != broken.id()));
        assert!(
            cache.offer_for(label, later).is_none(),
            "no Ready offer to give instead"
        );
    }

    #[test]
    fn a_check_out_when_the_connection_drops_is_sent_again_on_the_next() {
        let (_, mut cache, offers) = handed_out(1);
        cache.ask_checks(at(t0()));
        let planned = cache.plan_checks(at(t0()), ids());
        cache.check_left(&planned[0].id, t0());
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert!(
            cache.time_out_checks(at(t0() + HOUR)).is_empty(),
            "no verdict"
        );
        assert!(
            cache.plan_checks(at(t0() + HOUR), ids()).is_empty(),
            "not connected"
        );
        let late = cache.check_answered(&planned[0].id, None, at(t0() + HOUR));
        assert_eq!(late, None, "an answer to a forgotten check is ignored");
        cache.set_reachability(server_key(), Reachability::Connected);
        let again = cache.plan_checks(at(t0() + HOUR), ids());
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].offer, offers[0].id());
    }

    /// A reload drops the outboxes: a check planned but not sent is planned again, not left
    /// counted as out (taking its answer's room in the server's buffer) for ever.
    #[test]
    fn a_check_planned_but_not_sent_when_another_client_used_the_dir_is_planned_again() {
        let (_, mut cache, _) = handed_out(2);
        cache.ask_checks(at(t0()));
        let planned = cache.plan_checks(at(t0()), ids());
        assert_eq!(planned.len(), 2);
        cache.check_left(&planned[0].id, t0());
        assert_eq!(cache.checks_out(&server_key()), 2);
        cache.reload(cache.offers().to_vec());
        assert_eq!(
            cache.checks_out(&server_key()),
            1,
            "the one sent is still out"
        );
        let again = cache.plan_checks(at(t0()), ids());
        assert_eq!(
            again.iter().map(|c| c.offer).collect::<Vec<_>>(),
            vec![planned[1].offer]
        );
    }

    /// Another client used the data dir during a repair: the disk has the invoice confirmed,
    /// so it is not sent again, and the check is repeated at once instead.
    #[test]
    fn a_reload_during_a_repair_repeats_the_check_at_once() {
        let (mut cache, id) = serving_again();
        let on_disk = cache
            .offers()
            .iter()
            .map(|offer| {
                let mut stored = offer.clone();
                stored.invoice_confirmed = true;
                stored.check = OfferCheck::default();
                stored.delivery = Default::default();
                stored
            })
            .collect();
        cache.reload(on_disk);
        assert!(cache.plan_resends(at(t0()), Some(server_key())).is_empty());
        let again = cache.plan_checks(at(t0()), ids());
        assert_eq!(again.iter().map(|c| c.offer).collect::<Vec<_>>(), vec![id]);
    }

    /// Each background task is a new process: what a round did is read back from the offer's
    /// record, so a round neither starts over nor loses its count of repairs.
    #[test]
    fn a_new_process_goes_on_with_the_round_its_record_tells_of() {
        let (cache, id) = serving_again();
        let new_process = |cache: &OfferCache| {
            let offers = cache
                .offers()
                .iter()
                .map(|offer| {
                    let record = crate::io::records::encode(offer);
                    crate::io::records::decode(&record, server_key()).unwrap().0
                })
                .collect();
            connected(cache.policy.clone(), offers)
        };
        // Killed before the server confirmed: the next process checks again at once, with one
        // repair counted.
        let mut cache = new_process(&cache);
        let verdicts = check_all(&mut cache, t0() + HOUR, |_| None);
        assert_eq!(
            verdicts,
            vec![(id, CheckVerdict::ServeAgain(Finding::Missing))]
        );
        let mut cache = new_process(&cache);
        let verdicts = check_all(&mut cache, t0() + 2 * HOUR, |_| None);
        assert!(
            matches!(&verdicts[..], [(of, CheckVerdict::GaveUp(_))] if *of == id),
            "{verdicts:?}"
        );
        // The round ended: no process checks it again before the interval is over.
        let mut cache = new_process(&cache);
        assert!(cache
            .plan_checks(at(t0() + 2 * HOUR + DAY / 2), ids())
            .is_empty());
        assert_eq!(cache.plan_checks(at(t0() + 2 * HOUR + DAY), ids()).len(), 1);
    }

    /// After one answer of another offer's invoice, no answer is no evidence either way: the
    /// offer's invoice is not served into what may be another offer's slot.
    #[test]
    fn no_answer_after_another_offers_invoice_serves_nothing() {
        let (_, mut cache, offers) = handed_out(2);
        let (offer, other) = (&offers[0], &offers[1]);
        cache.ask_checks(at(t0()));
        let overwritten = |o: &CachedOffer| match o.id() == offer.id() {
            true => Some(other.invoice.invoice.clone()),
            false => Some(o.invoice.invoice.clone()),
        };
        check_all(&mut cache, t0(), overwritten);
        let verdicts = check_all(&mut cache, t0(), |_| None);
        assert_eq!(
            verdicts,
            vec![(offer.id(), CheckVerdict::GaveUp(Finding::OverwrittenOnce))]
        );
        assert!(cache.plan_resends(at(t0()), Some(server_key())).is_empty());
        assert!(cache.get(offer.id()).unwrap().broken.is_none());
        // The next round's answer of another offer's invoice is the second in a row.
        let verdicts = check_all(&mut cache, t0() + DAY, overwritten);
        assert!(verdicts.contains(&(offer.id(), CheckVerdict::Broken(Finding::Overwritten))));
    }

    /// A refresh went out while a check was out: no answer may only mean the server has not
    /// stored the new invoice yet, so the check is repeated once it is confirmed.
    #[test]
    fn no_answer_for_an_invoice_replaced_meanwhile_tells_nothing() {
        let (mut cache, offer, planned, later, newer) = checked_then_refreshed();
        let answer = cache.check_answered(&planned[0].id, None, at(later));
        assert_eq!(answer, Some((offer.id(), CheckVerdict::Inconclusive)));
        let offer_now = cache.get(offer.id()).unwrap();
        assert!(
            !offer_now.delivery.serving_again && offer_now.check.repairs == 0,
            "nothing served again"
        );
        cache.invoice_persisted(offer.id(), newer.invoice.created_at(), at(later));
        assert_eq!(
            cache.plan_checks(at(later), ids()).len(),
            1,
            "checked again"
        );
    }

    /// An invoice served again is waited for from when it leaves; a connection lost before
    /// its confirmation sends it again on the next, and counts no failed repair meanwhile.
    #[test]
    fn an_invoice_served_again_is_sent_again_after_a_lost_connection() {
        let (mut cache, id) = serving_again();
        let timeout = Duration::from_secs(10);
        let sent = t0() + HOUR;
        assert_eq!(cache.plan_resends(at(sent), None), vec![id]);
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert!(cache.time_out_checks(at(sent + 2 * timeout)).is_empty());
        cache.set_reachability(server_key(), Reachability::Connected);
        let again = sent + 3 * timeout;
        assert_eq!(cache.plan_resends(at(again), None), vec![id]);
        assert!(cache.time_out_checks(at(again + timeout / 2)).is_empty());
        let failed = cache.time_out_checks(at(again + timeout));
        assert_eq!(
            failed,
            vec![(id, CheckVerdict::ServeAgain(Finding::Missing))],
            "a failed repair, the second of the round"
        );
    }

    #[test]
    fn no_more_checks_than_the_window_are_out_to_a_server() {
        let (_, mut cache, _) = handed_out(10);
        cache.ask_checks(at(t0()));
        let first = cache.plan_checks(at(t0()), ids());
        assert_eq!(first.len(), MAX_CHECKS_IN_FLIGHT);
        assert!(cache.plan_checks(at(t0()), ids()).is_empty());
        let offer = cache.get(first[0].offer).unwrap().invoice.invoice.clone();
        cache.check_answered(&first[0].id, Some(&offer), at(t0()));
        assert_eq!(cache.plan_checks(at(t0()), ids()).len(), 1);
    }
}
