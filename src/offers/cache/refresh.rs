//! Time's decisions: invoices resent until confirmed, refreshed when due, only ever newer;
//! offers announced before and at expiry, kept for the retention; refresh failures told.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::offers::offer::OfferId;

use super::*;
use crate::clock::Time;
use crate::offers::builder::BuiltInvoice;

/// Why a handed-out offer's invoice is not fresh and confirmed ([`OfferCache::unrefreshed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unrefreshed {
    /// Past the refresh interval; a new one is not built yet.
    Due,
    /// Sent `sends` times (0: not yet), not confirmed yet.
    Unconfirmed { sends: u32 },
    /// Building, writing or keeping it failed, as this says.
    Failed(String),
}

/// Unconfirmed sends of a fresh invoice, to a connected server, before its offer's refresh
/// counts as failed: with the doubling waits, about 35 seconds of silence.
const SENDS_BEFORE_FAILURE: u32 = 4;

/// What a maintenance tick found to do.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Handed-out offers that expired: no longer refreshed or given out, kept for the
    /// retention. Announced once per process.
    pub expired: Vec<CachedOffer>,
    /// Offers removed: unused ones that expired, handed-out ones expired for the retention.
    pub removed: Vec<CachedOffer>,
    /// Pending offers the server never confirmed in time; removed, their slots re-requested.
    pub abandoned: Vec<CachedOffer>,
    /// Handed-out offers whose invoice is getting old and must be rebuilt and sent.
    pub rebuild: Vec<OfferId>,
    /// Handed-out offers about to expire, announced now.
    pub expiring: Vec<CachedOffer>,
    /// Handed-out offers whose last confirmed invoice is older than the refresh interval and
    /// the margin, with why no fresh one was confirmed; announced once until one is.
    pub refresh_failed: Vec<(CachedOffer, String)>,
    /// Offers whose announcements changed (stored with them, so each is made once): to write.
    pub announced: Vec<CachedOffer>,
}

impl OfferCache {
    /// Unconfirmed invoices of live offers to send again to their connected servers, marked
    /// sent now: all of `afresh`'s (a server connected again after a connection that worked,
    /// or for the first time in a run), otherwise those never sent and those unanswered for
    /// the policy's resend interval, doubled for each send already unanswered (capped). A
    /// server that drops every connection unanswered thus gets each invoice at that pace, not
    /// on each connection.
    pub fn plan_resends(&mut self, now: Time, afresh: Option<PublicKey>) -> Vec<OfferId> {
        let policy = &self.policy;
        let reachability = &self.reachability;
        let connected =
            |server: &PublicKey| reachability.get(server) == Some(&Reachability::Connected);
        self.offers
            .iter_mut()
            .filter(|o| connected(&o.server) && !o.is_expired(now.wall))
            // Its slot holds another offer's invoice now, which a send would overwrite.
            .filter(|o| o.broken.is_none())
            .filter(|o| {
                if o.invoice_confirmed {
                    // Served again once after a check, never resent.
                    return o.delivery.serving_again && o.invoice_sent_at.is_none();
                }
                afresh == Some(o.server)
                    || o.invoice_sent_at.is_none_or(|sent| {
                        sent.saturating_add(resend_delay(policy, o.delivery.sends)) <= now.monotonic
                    })
            })
            .map(|o| {
                o.invoice_sent_at = Some(now.monotonic);
                o.delivery.sends = o.delivery.sends.saturating_add(1);
                if o.delivery.serving_again {
                    // Its confirmation is waited for from when it leaves.
                    o.check.served_again_at = Some(now.monotonic);
                }
                o.id()
            })
            .collect()
    }

