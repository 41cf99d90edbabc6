//! Each server's slots and the requests that fill them: which servers are reachable, each one's
//! share of the target, the slot a new offer gets, and requests retried with backoff.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::{Hash, HashEngine};
use lightning::bitcoin::secp256k1::PublicKey;

use super::*;
use crate::clock::Time;

/// The order in which an install tries slots: for each server, a sequence of candidates, of
/// which a new offer gets the first that no live offer or outstanding request holds.
#[derive(Clone, Debug)]
pub(crate) enum SlotSequence {
    /// The range's slots in order: the lowest free slot (tests, fuzzing).
    InOrder,
    /// Slots spread uniformly over the range by a key of this install's: another install
    /// cannot predict them, and this one keeps coming back to the same few, so that however
    /// many offers it replaces over the years it only ever touches about as many slots as it
    /// holds offers at once.
    Keyed([u8; 32]),
}

impl SlotSequence {
    /// The `index`th candidate slot of `server` in `range`.
    fn candidate(&self, server: &PublicKey, index: u32, range: &RangeInclusive<u16>) -> u16 {
        let size = u32::from(*range.end() - *range.start()) + 1;
        let offset = match self {
            SlotSequence::InOrder => index % size,
            SlotSequence::Keyed(key) => {
                let mut engine = Sha256::engine();
                engine.input(key);
                engine.input(&server.serialize());
                engine.input(&index.to_be_bytes());
                let hash = Sha256::from_engine(engine).to_byte_array();
                // The bias of reducing 64 bits to at most 2^16 values is below 2^-47.
                (u64::from_be_bytes(hash[..8].try_into().expect("8 of 32 bytes")) % u64::from(size))
                    as u32
            }
        };
        *range.start() + offset as u16
    }
}

#[derive(Clone, Debug)]
pub(super) struct SlotRequest {
    attempts: u32,
    retry_at: Duration,
}

/// An `OfferPathsRequest` to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlannedRequest {
    pub server: PublicKey,
    pub slot: u16,
    pub attempt: u32,
}

impl OfferCache {
    /// The slots whose `OfferPathsRequest` is under way.
    pub fn requested_slots(&self) -> Vec<(PublicKey, u16)> {
        self.requests.keys().copied().collect()
    }

    /// How reachable `server` is; servers no longer configured never are.
    pub fn reachability(&self, server: &PublicKey) -> Reachability {
        self.reachability
            .get(server)
            .copied()
            .unwrap_or(Reachability::Unreachable)
    }

    /// Records whether `server` can be talked to. Leaving `Connected` forgets its outstanding
    /// requests: their replies could not reach us, and their share goes to other servers
    /// until it is back; lost with the connection (`Unreachable`), their backoff is kept for
    /// the server's next requests and their slots for answers the server sends on its next
    /// connection, while a stop (`Connecting`) starts afresh. Unknown servers are ignored.
    pub fn set_reachability(&mut self, server: PublicKey, reachability: Reachability) {
        let Some(current) = self.reachability.get_mut(&server) else {
            return;
        };
        *current = reachability;
        if reachability != Reachability::Unreachable {
            self.unreachable_since.remove(&server);
        }
        if reachability == Reachability::Connected {
            return;
        }
        self.forget_checks_of(&server);
        let mut lost = self.lost_requests.remove(&server);
        let mut lost_slots = Vec::new();
        self.requests.retain(|(of, slot), request| {
            if *of != server {
                return true;
            }
            let kept = lost.get_or_insert_with(|| request.clone());
            kept.attempts = kept.attempts.max(request.attempts);
            kept.retry_at = kept.retry_at.max(request.retry_at);
            lost_slots.push((server, *slot));
            false
        });
        if reachability == Reachability::Unreachable {
            self.lost_slots.extend(lost_slots);
            if let Some(lost) = lost {
                self.lost_requests.insert(server, lost);
            }
        } else {
            self.lost_slots.retain(|(of, _)| *of != server);
        }
    }

    /// `server` is connected again after a connection that worked (it answered, or stayed up
    /// a while): the requests lost with it are asked again at once, as first attempts.
    pub fn forget_lost_requests(&mut self, server: &PublicKey) {
        self.lost_requests.remove(server);
    }

