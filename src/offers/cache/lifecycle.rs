//! An offer from its paths to its hand-out: paths checked, the offer Pending until its
//! server confirms it, then Ready, then handed out (Used), by `take` or to a label by
//! `offer_for`; Ready offers beyond the target or too old make way.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::offer::OfferId;

use super::*;
use crate::clock::Time;

/// Why an `OfferPaths` message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OfferPathsRejection {
    ReplyPathExpired,
    SlotNotRequested,
    NoPaths,
    /// More than [`MAX_OFFER_PATHS`]: an offer that long is no use in a QR code, and its
    /// invoice would outgrow what servers store.
    TooManyPaths {
        count: usize,
    },
    /// The paths last `lifetime` from now, less than the `required` minimum.
    ExpiresTooSoon {
        lifetime: Duration,
        required: Duration,
    },
    DuplicatePaths,
}

impl std::fmt::Display for OfferPathsRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReplyPathExpired => write!(
                f,
                "ReplyPathExpired: the answer came over a reply path that has expired"
            ),
            Self::SlotNotRequested => write!(
                f,
                "SlotNotRequested: no request for that slot is outstanding, nor one lost with a connection while an offer is missing (a late or repeated answer)"
            ),
            Self::NoPaths => write!(f, "NoPaths: the answer holds no offer path"),
            Self::TooManyPaths { count } => write!(
                f,
                "TooManyPaths: {count} offer paths, more than the {MAX_OFFER_PATHS} an offer can carry"
            ),
            Self::ExpiresTooSoon { lifetime, required } => write!(
                f,
                "ExpiresTooSoon: the offer paths expire in {}, sooner than the {} min_offer_paths_lifetime requires",
                human(*lifetime),
                human(*required)
            ),
            Self::DuplicatePaths => write!(
                f,
                "DuplicatePaths: the paths are another offer's"
            ),
        }
    }
}

/// `duration` in the largest whole unit that fits: "90 days", "10 minutes".
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (count, unit) = match secs {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// The most offer paths accepted from a server; LDK's servers hand out at most three.
pub(crate) const MAX_OFFER_PATHS: usize = 8;

/// What a `StaticInvoicePersisted` confirmation did.
#[derive(Debug)]
pub(crate) enum Confirmation {
    /// A Pending offer became Ready; `replaced` Ready offers were dropped in its favour.
    NowReady { replaced: Vec<CachedOffer> },
    /// A refreshed invoice of a Ready or Used offer was confirmed.
    Refreshed,
    /// The invoice a check served again was confirmed (the same invoice as before): its check
    /// is repeated now.
    ServedAgain,
    /// An older invoice of the offer was confirmed after its current one was installed (sent,
    /// or waiting for that answer): the server may have stored the older one last. The current
    /// one is unconfirmed, to send (again) now.
    Superseded,
    /// Unknown offer, stale invoice, or a duplicate: nothing changed.
    Ignored,
}

/// What [`OfferCache::offer_for`] did to the offer it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Nothing: the label's offer, as before.
    Unchanged,
    /// A Ready offer, handed out now: to write before it is returned.
    HandedOut,
    /// The label's offer about to expire, for want of a fresh one: its expiry is to be
    /// announced again once one can take its place (to write; not worth failing the call for).
    NoticeOwed,
}

impl OfferCache {
    /// Whether a Ready offer is to be replaced: older than the policy allows, or about to
    /// expire (a replacement made now lasts at least `min_paths_lifetime`, longer than the
    /// notice, so it is fresh: what an expiring handed-out offer needs to be announced).
    pub(super) fn is_stale_ready(&self, offer: &CachedOffer, now: Duration) -> bool {
        offer.created_at.saturating_add(self.policy.ready_max_age) <= now
            || offer.is_expiring(self.policy.expiring_notice, now)
    }