    /// Why this process failed to get a fresh invoice of `offer` confirmed, if it tried long
    /// enough to say: a server that has not answered several sends of it, one unreachable for
    /// the margin while the client ran, or an invoice that could not be built or written. A
    /// process that has just started (after a night off, say) has not failed yet: its first
    /// sends may well be confirmed.
    pub(super) fn refresh_failure(&self, offer: &CachedOffer, now: Time) -> Option<String> {
        if let Some(problem) = &offer.delivery.problem {
            return Some(problem.clone());
        }
        if !self.is_configured(&offer.server) {
            return Some(format!(
                "server {} is no longer configured: its invoice is not refreshed",
                offer.server
            ));
        }
        match self.reachability(&offer.server) {
            Reachability::Connected
                if !offer.invoice_confirmed && offer.delivery.sends >= SENDS_BEFORE_FAILURE =>
            {
                Some(format!(
                    "server {} has not confirmed the refreshed invoice, sent {} times",
                    offer.server, offer.delivery.sends
                ))
            }
            Reachability::Unreachable
                if self
                    .unreachable_since
                    .get(&offer.server)
                    .is_some_and(|since| {
                        since.saturating_add(self.policy.refresh_failure_margin) <= now.monotonic
                    }) =>
            {
                Some(format!(
                    "server {} has been unreachable for over {} minutes",
                    offer.server,
                    self.policy.refresh_failure_margin.as_secs() / 60
                ))
            }
            _ => None,
        }
    }

    /// Removes unused offers that expired and handed-out ones expired for longer than the
    /// retention, abandons Pending offers unconfirmed for too long, and lists handed-out offers
    /// to announce and those whose invoice must be rebuilt (on configured servers only).
    pub fn maintain(&mut self, now: Time) -> Maintenance {
        let retention = self.policy.expired_retention;
        let (removed, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.offers)
            .into_iter()
            .partition(|o| match o.state {
                OfferState::Used => o
                    .expires_at()
                    .is_some_and(|expiry| expiry.saturating_add(retention) <= now.wall),
                OfferState::Ready | OfferState::Pending => o.is_expired(now.wall),
            });
        let unconfirmed_deadline = self.policy.pending_max_age;
        let (abandoned, live): (Vec<_>, Vec<_>) = live.into_iter().partition(|o| {
            o.state == OfferState::Pending
                && o.pending_since.saturating_add(unconfirmed_deadline) <= now.monotonic
        });
        self.offers = live;
        // Offers loaded from their records get their deadlines on the monotonic clock now,
        // once: from here on a wall clock that jumps either way moves neither.
        let (interval, stale_after) = (self.policy.invoice_refresh_interval, self.stale_after());
        for offer in self.offers.iter_mut() {
            if offer.refresh_due_at.is_none() {
                offer.refresh_due_at = Some(offer.refresh_due(interval, now));
            }
            if offer.stale_at.is_none() {
                offer.stale_at = Some(offer.stale_deadline(stale_after, now));
            }
        }
        let mut maintenance = Maintenance {
            removed,
            abandoned,
            ..Default::default()
        };
        let notice = self.policy.expiring_notice;
        // An offer about to expire is announced once a fresh one can take its place: told
        // before, the app would republish the same offer (`offer_for` has nothing fresher).
        let replacement_ready = self.offers.iter().any(|o| {
            o.state == OfferState::Ready
                && !o.is_expired(now.wall)
                && !o.is_expiring(notice, now.wall)
        });
        for offer in self.offers.iter_mut() {
            // A broken offer was announced as such: nothing more is said of it.
            if offer.state != OfferState::Used || offer.broken.is_some() {
                continue;
            }
            if offer.is_expired(now.wall) {
                if !offer.expired_announced {
                    offer.expired_announced = true;
                    maintenance.expired.push(offer.clone());
                    maintenance.announced.push(offer.clone());
                }
                continue;
            }
            if offer.expired_announced {
                // Live again (the clock was put right): a later expiry is announced anew.
                offer.expired_announced = false;
                offer.expiry_announced = false;
                maintenance.announced.push(offer.clone());
            }
            if offer.is_expiring(notice, now.wall) && !offer.expiry_announced && replacement_ready {
                offer.expiry_announced = true;
                maintenance.expiring.push(offer.clone());
                maintenance.announced.push(offer.clone());
            }
        }
        for offer in self.offers.iter_mut() {
            if offer.invoice_confirmed
                && !offer.delivery.rebuild_under_way
                && offer.state == OfferState::Used
                && offer.broken.is_none()
                && !offer.is_expired(now.wall)
                && self.reachability.contains_key(&offer.server)
                && offer.invoice_due(interval, now)
            {
                offer.delivery.rebuild_under_way = true;
                maintenance.rebuild.push(offer.id());
            }
        }
        let failed: Vec<(usize, String)> = (0..self.offers.len())
            .filter_map(|index| {
                let offer = &self.offers[index];
                let stale = offer.state == OfferState::Used
                    && offer.broken.is_none()
                    && !offer.is_expired(now.wall)
                    && !offer.refresh_failure_announced
                    && offer.stale_deadline(stale_after, now) <= now.monotonic;
                stale
                    .then(|| self.refresh_failure(offer, now))
                    .flatten()
                    .map(|reason| (index, reason))
            })
            .collect();
        for (index, reason) in failed {
            let offer = &mut self.offers[index];
            offer.refresh_failure_announced = true;
            maintenance.refresh_failed.push((offer.clone(), reason));
            maintenance.announced.push(offer.clone());
        }
        maintenance
    }