    /// Notes that `server`, unreachable, was found so at `now` (monotonic); the first note of a
    /// spell counts.
    pub fn note_unreachable(&mut self, server: PublicKey, now: Duration) {
        if self.reachability(&server) == Reachability::Unreachable {
            self.unreachable_since.entry(server).or_insert(now);
        }
    }

    pub(super) fn is_connected(&self, server: &PublicKey) -> bool {
        self.reachability(server) == Reachability::Connected
    }

    /// Fresh Ready, Pending and requested offers of `server`: what it contributes to the target.
    pub(super) fn underway(&self, server: &PublicKey, now: Duration) -> usize {
        let offers = self
            .offers
            .iter()
            .filter(|o| o.server == *server)
            .filter(|o| match o.state {
                OfferState::Ready => !self.is_stale_ready(o, now) && !o.is_expired(now),
                OfferState::Pending => true,
                OfferState::Used => false,
            })
            .count();
        offers + self.requests.keys().filter(|(of, _)| of == server).count()
    }

    /// How many offers the target lacks beyond those Ready, Pending and requested on
    /// `answering` and the servers not known to be unreachable (`now`: the wall clock).
    fn offers_missing(&self, answering: &PublicKey, now: Duration) -> usize {
        let underway: usize = self
            .policy
            .servers
            .iter()
            .filter(|server| {
                *server == answering || self.reachability(server) != Reachability::Unreachable
            })
            .map(|server| self.underway(server, now))
            .sum();
        usize::from(self.policy.target_ready).saturating_sub(underway)
    }

    /// Whether an answer for `slot` of `server`, which has no request outstanding, is still
    /// of use: an answer to a request lost with the server's connection, which the server
    /// sent on its next one (often with its `init`, before the client hears it is
    /// connected). It is while no offer holds the slot and an offer is missing. Only slots
    /// this cache asked for count: another install on the same seed makes reply paths we
    /// can read too, and its answers are for its own slots.
    pub(super) fn takes_late_answer(&self, server: &PublicKey, slot: u16, now: Duration) -> bool {
        self.lost_slots.contains(&(*server, slot))
            && self.offers_missing(server, now) > 0
            // Filling a slot forgets it as lost; checked still, as no slot may get two offers.
            && !self
                .offers
                .iter()
                .any(|offer| offer.slot == slot && offer.server == *server)
    }