    /// Checks an `OfferPaths` reply from `server` before any offer is built from it.
    pub fn check_offer_paths(
        &self,
        server: PublicKey,
        slot: u16,
        reply_path_expiry: Duration,
        paths: &[BlindedMessagePath],
        paths_expiry: Option<Duration>,
        now: Duration,
    ) -> Result<(), OfferPathsRejection> {
        if reply_path_expiry < now {
            return Err(OfferPathsRejection::ReplyPathExpired);
        }
        if !self.requests.contains_key(&(server, slot))
            && !self.takes_late_answer(&server, slot, now)
        {
            return Err(OfferPathsRejection::SlotNotRequested);
        }
        if paths.is_empty() {
            return Err(OfferPathsRejection::NoPaths);
        }
        if paths.len() > MAX_OFFER_PATHS {
            return Err(OfferPathsRejection::TooManyPaths { count: paths.len() });
        }
        if let Some(expiry) = paths_expiry {
            let required = now.saturating_add(self.policy.min_paths_lifetime);
            if expiry < required {
                return Err(OfferPathsRejection::ExpiresTooSoon {
                    lifetime: expiry.saturating_sub(now),
                    required: self.policy.min_paths_lifetime,
                });
            }
        }
        if self.offers.iter().any(|o| o.offer.paths() == paths) {
            return Err(OfferPathsRejection::DuplicatePaths);
        }
        Ok(())
    }

    /// Takes `offers` as they are on disk now, keeping what this process knew of those it
    /// already had (when their invoices were sent, how that went, their checks). Pending offers and
    /// outstanding or lost requests are dropped: they were this process's alone.
    pub fn reload(&mut self, offers: Vec<CachedOffer>) {
        let known = std::mem::take(&mut self.offers);
        self.requests.clear();
        self.lost_slots.clear();
        self.offers = offers
            .into_iter()
            .map(|mut offer| {
                if let Some(old) = known.iter().find(|old| {
                    old.id() == offer.id()
                        && old.invoice.invoice.created_at() == offer.invoice.invoice.created_at()
                }) {
                    offer.invoice_sent_at = old.invoice_sent_at;
                    offer.refresh_due_at = old.refresh_due_at;
                    if old.invoice_confirmed_at == offer.invoice_confirmed_at {
                        offer.stale_at = old.stale_at;
                    }
                    // Not a rebuild under way: its job was dropped if the dir was not ours.
                    offer.delivery = Delivery {
                        rebuild_under_way: false,
                        ..old.delivery.clone()
                    };
                    // The disk's count of repairs if another process went further.
                    let repairs = offer.check_repairs.max(old.check.repairs);
                    offer.check = old.check.clone();
                    offer.check.repairs = repairs;
                    offer.check_repairs = repairs;
                    // A check planned but not sent: its message went with the outboxes, and it
                    // would count as out for ever. Planned again when due.
                    if offer
                        .check
                        .out
                        .as_ref()
                        .is_some_and(|out| out.left_at.is_none())
                    {
                        offer.check.out = None;
                    }
                    if offer.invoice_confirmed {
                        // The disk has it confirmed: an invoice being served again after a
                        // check is no longer sent, so the check is repeated now instead.
                        offer.delivery.serving_again = false;
                        if std::mem::take(&mut offer.check.recheck_on_confirmation) {
                            offer.check.asked = true;
                        }
                    }
                }
                offer
            })
            .collect();
    }

    /// Records a freshly built offer whose invoice is about to be sent; ends its slot's request.
    pub fn insert_pending(&mut self, mut offer: CachedOffer) {
        self.requests.remove(&(offer.server, offer.slot));
        self.lost_slots.remove(&(offer.server, offer.slot));
        self.lost_requests.remove(&offer.server);
        offer.refresh_due_at = Some(
            offer
                .pending_since
                .saturating_add(self.policy.invoice_refresh_interval),
        );
        self.offers.push(offer);
    }