    /// How old a handed-out offer's last confirmation may get before the app hears its refresh
    /// failed: the refresh interval and the margin.
    pub(super) fn stale_after(&self) -> Duration {
        self.policy
            .invoice_refresh_interval
            .saturating_add(self.policy.refresh_failure_margin)
    }

    /// Notes why refreshing `id`'s invoice failed, for the app's
    /// [`Maintenance::refresh_failed`].
    pub fn refresh_problem(&mut self, id: OfferId, problem: String) {
        if let Some(offer) = self.get_mut(id) {
            offer.delivery.problem = Some(problem);
            offer.delivery.rebuild_under_way = false;
        }
    }

    /// Handed-out live offers of configured servers whose invoice is not fresh and confirmed
    /// at `now`, and why: what a sync waits for.
    pub fn unrefreshed(&self, now: Time) -> Vec<(&CachedOffer, Unrefreshed)> {
        self.handed_out()
            .filter(|o| self.is_configured(&o.server) && !o.is_expired(now.wall))
            .filter(|o| o.broken.is_none())
            .filter_map(|o| {
                let why = if let Some(problem) = &o.delivery.problem {
                    Unrefreshed::Failed(problem.clone())
                } else if !o.invoice_confirmed {
                    Unrefreshed::Unconfirmed {
                        sends: o.delivery.sends,
                    }
                } else if o.invoice_due(self.policy.invoice_refresh_interval, now) {
                    Unrefreshed::Due
                } else {
                    return None;
                };
                Some((o, why))
            })
            .collect()
    }

    /// Takes back the server's confirmation of `id`'s invoice created at `invoice_created_at`,
    /// which could not be written: the invoice is sent again, and the next confirmation
    /// written then. An offer that was Ready by it is Pending again, as the disk knows nothing
    /// of it; one handed out since keeps its state.
    pub fn confirmation_unwritten(
        &mut self,
        id: OfferId,
        invoice_created_at: Duration,
        problem: String,
    ) {
        let Some(offer) = self.get_mut(id) else {
            return;
        };
        if !offer.invoice_confirmed || offer.invoice.invoice.created_at() != invoice_created_at {
            return;
        }
        offer.invoice_confirmed = false;
        offer.delivery.problem = Some(problem);
        if let Some(before) = offer.delivery.confirmed_before.take() {
            offer.invoice_confirmed_at = before.at;
            offer.stale_at = before.stale_at;
            offer.refresh_failure_announced = before.failure_announced;
        }
        if offer.state == OfferState::Ready {
            offer.state = OfferState::Pending;
        }
    }