    /// The `OfferPathsRequest`s to send now: retries that are due, then a new slot for each
    /// missing offer, on the connected server furthest below its share. Never two requests
    /// per slot.
    pub fn plan_requests(&mut self, now: Time) -> Vec<PlannedRequest> {
        let mut planned = Vec::new();
        let policy = self.policy.clone();
        for ((server, slot), request) in self.requests.iter_mut() {
            if request.retry_at <= now.monotonic {
                request.attempts += 1;
                request.retry_at = now.monotonic + retry_delay(&policy, request.attempts);
                planned.push(PlannedRequest {
                    server: *server,
                    slot: *slot,
                    attempt: request.attempts,
                });
            }
        }
        // Servers not known to be unreachable share the target; a connecting one's share waits
        // for it, an unreachable one's is spread over the others.
        let live: Vec<PublicKey> = policy
            .servers
            .iter()
            .filter(|server| self.reachability(server) != Reachability::Unreachable)
            .copied()
            .collect();
        if live.is_empty() {
            return planned;
        }
        let target = policy.target_ready as usize;
        let mut load: Vec<(PublicKey, usize, usize)> = live
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let share = target / live.len() + usize::from(index < target % live.len());
                (*server, share, self.underway(server, now.wall))
            })
            .collect();
        let mut missing = target.saturating_sub(load.iter().map(|(_, _, n)| n).sum());
        // Each server's held slots, gathered once: planning many offers stays linear.
        // Candidates before the last one taken stay held while planning, so each server's
        // walk resumes there.
        let mut held: HashMap<PublicKey, (HashSet<u16>, u32)> = HashMap::new();
        // A server whose last requests were lost with a connection waits out their backoff.
        let lost = std::mem::take(&mut self.lost_requests);
        let attempt_of = |server: &PublicKey| lost.get(server).map_or(1, |lost| lost.attempts + 1);
        let may_ask = |server: &PublicKey| {
            lost.get(server)
                .is_none_or(|lost| lost.retry_at <= now.monotonic)
        };
        while missing > 0 {
            let Some((server, _, underway)) = load
                .iter_mut()
                .filter(|(server, share, underway)| {
                    underway < share && self.is_connected(server) && may_ask(server)
                })
                .max_by_key(|(_, share, underway)| *share - *underway)
            else {
                break;
            };
            let (held, next_candidate) = held
                .entry(*server)
                .or_insert_with(|| (self.held_slots(server), 0));
            let Some(slot) = self.free_slot(server, held, next_candidate) else {
                break;
            };
            held.insert(slot);
            *underway += 1;
            missing -= 1;
            let attempts = attempt_of(server);
            self.lost_slots.remove(&(*server, slot));
            self.requests.insert(
                (*server, slot),
                SlotRequest {
                    attempts,
                    retry_at: now.monotonic + retry_delay(&policy, attempts),
                },
            );
            planned.push(PlannedRequest {
                server: *server,
                slot,
                attempt: attempts,
            });
        }
        // Kept for the servers that were not asked: their requests now carry the rest.
        self.lost_requests = lost
            .into_iter()
            .filter(|(server, _)| !planned.iter().any(|request| request.server == *server))
            .collect();
        planned
    }

    /// The slots of `server` that a live offer or an outstanding request holds.
    pub(super) fn held_slots(&self, server: &PublicKey) -> HashSet<u16> {
        self.offers
            .iter()
            .filter(|o| o.server == *server)
            .map(|o| o.slot)
            .chain(
                self.requests
                    .keys()
                    .filter(|(of, _)| of == server)
                    .map(|(_, slot)| *slot),
            )
            .collect()
    }

    /// The first candidate slot of `server` in its sequence, from the `next_candidate`th on,
    /// that is not `held` (`next_candidate` is left after it); where the range is nearly full,
    /// the first free one after the last candidate tried.
    pub(super) fn free_slot(
        &self,
        server: &PublicKey,
        held: &HashSet<u16>,
        next_candidate: &mut u32,
    ) -> Option<u16> {
        let range = &self.policy.slot_range;
        // Each held slot hides at most one candidate (two candidates rarely fall on one slot).
        let tries = u32::try_from(held.len())
            .unwrap_or(u32::MAX)
            .saturating_add(32);
        let mut slot = *range.start();
        while *next_candidate < tries {
            slot = self.slot_sequence.candidate(server, *next_candidate, range);
            *next_candidate += 1;
            if !held.contains(&slot) {
                return Some(slot);
            }
        }
        (slot..=*range.end())
            .chain(*range.start()..slot)
            .find(|slot| !held.contains(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn keyed(key: u8) -> OfferCache {
        let mut cache = OfferCache::new(policy(10), vec![], SlotSequence::Keyed([key; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        cache
    }

    fn slots_of(planned: &[PlannedRequest]) -> std::collections::HashSet<u16> {
        planned.iter().map(|p| p.slot).collect()
    }

    #[test]
    fn each_install_has_slots_of_its_own_spread_over_the_range() {
        let first = slots_of(&keyed(1).plan_requests(at(t0())));
        let reinstalled = slots_of(&keyed(2).plan_requests(at(t0())));
        assert_eq!((first.len(), reinstalled.len()), (10, 10), "distinct");
        assert!(
            first.is_disjoint(&reinstalled),
            "another install's key, other slots: {first:?} {reinstalled:?}"
        );
        assert!(
            first.iter().any(|&s| s > 32_768) && first.iter().any(|&s| s < 32_768),
            "spread over the whole range: {first:?}"
        );
        assert!(
            first.is_disjoint(&(0..10).collect()),
            "not where the lowest free slots would be: {first:?}"
        );
        assert_eq!(
            slots_of(&keyed(1).plan_requests(at(t0()))),
            first,
            "the same install comes back to the same slots"
        );
    }

    #[test]
    fn an_install_replacing_offers_for_ever_touches_only_as_many_slots_as_it_holds() {
        let fixture = offer_fixture();
        let mut cache = OfferCache::new(policy(2), vec![], SlotSequence::Keyed([3; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        let mut touched = std::collections::HashSet::new();
        let mut now = t0();
        let used = {
            let offer = fill(&mut cache, &fixture, now);
            touched.insert(offer.slot);
            cache.take(Some("bio".into()), now).unwrap()
        };
        // A month of Ready offers going stale every two hours and being replaced.
        for _ in 0..(30 * 12) {
            now += 2 * HOUR;
            for planned in cache.plan_requests(at(now)) {
                let offer = fixture.cached(planned.slot, now, None);
                touched.insert(planned.slot);
                cache.insert_pending(offer.clone());
                cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now));
            }
        }
        assert_eq!(cache.get(used.id()).unwrap().slot, used.slot, "kept");
        assert!(
            touched.len() <= 5,
            "1 handed out, 2 Ready and their 2 replacements, yet {} slots: {touched:?}",
            touched.len()
        );
    }

    #[test]
    fn slots_stay_in_the_configured_range_and_a_full_range_requests_no_more() {
        let fixture = offer_fixture();
        let mut policy = policy(6);
        policy.slot_range = 100..=104;
        let mut used = fixture.cached(102, t0(), None);
        used.state = OfferState::Used;
        let mut cache = OfferCache::new(policy, vec![used], SlotSequence::Keyed([5; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        let mut slots: Vec<u16> = cache
            .plan_requests(at(t0()))
            .iter()
            .map(|p| p.slot)
            .collect();
        slots.sort();
        assert_eq!(slots, vec![100, 101, 103, 104], "the range holds four more");
        assert!(cache.plan_requests(at(t0())).is_empty());
    }

    #[test]
    fn every_missing_slot_is_requested_at_once_and_only_once() {
        let mut cache = connected(policy(10), vec![]);
        let planned = cache.plan_requests(at(t0()));
        let slots: Vec<u16> = planned.iter().map(|p| p.slot).collect();
        assert_eq!(slots, (0..10).collect::<Vec<_>>());
        assert!(
            cache.plan_requests(at(t0())).is_empty(),
            "no second request per slot in flight"
        );
        assert!(cache
            .plan_requests(at(t0() + Duration::from_secs(14)))
            .is_empty());
    }

    #[test]
    fn unanswered_requests_are_retried_with_backoff_kept_across_reconnections() {
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let retry = cache.plan_requests(at(t0() + Duration::from_secs(15)));
        assert_eq!(
            retry,
            vec![
                PlannedRequest {
                    server: server_key(),
                    slot: 0,
                    attempt: 2
                },
                PlannedRequest {
                    server: server_key(),
                    slot: 1,
                    attempt: 2
                }
            ]
        );
        assert!(
            cache
                .plan_requests(at(t0() + Duration::from_secs(44)))
                .is_empty(),
            "second retry waits 30 s"
        );
        assert_eq!(
            cache
                .plan_requests(at(t0() + Duration::from_secs(45)))
                .len(),
            2
        );
        // Backoff is capped.
        let mut later = t0();
        for _ in 0..20 {
            later += Duration::from_secs(900);
            assert_eq!(cache.plan_requests(at(later)).len(), 2);
        }
        // Disconnected: the requests are forgotten, nothing is planned. Connected again at
        // once, nothing either: the lost requests' backoff (15 min by now) holds across the
        // reconnection, so a server that drops every connection is not asked anew on each.
        let next_attempt = 24; // after 23 attempts
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert!(cache.requested_slots().is_empty());
        assert!(cache.plan_requests(at(later + HOUR)).is_empty());
        cache.set_reachability(server_key(), Reachability::Connected);
        assert!(cache
            .plan_requests(at(later + Duration::from_secs(1)))
            .is_empty());
        // Past it, every missing slot is requested, counting on from the lost attempts.
        let reconnect = cache.plan_requests(at(later + HOUR));
        assert_eq!(
            reconnect
                .iter()
                .map(|p| (p.slot, p.attempt))
                .collect::<Vec<_>>(),
            vec![(0, next_attempt), (1, next_attempt)]
        );
        // After a stop, a start asks at once, as first attempts; so does a reconnection
        // after a connection that worked.
        let later = later + HOUR;
        for afresh in [
            |cache: &mut OfferCache| cache.set_reachability(server_key(), Reachability::Connecting),
            |cache: &mut OfferCache| cache.forget_lost_requests(&server_key()),
        ] {
            cache.set_reachability(server_key(), Reachability::Unreachable);
            afresh(&mut cache);
            cache.set_reachability(server_key(), Reachability::Connected);
            let asked = cache.plan_requests(at(later));
            assert_eq!(
                asked.iter().map(|p| p.attempt).collect::<Vec<_>>(),
                vec![1, 1]
            );
        }
    }

    fn two_servers(target_ready: u16) -> (OfferCache, PublicKey, PublicKey) {
        let (a, b) = (server_key(), pubkey(10));
        let mut policy = policy(target_ready);
        policy.servers = vec![a, b];
        (OfferCache::new(policy, vec![], lowest_free()), a, b)
    }

    fn planned_per_server(planned: &[PlannedRequest], server: PublicKey) -> Vec<u16> {
        planned
            .iter()
            .filter(|p| p.server == server)
            .map(|p| p.slot)
            .collect()
    }

    #[test]
    fn each_server_fills_its_share_with_slots_of_its_own() {
        let (mut cache, a, b) = two_servers(5);
        cache.set_reachability(a, Reachability::Connected);
        let first = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&first, a),
            vec![0, 1, 2],
            "the first server's share; the second's waits while it connects"
        );
        cache.set_reachability(b, Reachability::Connected);
        let second = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&second, b),
            vec![0, 1],
            "slots per server"
        );
        assert!(planned_per_server(&second, a).is_empty());
        assert!(cache.plan_requests(at(t0())).is_empty());
    }

    #[test]
    fn an_unreachable_servers_share_goes_to_the_others_and_its_offers_stay_its_own() {
        let fixture = offer_fixture();
        let (mut cache, a, b) = two_servers(4);
        cache.set_reachability(a, Reachability::Connected);
        cache.set_reachability(b, Reachability::Connected);
        cache.plan_requests(at(t0()));
        // One offer of b's is Ready, then b goes away before the rest are answered.
        let on_b = fixture.cached_on(b, 0, t0(), None);
        cache.insert_pending(on_b.clone());
        cache.invoice_persisted(on_b.id(), on_b.invoice.invoice.created_at(), at(t0()));
        cache.set_reachability(b, Reachability::Unreachable);
        let planned = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&planned, a),
            vec![2, 3],
            "a takes over b's share"
        );
        assert!(planned_per_server(&planned, b).is_empty());
        // a's offers are handed out before b's, newer or not.
        let mut on_a = Vec::new();
        for slot in 0..3 {
            let offer = fixture.cached_on(a, slot, t0() - HOUR, None);
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
            on_a.push(offer.id());
        }
        let taken = cache.take(None, t0()).unwrap();
        assert_eq!((taken.server, on_a.contains(&taken.id())), (a, true));
        // Refilled on a; once a alone has the target Ready, b's spare offer makes way.
        assert_eq!(
            planned_per_server(&cache.plan_requests(at(t0())), a),
            vec![4]
        );
        for slot in [3, 4] {
            let offer = fixture.cached_on(a, slot, t0(), None);
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert!(cache.get(on_b.id()).is_none());
        assert_eq!(
            cache
                .offers()
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count(),
            4
        );
        // A handed-out offer of b's stays with b: its resends wait for b.
        let mut used_on_b = fixture.cached_on(b, 1, t0(), None);
        used_on_b.state = OfferState::Used;
        cache.offers.push(used_on_b.clone());
        assert!(cache.plan_resends(at(t0() + HOUR), None).is_empty());
        cache.set_reachability(b, Reachability::Connected);
        assert_eq!(
            cache.plan_resends(at(t0() + HOUR), Some(b)),
            vec![used_on_b.id()]
        );
    }
}