    /// Applies a `StaticInvoicePersisted` for the invoice of `id` created at `invoice_created_at`.
    pub fn invoice_persisted(
        &mut self,
        id: OfferId,
        invoice_created_at: Duration,
        now: Time,
    ) -> Confirmation {
        let stale_after = self.stale_after();
        let Some(offer) = self.get_mut(id) else {
            return Confirmation::Ignored;
        };
        let current = offer.invoice.invoice.created_at();
        if invoice_created_at < current && offer.invoice_sent_at.is_some() {
            // The caller sends the current one now, so it is not sent twice. Its count of
            // sends stays: it may only have waited in the outbox for this very answer, and
            // counting a send that never left would bring the failure notice forward.
            offer.invoice_confirmed = false;
            offer.invoice_sent_at = Some(now.monotonic);
            return Confirmation::Superseded;
        }
        // (A new invoice installed meanwhile ended the serving again: `replace_invoice`.)
        if offer.delivery.serving_again
            && offer.invoice_confirmed
            && offer.state != OfferState::Pending
            && current == invoice_created_at
        {
            // The invoice served again after a check (or a suspected lost store), confirmed:
            // the same invoice, so no refresh; the check, if one waits, goes now.
            offer.delivery.serving_again = false;
            offer.check.served_again_at = None;
            offer.invoice_confirmed_at = Some(now.wall);
            offer.stale_at = Some(now.monotonic.saturating_add(stale_after));
            if std::mem::take(&mut offer.check.recheck_on_confirmation) {
                offer.check.asked = true;
            }
            return Confirmation::ServedAgain;
        }
        offer.delivery.serving_again = false;
        if offer.invoice_confirmed || current != invoice_created_at {
            return Confirmation::Ignored;
        }
        let before = ConfirmedBefore {
            at: offer.invoice_confirmed_at,
            stale_at: offer.stale_at,
            failure_announced: offer.refresh_failure_announced,
        };
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(now.wall);
        offer.stale_at = Some(now.monotonic.saturating_add(stale_after));
        offer.delivery = Delivery {
            confirmed_before: Some(before),
            ..Delivery::default()
        };
        offer.refresh_failure_announced = false;
        if std::mem::take(&mut offer.check.recheck_on_confirmation) {
            offer.check.asked = true;
        }
        if offer.state != OfferState::Pending {
            return Confirmation::Refreshed;
        }
        offer.state = OfferState::Ready;
        Confirmation::NowReady {
            replaced: self.drop_excess_ready(Some(id), now.wall),
        }
    }

    /// Keeps at most `target` Ready offers, dropping those of unreachable servers first, then
    /// stale ones, then the oldest; never `keep`.
    pub(super) fn drop_excess_ready(
        &mut self,
        keep: Option<OfferId>,
        now: Duration,
    ) -> Vec<CachedOffer> {
        let mut dropped = Vec::new();
        loop {
            let ready = self
                .offers
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count();
            if ready <= self.policy.target_ready as usize {
                return dropped;
            }
            let victim = self
                .offers
                .iter()
                .enumerate()
                .filter(|(_, o)| o.state == OfferState::Ready && Some(o.id()) != keep)
                .min_by_key(|(_, o)| {
                    (
                        self.reachability(&o.server) != Reachability::Unreachable,
                        !self.is_stale_ready(o, now),
                        o.created_at,
                    )
                })
                .map(|(index, _)| index);
            match victim {
                Some(index) => dropped.push(self.offers.remove(index)),
                None => return dropped,
            }
        }
    }

    /// Marks a live Ready offer as Used with `label` and returns it: the newest of a server
    /// that can be reached, else the newest of any.
    pub fn take(&mut self, label: Option<String>, now: Duration) -> Option<CachedOffer> {
        self.take_where(label, now, |_| true)
    }

    /// [`Self::take`] among the Ready offers that `eligible` accepts.
    pub(super) fn take_where(
        &mut self,
        label: Option<String>,
        now: Duration,
        eligible: impl Fn(&CachedOffer) -> bool,
    ) -> Option<CachedOffer> {
        let index = self
            .offers
            .iter()
            .enumerate()
            .filter(|(_, o)| o.state == OfferState::Ready && !o.is_expired(now) && eligible(o))
            .max_by_key(|(_, o)| (self.reachability(&o.server), o.created_at))
            .map(|(index, _)| index)?;
        let offer = &mut self.offers[index];
        offer.state = OfferState::Used;
        offer.label = label;
        offer.handed_out_at = Some(now);
        Some(offer.clone())
    }

