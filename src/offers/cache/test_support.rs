//! What the cache's tests share: a policy, a cache connected to its server, times.

use std::time::Duration;

pub(crate) use crate::test_utils::{offer_fixture, pubkey, server_key, OfferFixture};

use super::*;
use crate::clock::Time;

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn policy(target_ready: u16) -> CachePolicy {
    CachePolicy {
        servers: vec![server_key()],
        target_ready,
        ready_max_age: 2 * HOUR,
        pending_max_age: 2 * HOUR,
        invoice_refresh_interval: 2 * HOUR,
        min_paths_lifetime: 90 * DAY,
        first_retry_after: Duration::from_secs(15),
        max_retry_after: Duration::from_secs(900),
        invoice_resend_after: Duration::from_secs(5),
        max_invoice_resend_after: HOUR,
        refresh_failure_margin: HOUR,
        expiring_notice: 14 * DAY,
        expired_retention: 90 * DAY,
        slot_range: 0..=u16::MAX,
        offer_check_interval: DAY,
        check_answer_timeout: Duration::from_secs(10),
    }
}

/// The lowest free slot each time, which keeps the slots of these tests readable.
pub(crate) fn lowest_free() -> SlotSequence {
    SlotSequence::InOrder
}

/// A cache whose only server is connected.
pub(crate) fn connected(policy: CachePolicy, offers: Vec<CachedOffer>) -> OfferCache {
    let mut cache = OfferCache::new(policy, offers, lowest_free());
    cache.set_reachability(server_key(), Reachability::Connected);
    cache
}

pub(crate) fn t0() -> Duration {
    Duration::from_secs(1_800_000_000)
}

/// `wall` by both clocks, as when the wall clock never jumped.
pub(crate) fn at(wall: Duration) -> Time {
    Time {
        wall,
        monotonic: wall,
    }
}

/// Requests `slot`, answers it and confirms the invoice, as the protocol would.
pub(crate) fn fill(cache: &mut OfferCache, fixture: &OfferFixture, now: Duration) -> CachedOffer {
    let planned = cache.plan_requests(at(now));
    let slot = planned
        .first()
        .map(|p| p.slot)
        .unwrap_or_else(|| cache.requested_slots()[0].1);
    let offer = fixture.cached(slot, now, Some(now + 365 * DAY));
    cache
        .check_offer_paths(
            server_key(),
            slot,
            now + HOUR,
            offer.offer.paths(),
            offer.expires_at(),
            now,
        )
        .unwrap();
    cache.insert_pending(offer.clone());
    assert!(matches!(
        cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now)),
        Confirmation::NowReady { .. }
    ));
    cache.get(offer.id()).unwrap().clone()
}