    /// Live offers of configured servers, in every state: their invoices must all be rebuilt
    /// (channels or fees changed).
    pub fn live_offers(&self, now: Duration) -> Vec<OfferId> {
        self.offers
            .iter()
            .filter(|o| self.is_configured(&o.server) && !o.is_expired(now))
            .filter(|o| o.broken.is_none())
            .map(|o| o.id())
            .collect()
    }

    /// Sets `id`'s invoice back to an older one, confirmed: for benchmarks that repeat one
    /// refresh.
    #[cfg(feature = "testing")]
    pub fn put_back_invoice(&mut self, id: OfferId, invoice: BuiltInvoice) {
        if let Some(offer) = self.get_mut(id) {
            offer.invoice = invoice;
            offer.invoice_confirmed = true;
        }
    }

    /// The creation time for a new invoice of `id` built at `now`: a whole second after both
    /// its current invoice and any invoice begun before for it (`None`: no such offer).
    pub fn reserve_invoice_time(&mut self, id: OfferId, now: Duration) -> Option<Duration> {
        let offer = self.get_mut(id)?;
        let after = offer
            .invoice_time_reserved
            .unwrap_or_default()
            .max(offer.invoice.invoice.created_at());
        let created_at = now.max(Duration::from_secs(after.as_secs() + 1));
        offer.invoice_time_reserved = Some(created_at);
        Some(created_at)
    }

    /// Whether an invoice of `id` created at `created_at` would be newer than its current one,
    /// and may replace it: never for a broken offer, whose slot holds another offer's invoice
    /// that a send would overwrite.
    pub fn is_newer_invoice(&self, id: OfferId, created_at: Duration) -> bool {
        self.get(id).is_some_and(|offer| {
            offer.broken.is_none() && offer.invoice.invoice.created_at() < created_at
        })
    }