    /// The live offer first handed out under `label` that is not about to expire; else the
    /// newest Ready offer, handed out under `label` now, one not about to expire itself if the
    /// label has offers already; else, of the label's offers about to expire, the one that
    /// lasts longest, which still works until then, with its expiry to be announced again
    /// once a fresh offer can take its place (the app asked for a replacement and got none).
    /// So the answer is the same at every call until a fresher offer can take over: never a
    /// new hand-out per call.
    pub fn offer_for(&mut self, label: &str, now: Duration) -> Option<(CachedOffer, Pick)> {
        let (expiring, lasting): (Vec<&CachedOffer>, Vec<&CachedOffer>) = self
            .offers
            .iter()
            .filter(|o| o.state == OfferState::Used && !o.is_expired(now))
            // A broken offer's label gets a fresh one.
            .filter(|o| o.broken.is_none())
            .filter(|o| o.label.as_deref() == Some(label))
            .partition(|o| o.is_expiring(self.policy.expiring_notice, now));
        if let Some(offer) = lasting
            .into_iter()
            .min_by_key(|o| (o.handed_out_at, o.slot))
        {
            return Some((offer.clone(), Pick::Unchanged));
        }
        let last_resort = expiring
            .into_iter()
            .max_by_key(|o| (o.expires_at(), o.handed_out_at))
            .map(|o| o.id());
        let label_has_offers = last_resort.is_some();
        let notice = self.policy.expiring_notice;
        if let Some(fresh) = self.take_where(Some(label.to_string()), now, |ready| {
            // A replacement about to expire itself would be replaced at the next call.
            !label_has_offers || !ready.is_expiring(notice, now)
        }) {
            return Some((fresh, Pick::HandedOut));
        }
        let offer = self.get_mut(last_resort?)?;
        let pick = match std::mem::take(&mut offer.expiry_announced) {
            true => Pick::NoticeOwed,
            false => Pick::Unchanged,
        };
        Some((offer.clone(), pick))
    }

