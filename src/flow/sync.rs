//! What a short background window must get done, and how far it got: the fill complete and
//! every handed-out offer's invoice fresh, confirmed and written.

use std::collections::HashSet;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::offers::offer::OfferId;

use super::{count, Engine};
use crate::clock::Time;
use crate::events::{OfferInfo, SyncReport, Unfinished};
use crate::offers::cache::{OfferState, Reachability, Unrefreshed};

/// The handed-out offers' invoices when a sync began, to count the ones it refreshed.
pub(crate) struct SyncBaseline {
    invoices: Vec<(OfferId, Duration)>,
    /// And when each was last verified, to count the checks it got done.
    verified: Vec<(OfferId, Option<Duration>)>,
}

impl Engine {
    /// The handed-out offers' invoices now.
    pub fn sync_baseline(&self) -> SyncBaseline {
        let state = self.lock();
        SyncBaseline {
            invoices: state
                .cache
                .handed_out()
                .map(|offer| (offer.id(), offer.invoice.invoice.created_at()))
                .collect(),
            verified: state
                .cache
                .handed_out()
                .map(|offer| (offer.id(), offer.verified_at))
                .collect(),
        }
    }

    /// What is done and what is left since `baseline`, for a sync `elapsed` old. Only what is
    /// written counts as done.
    pub fn sync_report(&self, baseline: &SyncBaseline, elapsed: Duration) -> SyncReport {
        let now = Time::of(&*self.clock);
        let state = self.lock();
        let unwritten = |id: OfferId| state.confirmations_unwritten.contains(&id);
        let unrefreshed = state.cache.unrefreshed(now);
        // By the id's bytes (`OfferId` has no `Hash`): a wallet may hold a thousand offers.
        let listed: HashSet<[u8; 32]> = unrefreshed.iter().map(|(offer, _)| offer.id().0).collect();
        let mut unfinished: Vec<Unfinished> = unrefreshed
            .into_iter()
            .map(|(offer, why)| Unfinished {
                server_node_id: OfferInfo::node_id_hex(&offer.server),
                offer_id: Some(OfferInfo::offer_id_hex(offer.id())),
                reason: match why {
                    Unrefreshed::Due => "its invoice is due for a refresh".to_string(),
                    Unrefreshed::Unconfirmed { sends: 0 } => {
                        "its refreshed invoice is not sent yet".to_string()
                    }
                    Unrefreshed::Unconfirmed { sends } => {
                        format!("its refreshed invoice is not confirmed yet (sent {sends} times)")
                    }
                    Unrefreshed::Failed(problem) => problem,
                },
            })
            .collect();
        unfinished.extend(
            state
                .refreshes_owed
                .iter()
                .chain(&state.refresh_under_way)
                .filter(|id| !listed.contains(&id.0))
                .filter_map(|id| state.cache.get(*id))
                .map(|offer| Unfinished {
                    server_node_id: OfferInfo::node_id_hex(&offer.server),
                    offer_id: Some(OfferInfo::offer_id_hex(offer.id())),
                    reason: "its invoice is still to be rebuilt with the current channel hints"
                        .to_string(),
                }),
        );
        unfinished.extend(
            state
                .cache
                .handed_out()
                .filter(|offer| unwritten(offer.id()))
                .map(|offer| Unfinished {
                    server_node_id: OfferInfo::node_id_hex(&offer.server),
                    offer_id: Some(OfferInfo::offer_id_hex(offer.id())),
                    reason: "its confirmed invoice is being written".to_string(),
                }),
        );
        // Checks due, after the refreshes (an offer whose invoice is on its way is not checked).
        let listed: HashSet<String> = unfinished
            .iter()
            .filter_map(|u| u.offer_id.clone())
            .collect();
        unfinished.extend(
            super::check::checks_unfinished(&state, now, false)
                .into_iter()
                .filter(|(offer, _)| !listed.contains(&OfferInfo::offer_id_hex(offer.id())))
                .map(|(offer, why)| super::check::unfinished(offer, why)),
        );
        let ready = state.written_ready_count();
        if ready < self.target_ready {
            let offers = state.cache.offers();
            let requested = state.cache.requested_slots();
            let why_short = |server: &PublicKey| {
                let pending = offers
                    .iter()
                    .filter(|o| o.server == *server && o.state == OfferState::Pending)
                    .count();
                let asked = requested.iter().filter(|(of, _)| of == server).count();
                if let Some(problem) = state.problems.get(server) {
                    Some(problem.clone())
                } else if state.cache.reachability(server) != Reachability::Connected {
                    Some("not connected".to_string())
                } else if pending > 0 || asked > 0 {
                    Some(format!(
                        "{asked} offer paths requests unanswered, {pending} invoices unconfirmed"
                    ))
                } else {
                    None
                }
            };
            let mut short: Vec<_> = self
                .servers
                .iter()
                .filter_map(|server| why_short(&server.node_id).map(|why| (server.node_id, why)))
                .collect();
            if short.is_empty() {
                // Between two maintenance ticks: nothing is under way yet.
                short = self
                    .servers
                    .iter()
                    .map(|server| (server.node_id, "nothing requested yet".to_string()))
                    .collect();
            }
            unfinished.extend(short.into_iter().map(|(server, why)| Unfinished {
                server_node_id: OfferInfo::node_id_hex(&server),
                offer_id: None,
                reason: format!("{ready} of {} offers Ready: {why}", self.target_ready),
            }));
        }
        let refreshed = baseline
            .invoices
            .iter()
            .filter(|(id, created_at)| {
                state.cache.get(*id).is_some_and(|offer| {
                    offer.invoice.invoice.created_at() != *created_at
                        && offer.invoice_confirmed
                        && !unwritten(*id)
                })
            })
            .count();
        let verified = baseline
            .verified
            .iter()
            .filter(|(id, before)| {
                state.cache.get(*id).is_some_and(|offer| {
                    offer.verified_at.is_some() && offer.verified_at != *before
                })
            })
            .count();
        SyncReport {
            complete: unfinished.is_empty(),
            ready_offers: count(ready),
            wanted_offers: count(self.target_ready),
            refreshed: count(refreshed),
            verified: count(verified),
            unfinished,
            elapsed,
        }
    }
}