    /// Installs a newly built invoice for `id`, sent at `now` (monotonic), unconfirmed until
    /// the server says so; never one older than the current one (a slower build of older
    /// hints). Returns whether it was installed.
    pub fn replace_invoice(&mut self, id: OfferId, invoice: BuiltInvoice, now: Duration) -> bool {
        if !self.is_newer_invoice(id, invoice.invoice.created_at()) {
            return false;
        }
        let interval = self.policy.invoice_refresh_interval;
        if let Some(offer) = self.get_mut(id) {
            offer.invoice = invoice;
            offer.invoice_confirmed = false;
            offer.invoice_sent_at = Some(now);
            offer.refresh_due_at = Some(now.saturating_add(interval));
            offer.delivery.sends = 1;
            offer.delivery.problem = None;
            offer.delivery.rebuild_under_way = false;
            offer.delivery.serving_again = false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_handed_out_offer_is_announced_once_before_it_expires() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let shop = fixture.cached(0, t0() + Duration::from_secs(1), Some(t0() + 100 * DAY));
        let spare = fixture.cached(1, t0(), Some(t0() + 200 * DAY));
        for offer in [&shop, &spare] {
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert_eq!(cache.offer_for("shop", t0()).unwrap().0.id(), shop.id());
        assert!(cache.maintain(at(t0() + 85 * DAY)).expiring.is_empty());
        let announced = cache.maintain(at(t0() + 86 * DAY)).expiring;
        assert_eq!(
            announced.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![shop.id()],
            "the handed-out offer only, not the Ready one"
        );
        assert!(
            cache.maintain(at(t0() + 87 * DAY)).expiring.is_empty(),
            "once"
        );
        // Its label moves on to an offer that lasts, which keeps it from then on.
        let (moved, new) = cache.offer_for("shop", t0() + 86 * DAY).unwrap();
        assert_eq!((moved.id(), new), (spare.id(), Pick::HandedOut));
        assert_eq!(
            cache.offer_for("shop", t0() + 87 * DAY).unwrap().0.id(),
            spare.id()
        );
        assert!(cache.offer_for("cafe", t0() + 87 * DAY).is_none());
    }

    /// No Ready offer (offline, the server down): the expiring offer is not announced, as the
    /// app's `offer_for` could only give it back; it is once a fresh one is Ready. If the app
    /// asks and still gets the old one (the fresh one went elsewhere first), the notice is
    /// owed again.
    #[test]
    fn an_expiring_offer_is_announced_once_a_fresh_one_can_take_its_place() {
        let fixture = offer_fixture();
        let mut shop = fixture.cached(0, t0(), Some(t0() + 100 * DAY));
        shop.state = OfferState::Used;
        shop.label = Some("shop".into());
        shop.invoice_confirmed = true;
        let mut cache = connected(policy(1), vec![shop.clone()]);
        let soon = t0() + 87 * DAY;
        assert!(
            cache.maintain(at(soon)).expiring.is_empty(),
            "nothing to move to"
        );
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (shop.id(), Pick::Unchanged));
        let ready_now = |cache: &mut OfferCache, slot, now: Duration| {
            let offer = fixture.cached(slot, now, Some(now + 365 * DAY));
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now));
            offer
        };
        ready_now(&mut cache, 1, soon);
        let announced = cache.maintain(at(soon)).expiring;
        assert_eq!(
            announced.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![shop.id()]
        );
        // The fresh offer goes to another label before the app asks for "shop".
        cache.offer_for("cafe", soon).unwrap();
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (shop.id(), Pick::NoticeOwed));
        assert!(
            cache.maintain(at(soon)).expiring.is_empty(),
            "nothing to move to"
        );
        let fresh = ready_now(&mut cache, 2, soon);
        assert_eq!(cache.maintain(at(soon)).expiring.len(), 1, "told again");
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (fresh.id(), Pick::HandedOut));
    }

    #[test]
    fn used_offers_keep_fresh_invoices_and_pending_ones_are_resent_until_confirmed() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        assert!(cache.maintain(at(t0() + HOUR)).rebuild.is_empty());
        let due = t0() + 2 * HOUR;
        assert_eq!(cache.maintain(at(due)).rebuild, vec![used.id()]);
        let rebuilt = fixture.invoice_for(&used, due);
        cache.replace_invoice(used.id(), rebuilt.clone(), due);
        let soon = due + Duration::from_secs(1);
        assert!(
            cache.plan_resends(at(soon), None).is_empty(),
            "an answer is still expected"
        );
        assert_eq!(
            cache.plan_resends(at(soon), Some(server_key())),
            vec![used.id()],
            "reconnected"
        );
        for tick in 1..=3 {
            let now = due + Duration::from_secs(60 * tick);
            assert!(cache.maintain(at(now)).rebuild.is_empty());
            assert_eq!(cache.plan_resends(at(now), None), vec![used.id()]);
        }
        assert!(matches!(
            cache.invoice_persisted(used.id(), rebuilt.invoice.created_at(), at(due)),
            Confirmation::Refreshed
        ));
        assert!(cache
            .plan_resends(at(due + HOUR), Some(server_key()))
            .is_empty());
        assert_eq!(
            cache.get(used.id()).unwrap().state,
            OfferState::Used,
            "keeps its slot"
        );
    }

    #[test]
    fn invoices_of_an_offer_only_get_newer_and_a_late_older_confirmation_resends_the_newest() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        let id = used.id();
        let now = t0() + HOUR;
        // Two refreshes begun within one second get distinct, increasing seconds.
        let first = cache.reserve_invoice_time(id, now).unwrap();
        let second = cache.reserve_invoice_time(id, now).unwrap();
        assert_eq!((first, second), (now, now + Duration::from_secs(1)));
        let older = fixture.invoice_for(&used, first);
        let newer = fixture.invoice_for(&used, second);
        // The later one finishes first: the earlier one, slower, never replaces it.
        assert!(cache.replace_invoice(id, newer.clone(), now));
        assert!(!cache.replace_invoice(id, older.clone(), now));
        assert_eq!(cache.get(id).unwrap().invoice.invoice.created_at(), second);
        // After the current invoice was sent, a confirmation of an older one means the server
        // may hold that one last: the current one is unconfirmed again and sent again.
        assert!(matches!(
            cache.invoice_persisted(id, newer.invoice.created_at(), at(now)),
            Confirmation::Refreshed
        ));
        assert!(matches!(
            cache.invoice_persisted(id, older.invoice.created_at(), at(now)),
            Confirmation::Superseded
        ));
        assert!(!cache.get(id).unwrap().invoice_confirmed);
        assert!(
            cache.plan_resends(at(now), None).is_empty(),
            "the caller sends it now: not twice"
        );
        assert!(matches!(
            cache.invoice_persisted(id, newer.invoice.created_at(), at(now)),
            Confirmation::Refreshed
        ));
        // Confirmed, the reservation stays ahead: the next refresh is later still.
        assert_eq!(
            cache.reserve_invoice_time(id, now),
            Some(now + Duration::from_secs(2))
        );
    }

    /// The wall clock a day behind, or a day ahead and then put right: refreshes, resends and
    /// the failure notice come when the monotonic clock says, as with the clock right.
    #[test]
    fn refreshes_resends_and_the_failure_notice_keep_their_schedule_when_the_wall_clock_jumps() {
        let fixture = offer_fixture();
        for skew in ["a day behind", "a day ahead, then put right"] {
            let mut cache = connected(policy(1), vec![]);
            fill(&mut cache, &fixture, t0());
            let used = cache.take(None, t0()).unwrap();
            let id = used.id();
            let wrong = |monotonic: Duration| Time {
                wall: match skew {
                    "a day behind" => monotonic - DAY,
                    _ => monotonic + DAY,
                },
                monotonic,
            };
            assert!(cache.maintain(wrong(t0() + HOUR)).rebuild.is_empty());
            let due = t0() + 2 * HOUR;
            assert_eq!(cache.maintain(wrong(due)).rebuild, vec![id], "{skew}");
            // Stamped as the engine does: the wall clock's time, after the current invoice.
            let created = cache.reserve_invoice_time(id, wrong(due).wall).unwrap();
            assert!(cache.replace_invoice(id, fixture.invoice_for(&used, created), due));
            // From here on, the clock is put right in the second case; the first stays behind.
            let clock = |monotonic: Duration| match skew {
                "a day behind" => wrong(monotonic),
                _ => at(monotonic),
            };
            let mut sends = Vec::new();
            for second in 1..=40 {
                let now = due + Duration::from_secs(second);
                if cache.plan_resends(clock(now), None) == vec![id] {
                    sends.push(second);
                }
            }
            assert_eq!(
                sends,
                vec![5, 15, 35],
                "{skew}: resends back off by the monotonic clock"
            );
            // Never confirmed: the app hears of it once the last confirmation (at t0) is the
            // refresh interval and the margin old by the monotonic clock.
            let heard = |cache: &mut OfferCache, now| cache.maintain(clock(now)).refresh_failed;
            assert!(heard(&mut cache, t0() + 3 * HOUR - Duration::from_secs(1)).is_empty());
            assert_eq!(
                heard(&mut cache, t0() + 3 * HOUR).len(),
                1,
                "{skew}: the failure notice on time"
            );
            // Confirmed now: the next refresh is due two hours after this invoice was made,
            // by the monotonic clock, whatever creation time it carries.
            cache.invoice_persisted(id, created, clock(t0() + 3 * HOUR));
            let next = due + 2 * HOUR;
            assert!(cache
                .maintain(clock(next - Duration::from_secs(1)))
                .rebuild
                .is_empty());
            assert_eq!(cache.maintain(clock(next)).rebuild, vec![id], "{skew}");
        }
    }

    /// After a restart the deadlines are worked out from the records' wall-clock times once:
    /// an invoice made in the future by this clock is due at once.
    #[test]
    fn a_loaded_invoice_made_in_the_future_is_due_at_once() {
        let fixture = offer_fixture();
        let mut offer = fixture.cached(1, t0() + DAY, None);
        offer.state = OfferState::Used;
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(t0() + DAY);
        offer.refresh_due_at = None;
        let id = offer.id();
        let mut cache = connected(policy(1), vec![offer]);
        assert_eq!(cache.maintain(at(t0())).rebuild, vec![id]);
    }

    #[test]
    fn what_a_sync_waits_for_and_a_confirmation_taken_back() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        fill(&mut cache, &fixture, t0());
        assert!(cache.unrefreshed(at(t0() + HOUR)).is_empty(), "fresh");
        let due = t0() + 2 * HOUR;
        assert_eq!(cache.unrefreshed(at(due))[0].1, Unrefreshed::Due);
        let rebuilt = fixture.invoice_for(&used, due);
        cache.replace_invoice(used.id(), rebuilt.clone(), due);
        assert_eq!(
            cache.unrefreshed(at(due))[0].1,
            Unrefreshed::Unconfirmed { sends: 1 }
        );
        cache.invoice_persisted(used.id(), rebuilt.invoice.created_at(), at(due));
        assert!(cache.unrefreshed(at(due)).is_empty(), "confirmed");

        // Taken back: only for the invoice it confirmed, and a handed-out offer stays so.
        cache.confirmation_unwritten(used.id(), used.invoice.invoice.created_at(), "old".into());
        assert!(cache.unrefreshed(at(due)).is_empty(), "another invoice's");
        cache.confirmation_unwritten(used.id(), rebuilt.invoice.created_at(), "full".into());
        assert_eq!(
            cache.unrefreshed(at(due))[0].1,
            Unrefreshed::Failed("full".into())
        );
        // What it says of its last confirmation is the one before, as on disk: the failure
        // notice is not put off by a confirmation the disk never got.
        let taken_back = cache.get(used.id()).unwrap();
        assert_eq!(taken_back.invoice_confirmed_at, used.invoice_confirmed_at);
        assert_eq!(taken_back.stale_at, Some(t0() + 3 * HOUR));
        assert_eq!(cache.get(used.id()).unwrap().state, OfferState::Used);
        let resent = due + Duration::from_secs(5);
        assert_eq!(cache.plan_resends(at(resent), None), vec![used.id()]);

        // A Ready offer is Pending again: the disk knows nothing of it.
        let ready = cache
            .offers()
            .iter()
            .find(|o| o.state == OfferState::Ready)
            .unwrap()
            .clone();
        cache.confirmation_unwritten(
            ready.id(),
            ready.invoice.invoice.created_at(),
            "full".into(),
        );
        assert_eq!(cache.get(ready.id()).unwrap().state, OfferState::Pending);
        assert!(
            cache.take(None, resent).is_none(),
            "nothing Ready to hand out"
        );
    }

    #[test]
    fn an_expired_handed_out_offer_keeps_its_slot_for_the_retention_and_revives_if_the_clock_was_wrong(
    ) {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), Some(t0() + 100 * DAY));
        cache.insert_pending(offer.clone());
        cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        cache.take(Some("bio".into()), t0()).unwrap();
        cache.plan_requests(at(t0()));
        let refill = fixture.cached(1, t0(), Some(t0() + 400 * DAY));
        cache.insert_pending(refill.clone());
        cache.invoice_persisted(refill.id(), refill.invoice.invoice.created_at(), at(t0()));

        // The wall clock jumps 110 days ahead; the monotonic clock moves a minute.
        let wrong = Time {
            wall: t0() + 110 * DAY,
            monotonic: t0() + Duration::from_secs(60),
        };
        let m = cache.maintain(wrong);
        assert_eq!(
            m.expired.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![offer.id()],
            "announced as expired"
        );
        assert!(m.removed.is_empty(), "but not removed");
        assert!(m.rebuild.is_empty(), "nor refreshed");
        assert!(cache.maintain(wrong).expired.is_empty(), "announced once");
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Used);
        assert!(
            cache.offer_for("bio", wrong.wall).unwrap().0.id() != offer.id(),
            "not given out while expired"
        );
        assert!(
            cache
                .plan_requests(at(wrong.wall))
                .iter()
                .all(|p| p.slot != offer.slot),
            "its slot stays its own"
        );

        // The clock is put right: the offer is live again, refreshed and given to its label.
        let right = t0() + 3 * HOUR;
        let m = cache.maintain(at(right));
        assert!(m.removed.is_empty() && m.expired.is_empty());
        assert!(m.rebuild.contains(&offer.id()), "refreshed again");
        assert_eq!(cache.offer_for("bio", right).unwrap().0.id(), offer.id());

        // Expired for good: kept for the 90 days of the retention, then removed, slot free.
        let m = cache.maintain(at(t0() + 189 * DAY));
        assert!(m.removed.is_empty());
        let m = cache.maintain(at(t0() + 190 * DAY));
        assert!(m.removed.iter().any(|o| o.id() == offer.id()));
        assert!(cache.get(offer.id()).is_none());
    }

    #[test]
    fn a_wall_clock_going_back_stalls_neither_retries_nor_resends() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        let start = at(t0());
        assert_eq!(cache.plan_requests(start).len(), 2);
        let pending = fixture.cached(0, t0(), None);
        cache.insert_pending(pending.clone());
        assert_eq!(cache.plan_resends(start, None), vec![pending.id()]);
        // A day back by the wall clock, 20 seconds on by the monotonic one.
        let later = Time {
            wall: t0() - 24 * HOUR,
            monotonic: t0() + Duration::from_secs(20),
        };
        assert_eq!(
            cache.plan_requests(later).len(),
            1,
            "the unanswered request is retried"
        );
        assert_eq!(
            cache.plan_resends(later, None),
            vec![pending.id()],
            "the unconfirmed invoice is resent"
        );
        // Two hours on by the monotonic clock, whatever the wall says: abandoned.
        let much_later = Time {
            wall: t0() - 24 * HOUR,
            monotonic: t0() + 2 * HOUR,
        };
        assert_eq!(cache.maintain(much_later).abandoned.len(), 1);
    }

    #[test]
    fn an_invoice_left_old_by_a_night_off_is_no_failure_until_this_process_has_tried() {
        let fixture = offer_fixture();
        let mut offer = fixture.cached(3, t0(), None);
        offer.state = OfferState::Used;
        offer.handed_out_at = Some(t0());
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(t0());
        let id = offer.id();
        let mut cache = connected(policy(1), vec![offer]);
        // The app was not running for a day: the refresh is due, not failed.
        let morning = t0() + DAY;
        let first = cache.maintain(at(morning));
        assert_eq!(first.rebuild, vec![id]);
        assert!(first.refresh_failed.is_empty());
        // Rebuilt and sent; the server does not answer its sends.
        cache.replace_invoice(
            id,
            fixture.invoice_for(cache.get(id).unwrap(), morning),
            morning,
        );
        let mut now = morning;
        for _ in 0..2 {
            now += 10 * 60 * Duration::from_secs(1);
            assert_eq!(cache.plan_resends(at(now), None), vec![id]);
        }
        assert!(
            cache.maintain(at(now)).refresh_failed.is_empty(),
            "3 sends, 20 minutes"
        );
        now += 10 * 60 * Duration::from_secs(1);
        assert_eq!(cache.plan_resends(at(now), None), vec![id]);
        let failed = cache.maintain(at(now)).refresh_failed;
        assert_eq!(failed.len(), 1);
        assert!(failed[0].1.contains("sent 4 times"), "{}", failed[0].1);
        assert!(
            cache.maintain(at(now + HOUR)).refresh_failed.is_empty(),
            "once"
        );
        // Confirmed: fresh, and a later failure would be told again.
        let created = cache.get(id).unwrap().invoice.invoice.created_at();
        assert!(matches!(
            cache.invoice_persisted(id, created, at(now)),
            Confirmation::Refreshed
        ));
        let offer = cache.get(id).unwrap();
        assert_eq!(offer.invoice_confirmed_at, Some(now));
        assert!(!offer.refresh_failure_announced);
    }
}