    /// Reverts [`Self::take`] when marking the offer Used could not be persisted.
    pub fn untake(&mut self, id: OfferId) {
        if let Some(offer) = self.get_mut(id) {
            offer.state = OfferState::Ready;
            offer.label = None;
            offer.handed_out_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn offer_paths_are_checked_before_anything_is_built() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let candidate = fixture.cached(0, t0(), Some(t0() + 365 * DAY));
        let paths = candidate.offer.paths().to_vec();
        let now = t0();
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now - Duration::from_secs(1),
                &paths,
                None,
                now
            ),
            Err(OfferPathsRejection::ReplyPathExpired)
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 7, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::SlotNotRequested),
            "a slot neither requested nor lost with a connection"
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &[], None, now),
            Err(OfferPathsRejection::NoPaths)
        );
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &vec![paths[0].clone(); MAX_OFFER_PATHS + 1],
                None,
                now
            ),
            Err(OfferPathsRejection::TooManyPaths {
                count: MAX_OFFER_PATHS + 1
            })
        );
        assert!(matches!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &paths,
                Some(now + 89 * DAY),
                now
            ),
            Err(OfferPathsRejection::ExpiresTooSoon { .. })
        ));
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &paths,
                Some(now + 90 * DAY),
                now
            ),
            Ok(())
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &paths, None, now),
            Ok(()),
            "paths without expiry are accepted"
        );
        cache.insert_pending(candidate);
        assert_eq!(
            cache.check_offer_paths(server_key(), 1, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::DuplicatePaths)
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::SlotNotRequested),
            "a late duplicate reply for a filled slot"
        );
    }

    /// `OfferPaths` for `slot` of `server` over a live reply path, as the cache checks them.
    fn answer(
        cache: &OfferCache,
        fixture: &OfferFixture,
        server: PublicKey,
        slot: u16,
    ) -> Result<(), OfferPathsRejection> {
        let now = t0();
        let paths = fixture.cached(slot, now, None).offer.paths().to_vec();
        cache.check_offer_paths(server, slot, now + HOUR, &paths, None, now)
    }

    #[test]
    fn an_answer_to_a_request_lost_with_a_connection_fills_its_slot_while_an_offer_is_missing() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        let now = t0();
        let lost: Vec<u16> = cache
            .plan_requests(at(now))
            .iter()
            .map(|r| r.slot)
            .collect();
        assert_eq!(lost, [0, 1]);
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert_eq!(
            answer(&cache, &fixture, server_key(), 5),
            Err(OfferPathsRejection::SlotNotRequested),
            "a free slot this cache never asked for (another install's, on the same seed)"
        );
        // The server's answers come with its `init`, before the client hears it is connected.
        assert_eq!(answer(&cache, &fixture, server_key(), 0), Ok(()));
        cache.insert_pending(fixture.cached(0, now, None));
        assert_eq!(
            answer(&cache, &fixture, server_key(), 0),
            Err(OfferPathsRejection::SlotNotRequested),
            "a slot an offer holds"
        );
        cache.set_reachability(server_key(), Reachability::Connected);
        assert_eq!(answer(&cache, &fixture, server_key(), 1), Ok(()));
        cache.insert_pending(fixture.cached(1, now, None));
        assert!(cache.plan_requests(at(now)).is_empty(), "the target is met");
    }

    #[test]
    fn a_reload_forgets_the_slots_lost_with_a_connection() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert_eq!(answer(&cache, &fixture, server_key(), 0), Ok(()));
        // Another client used the data dir meanwhile, and may have asked for that slot.
        cache.reload(Vec::new());
        assert_eq!(
            answer(&cache, &fixture, server_key(), 0),
            Err(OfferPathsRejection::SlotNotRequested)
        );
    }

    #[test]
    fn a_late_answer_is_refused_once_requests_to_other_servers_cover_the_missing_offers() {
        let fixture = offer_fixture();
        let other = pubkey(7);
        let mut policy = policy(2);
        policy.servers.push(other);
        let mut cache = connected(policy, vec![]);
        cache.set_reachability(other, Reachability::Connected);
        let now = t0();
        let planned = cache.plan_requests(at(now));
        assert_eq!(planned.len(), 2, "one request per server");
        let lost = planned
            .iter()
            .find(|r| r.server == server_key())
            .unwrap()
            .slot;
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert_eq!(
            cache.plan_requests(at(now)).len(),
            1,
            "the other server takes the lost share"
        );
        assert_eq!(
            answer(&cache, &fixture, server_key(), lost),
            Err(OfferPathsRejection::SlotNotRequested)
        );
        // A stop forgets the lost slots: what was asked before it starts afresh.
        cache.set_reachability(server_key(), Reachability::Connecting);
        cache.set_reachability(other, Reachability::Connecting);
        assert_eq!(
            answer(&cache, &fixture, server_key(), lost),
            Err(OfferPathsRejection::SlotNotRequested)
        );
    }

    #[test]
    fn confirmations_are_matched_by_offer_id_and_applied_once() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), None);
        let created = offer.invoice.invoice.created_at();
        cache.insert_pending(offer.clone());
        let stranger = fixture.cached(5, t0(), None);
        assert!(matches!(
            cache.invoice_persisted(stranger.id(), created, at(t0())),
            Confirmation::Ignored
        ));
        assert!(
            matches!(
                cache.invoice_persisted(offer.id(), created + Duration::from_secs(1), at(t0())),
                Confirmation::Ignored
            ),
            "confirmation of another invoice"
        );
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Pending);
        assert!(matches!(
            cache.invoice_persisted(offer.id(), created, at(t0())),
            Confirmation::NowReady { .. }
        ));
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Ready);
        assert!(
            matches!(
                cache.invoice_persisted(offer.id(), created, at(t0())),
                Confirmation::Ignored
            ),
            "duplicate"
        );
    }

    #[test]
    fn take_hands_out_each_ready_offer_once_and_refills_with_a_new_slot() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        let first = fill(&mut cache, &fixture, t0());
        let second = fill(&mut cache, &fixture, t0() + Duration::from_secs(1));
        let taken = cache
            .take(Some("shop".into()), t0() + Duration::from_secs(2))
            .unwrap();
        assert_eq!(taken.id(), second.id(), "newest first");
        assert_eq!(taken.state, OfferState::Used);
        assert_eq!(taken.label.as_deref(), Some("shop"));
        assert_eq!(cache.take(None, t0()).unwrap().id(), first.id());
        assert!(cache.take(None, t0()).is_none(), "nothing Ready is left");
        let refill: Vec<u16> = cache
            .plan_requests(at(t0()))
            .iter()
            .map(|p| p.slot)
            .collect();
        assert_eq!(
            refill,
            vec![2, 3],
            "used slots are never reused while their offers live"
        );
    }

    #[test]
    fn each_label_keeps_its_offer_and_no_offer_serves_two_labels() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(4), vec![]);
        for i in 0..4 {
            fill(&mut cache, &fixture, t0() + Duration::from_secs(i));
        }
        let now = t0() + HOUR;
        let (alice, new) = cache.offer_for("alice", now).unwrap();
        assert_eq!(new, Pick::HandedOut);
        assert_eq!(cache.offer_for("alice", now).unwrap().0.id(), alice.id());
        assert_eq!(
            cache.offer_for("alice", now).unwrap().1,
            Pick::Unchanged,
            "nothing new handed out"
        );
        let (bob, _) = cache.offer_for("bob", now).unwrap();
        assert_ne!(bob.id(), alice.id());
        // A later take_offer under the same label does not move the label's offer.
        let taken = cache.take(Some("alice".into()), now + HOUR).unwrap();
        assert!(taken.id() != alice.id() && taken.id() != bob.id());
        assert_eq!(
            cache.offer_for("alice", now + HOUR).unwrap().0.id(),
            alice.id()
        );
        let last = cache.take(None, now).unwrap();
        assert!([alice.id(), bob.id(), taken.id()]
            .iter()
            .all(|&id| id != last.id()));
        assert!(
            cache.offer_for("carol", now).is_none(),
            "nothing Ready left"
        );
        assert_eq!(cache.offer_for("bob", now).unwrap().0.id(), bob.id());
    }

    #[test]
    fn a_label_whose_offer_expired_gets_a_new_one() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let long = fixture.cached(0, t0(), Some(t0() + 365 * DAY));
        // Newer, so handed out first.
        let short = fixture.cached(1, t0() + Duration::from_secs(1), Some(t0() + 30 * DAY));
        for offer in [&long, &short] {
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert_eq!(cache.offer_for("shop", t0()).unwrap().0.id(), short.id());
        assert_eq!(
            cache.offer_for("shop", t0() + 15 * DAY).unwrap().0.id(),
            short.id()
        );
        let (renewed, new) = cache.offer_for("shop", t0() + 30 * DAY).unwrap();
        assert_eq!((renewed.id(), new), (long.id(), Pick::HandedOut));
    }

    #[test]
    fn stale_ready_offers_are_replaced_by_fresh_ones() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        let old = fill(&mut cache, &fixture, t0());
        assert!(cache.plan_requests(at(t0() + HOUR)).is_empty());
        let later = t0() + 2 * HOUR;
        let planned = cache.plan_requests(at(later));
        assert_eq!(
            planned,
            vec![PlannedRequest {
                server: server_key(),
                slot: 1,
                attempt: 1
            }]
        );
        assert_eq!(
            cache.take(None, later).map(|o| o.id()),
            Some(old.id()),
            "still usable until replaced"
        );
        cache.untake(old.id());
        let new = fixture.cached(1, later, None);
        cache.insert_pending(new.clone());
        match cache.invoice_persisted(new.id(), new.invoice.invoice.created_at(), at(later)) {
            Confirmation::NowReady { replaced } => assert_eq!(
                replaced.iter().map(|o| o.id()).collect::<Vec<_>>(),
                vec![old.id()]
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(cache.offers().len(), 1);
    }

    #[test]
    fn pending_offers_never_confirmed_are_abandoned_and_re_requested() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), None);
        cache.insert_pending(offer.clone());
        assert_eq!(cache.plan_resends(at(t0() + HOUR), None), vec![offer.id()]);
        let m = cache.maintain(at(t0() + 2 * HOUR));
        assert_eq!(m.abandoned.len(), 1);
        assert_eq!(cache.plan_requests(at(t0() + 2 * HOUR)).len(), 1);
    }

    #[test]
    fn offer_for_stays_on_one_offer_when_every_ready_one_is_about_to_expire_too() {
        let fixture = offer_fixture();
        // Every offer, handed out or Ready, expires in 10 days: within the 14-day notice.
        let expiry = t0() + 10 * DAY;
        let mut shop = fixture.cached(1, t0(), Some(expiry));
        shop.state = OfferState::Used;
        shop.label = Some("shop".into());
        shop.handed_out_at = Some(t0());
        let mut ready: Vec<CachedOffer> = (2..5)
            .map(|slot| fixture.cached(slot, t0(), Some(expiry + Duration::from_secs(60))))
            .collect();
        for offer in &mut ready {
            offer.state = OfferState::Ready;
        }
        let mut offers = vec![shop.clone()];
        offers.extend(ready);
        let mut cache = connected(policy(3), offers);
        for _ in 0..3 {
            let (given, new) = cache.offer_for("shop", t0()).unwrap();
            assert_eq!(
                (given.id(), new),
                (shop.id(), Pick::Unchanged),
                "no new hand-out per call"
            );
        }
        assert_eq!(cache.handed_out().count(), 1);
        // A label of its own still gets one of them: better than none.
        let (first, new) = cache.offer_for("cafe", t0()).unwrap();
        assert_eq!(new, Pick::HandedOut);
        assert_eq!(cache.offer_for("cafe", t0()).unwrap().0.id(), first.id());
    }
}
