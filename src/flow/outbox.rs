//! What leaves for each server, and when: the outbox of messages we start, the send budget
//! (at most `max_messages_per_minute` a minute), and the window of answers the server owes,
//! sized by the bytes it must buffer for them, that keeps LDK's 256 KiB per-peer buffer from
//! overflowing.

use std::collections::VecDeque;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, OffersContext,
};
use lightning::offers::offer::OfferId;
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, OfferPaths, OfferPathsRequest, ServeStaticInvoice,
};
use lightning::onion_message::messenger::{Destination, MessageSendInstructions, Responder};
use lightning::onion_message::offers::OffersMessage;
use lightning::util::ser::Writeable;

use super::{Engine, State, OFFER_PATHS_REPLY_PATH_LIFETIME};
use crate::clock::Time;
use crate::offers::cache::{CachedOffer, Reachability};

/// A message we start, for one server: sent over `destination` (one of the server's paths, or
/// for a check one of the offer's, which lead to it), with a reply path of ours carrying
/// `reply_context`.
pub(crate) struct Outgoing {
    pub message: Message,
    pub destination: BlindedMessagePath,
    pub reply_context: MessageContext,
}

/// The messages the client starts: the protocol's, and the invoice requests of its checks.
/// Both are large, and moved only a few times on their way out.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    AsyncPayments(AsyncPaymentsMessage),
    Offers(OffersMessage),
}

/// Which of its handlers a messenger of the app's takes a message from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    AsyncPayments,
    Offers,
}

impl Message {
    fn kind(&self) -> MessageKind {
        match self {
            Self::AsyncPayments(_) => MessageKind::AsyncPayments,
            Self::Offers(_) => MessageKind::Offers,
        }
    }
}

impl Outgoing {
    /// How LDK's messenger is to send it.
    pub(crate) fn instructions(&self) -> MessageSendInstructions {
        MessageSendInstructions::WithReplyPath {
            destination: Destination::BlindedPath(self.destination.clone()),
            context: self.reply_context.clone(),
        }
    }

    /// The id of the check it asks for, if it is a check's invoice request.
    pub(crate) fn check_id(&self) -> Option<[u8; 32]> {
        match (&self.message, &self.reply_context) {
            (
                Message::Offers(OffersMessage::InvoiceRequest(_)),
                MessageContext::Offers(OffersContext::OutboundPayment { payment_id, .. }),
            ) => Some(payment_id.0),
            _ => None,
        }
    }
}

pub(crate) type Outbox = Vec<Outgoing>;

/// The most bytes of answers a server may owe us at once: the 256 KiB LDK's messenger buffers
/// per peer (dropping what does not fit), less room for its pongs and other small messages.
const OWED_ANSWER_BYTES: usize = 248 * 1024;
/// An answer in a small onion message: 1,300 bytes of hop data and the message around it.
const SMALL_ANSWER_BYTES: usize = 1_400;
/// An answer in a large one (32 KiB of hop data).
const LARGE_ANSWER_BYTES: usize = 32_900;
/// What a check's answers may take: the invoice, in a large onion, twice with the Client
/// target (forwarded to us, and the server's own).
const CHECK_ANSWER_BYTES: usize = 2 * LARGE_ANSWER_BYTES;
/// An `OfferPaths` whose content and the server's reply path (for our invoice) take more than
/// this many bytes goes in a large onion: what LDK's small one holds (1,300), less what the
/// hop of our own one-hop reply path adds.
const SMALL_OFFER_PATHS_BYTES: usize = 1_000;
/// Until a server's first `OfferPaths` shows how large its answers are, at most this many
/// requests go unanswered even where small answers are expected: enough for a fill of 20 in
/// one turn, and a bound on what is owed if they come large after all.
const REQUESTS_BEFORE_ANSWER_SIZE_KNOWN: usize = 20;
// With every check out, one large answer more still fits: requests never wait for ever.
const _: () = assert!(
    crate::offers::cache::MAX_CHECKS_IN_FLIGHT * CHECK_ANSWER_BYTES + LARGE_ANSWER_BYTES
        <= OWED_ANSWER_BYTES
);
/// Of the invoices a messenger of the app's sends for us, at most this many unanswered: each is
/// a 32 KiB onion in that messenger's own 256 KiB buffer for the server, beside the checks'.
const INVOICES_VIA_MESSENGER: usize = 3;

/// How many bytes the onion of `message`, with the server's reply path in `responder`, takes:
/// LDK sizes the onion by the whole final payload, the reply path included (padded to four
/// hops by LDK's router, it alone takes about 700 bytes).
pub(super) fn offer_paths_answer_bytes(
    message: &OfferPaths,
    responder: Option<&Responder>,
) -> usize {
    let content = message.serialized_length() + responder.map_or(0, Writeable::serialized_length);
    match content > SMALL_OFFER_PATHS_BYTES {
        true => LARGE_ANSWER_BYTES,
        false => SMALL_ANSWER_BYTES,
    }
}

/// Messages waiting for one server, what that server may still be sent this minute, and what
/// it has not answered yet.
pub(super) struct Link {
    outbox: Outbox,
    budget: SendBudget,
    /// `OfferPathsRequest`s by slot, each with the size of the answer it waits for.
    requests_in_flight: InFlight<u16>,
    /// `ServeStaticInvoice`s by offer and invoice creation time (answered in small onions).
    /// An answer ends only its own invoice's entry: a late one of an older invoice does not
    /// let a third one go.
    invoices_in_flight: InFlight<(OfferId, Duration)>,
    /// How large this server's `OfferPaths` are (the largest so far), once one arrived.
    offer_paths_answer_bytes: Option<usize>,
    /// How large they are taken to be until then: large if the paths the server gave us are
    /// padded, as LDK's router pads every path it makes (and puts up to three in an
    /// `OfferPaths`); small if they are one hop, as the reference server's.
    expected_answer_bytes: usize,
}

impl Link {
    pub(super) fn new(max_messages_per_minute: u32, server_paths: &[BlindedMessagePath]) -> Self {
        let padded = server_paths
            .iter()
            .any(|path| path.blinded_hops().len() > 1);
        Self {
            outbox: Vec::new(),
            budget: SendBudget::new(max_messages_per_minute),
            requests_in_flight: InFlight::default(),
            invoices_in_flight: InFlight::default(),
            offer_paths_answer_bytes: None,
            expected_answer_bytes: match padded {
                true => LARGE_ANSWER_BYTES,
                false => SMALL_ANSWER_BYTES,
            },
        }
    }

    /// Whether one more answer of `bytes` fits in what the server may owe us, beside the
    /// answers to `checks_out` checks.
    fn owes_room_for(&mut self, bytes: usize, checks_out: usize, now: Duration) -> bool {
        let owed = self.requests_in_flight.bytes(now)
            + self.invoices_in_flight.bytes(now)
            + checks_out * CHECK_ANSWER_BYTES;
        owed + bytes <= OWED_ANSWER_BYTES
    }

    /// The request for `slot` was answered in an onion of `answer_bytes`: the size of this
    /// server's answers is known (the largest so far counts, for the requests still out too).
    fn request_answered_with(&mut self, slot: u16, answer_bytes: usize) {
        self.requests_in_flight.answered(&slot);
        let known = self
            .offer_paths_answer_bytes
            .map_or(answer_bytes, |known| known.max(answer_bytes));
        self.offer_paths_answer_bytes = Some(known);
        self.requests_in_flight.at_least(known);
    }

    /// What the answer to one more `OfferPathsRequest` takes: through a messenger of the
    /// app's, whose router pads our reply paths, a large onion whatever the content.
    fn request_answer_bytes(&self, via_messenger: bool) -> usize {
        match via_messenger {
            true => LARGE_ANSWER_BYTES,
            false => self
                .offer_paths_answer_bytes
                .unwrap_or(self.expected_answer_bytes),
        }
    }

    /// Whether one more `OfferPathsRequest` may leave now.
    fn request_may_leave(&mut self, checks_out: usize, via_messenger: bool, now: Duration) -> bool {
        let bytes = self.request_answer_bytes(via_messenger);
        self.owes_room_for(bytes, checks_out, now)
            && (self.offer_paths_answer_bytes.is_some()
                || self.requests_in_flight.count(now) < REQUESTS_BEFORE_ANSWER_SIZE_KNOWN)
    }

    /// `OfferPathsRequest` for `slot` left now, owed an answer of the size expected.
    fn request_sent(&mut self, slot: u16, via_messenger: bool, now: Duration) {
        let answer_bytes = self.request_answer_bytes(via_messenger);
        self.requests_in_flight.sent(slot, now, answer_bytes);
    }

    /// Whether one more `ServeStaticInvoice` may leave now (its answer is small).
    fn invoice_may_leave(&mut self, checks_out: usize, via_messenger: bool, now: Duration) -> bool {
        self.owes_room_for(SMALL_ANSWER_BYTES, checks_out, now)
            && (!via_messenger || self.invoices_in_flight.count(now) < INVOICES_VIA_MESSENGER)
    }

    /// Drops the invoices of `offer` waiting here: it is broken, and a send would overwrite
    /// another offer's invoice.
    pub(super) fn drop_invoices_of(&mut self, offer: OfferId) {
        self.outbox.retain(|queued| {
            !matches!(&queued.message, Message::AsyncPayments(AsyncPaymentsMessage::ServeStaticInvoice(m)) if m.invoice.offer_id() == offer)
        });
    }

    /// Queues `outgoing`, to leave as the budget allows.
    pub(super) fn queue(&mut self, outgoing: Outgoing) {
        self.outbox.push(outgoing);
    }

    /// Drops what waits and what is in flight: the server is gone, or another client filled
    /// its slots meanwhile. What is still due is planned afresh from the cache.
    pub(super) fn forget(&mut self) {
        self.outbox.clear();
        self.requests_in_flight.clear();
        self.invoices_in_flight.clear();
    }
}

/// Messages of one kind sent to a server and not answered yet, each with the bytes its answer
/// takes in the server's buffer for us. LDK's messenger buffers at most 256 KiB for a peer and
/// silently drops what does not fit; the answers owed are kept under [`OWED_ANSWER_BYTES`] as
/// far as their sizes are known or rightly expected. An answer ends one; one unanswered for
/// [`Self::TIMEOUT`] no longer counts (its retry is the cache's job).
struct InFlight<K> {
    sent: VecDeque<(K, Duration, usize)>,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        Self {
            sent: VecDeque::new(),
        }
    }
}

impl<K: PartialEq> InFlight<K> {
    const TIMEOUT: Duration = Duration::from_secs(5);

    fn expire(&mut self, now: Duration) {
        while self
            .sent
            .front()
            .is_some_and(|(_, at, _)| *at + Self::TIMEOUT <= now)
        {
            self.sent.pop_front();
        }
    }

    /// The bytes of the answers owed as of `now`.
    fn bytes(&mut self, now: Duration) -> usize {
        self.expire(now);
        self.sent.iter().map(|(_, _, bytes)| bytes).sum()
    }

    /// How many are owed as of `now`.
    fn count(&mut self, now: Duration) -> usize {
        self.expire(now);
        self.sent.len()
    }

    fn sent(&mut self, key: K, now: Duration, answer_bytes: usize) {
        self.sent.push_back((key, now, answer_bytes));
    }

    /// Counts each answer owed as at least `bytes`.
    fn at_least(&mut self, bytes: usize) {
        for (_, _, owed) in self.sent.iter_mut() {
            *owed = (*owed).max(bytes);
        }
    }

    /// Whether a key `matches` accepts is sent and not answered yet (nor timed out, as of the
    /// last [`Self::expire`]).
    fn any(&self, matches: impl Fn(&K) -> bool) -> bool {
        self.sent.iter().any(|(sent, _, _)| matches(sent))
    }

    /// How long until the oldest entry times out (`None`: none is in flight).
    fn next_timeout(&self, now: Duration) -> Option<Duration> {
        self.sent
            .front()
            .map(|(_, at, _)| (*at + Self::TIMEOUT).saturating_sub(now))
    }

    fn answered(&mut self, key: &K) {
        self.sent.retain(|(sent, _, _)| sent != key);
    }

    fn clear(&mut self) {
        self.sent.clear();
    }
}

/// The offer's current invoice, to its server's reply path.
pub(super) fn serve_message(offer: &CachedOffer) -> Outgoing {
    let message = ServeStaticInvoice {
        invoice: offer.invoice.invoice.clone(),
        forward_invoice_request_path: offer.invoice.forward_invoice_request_path.clone(),
    };
    let reply_context =
        MessageContext::AsyncPayments(AsyncPaymentsContext::StaticInvoicePersisted {
            offer_id: offer.id(),
            invoice_created_at: offer.invoice.invoice.created_at(),
        });
    Outgoing {
        message: Message::AsyncPayments(AsyncPaymentsMessage::ServeStaticInvoice(message)),
        destination: offer.server_path.clone(),
        reply_context,
    }
}

/// The messages sent in the last minute: whatever the server sends or the app asks for, the
/// server never gets more than `per_minute` messages from us in any minute.
#[derive(Debug)]
struct SendBudget {
    per_minute: usize,
    /// When each message of the last minute left, oldest first.
    sent_at: VecDeque<Duration>,
}

impl SendBudget {
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(per_minute: u32) -> Self {
        let per_minute = (per_minute as usize).max(1);
        Self {
            per_minute,
            // Grown as used: a budget of u32::MAX means "no limit", not 32 GiB up front.
            sent_at: VecDeque::with_capacity(per_minute.min(256)),
        }
    }

    fn forget_before(&mut self, now: Duration) {
        while self
            .sent_at
            .front()
            .is_some_and(|&sent| sent + Self::WINDOW <= now)
        {
            self.sent_at.pop_front();
        }
    }

    fn try_spend(&mut self, now: Duration) -> bool {
        self.forget_before(now);
        if self.sent_at.len() >= self.per_minute {
            return false;
        }
        self.sent_at.push_back(now);
        true
    }

    /// How long until one more message may leave (zero: now).
    fn wait(&mut self, now: Duration) -> Duration {
        self.forget_before(now);
        match self.sent_at.front() {
            Some(&oldest) if self.sent_at.len() >= self.per_minute => {
                (oldest + Self::WINDOW).saturating_sub(now)
            }
            _ => Duration::ZERO,
        }
    }
}

impl Engine {
    /// How long until messages for `server` that are held back can leave (`None`: none are):
    /// by the send budget, or by answers owed, which an answer ends early (and wakes the
    /// flush) or a timeout ends then.
    pub fn deferred_release_in(&self, server: &PublicKey) -> Option<Duration> {
        let now = self.clock.monotonic();
        let mut state = self.lock();
        let link = state.links.get_mut(server)?;
        if link.outbox.is_empty() {
            return None;
        }
        let budget = link.budget.wait(now);
        if !budget.is_zero() {
            return Some(budget);
        }
        link.invoices_in_flight.expire(now);
        link.requests_in_flight.expire(now);
        [
            link.invoices_in_flight.next_timeout(now),
            link.requests_in_flight.next_timeout(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Queues the `OfferPathsRequest`s the cache plans, each to its server.
    pub(super) fn queue_offer_paths_requests(&self, state: &mut State) {
        let now = Time::of(&*self.clock);
        for request in state.cache.plan_requests(now) {
            let (Some(server), Some(link)) = (
                self.servers.iter().find(|s| s.node_id == request.server),
                state.links.get_mut(&request.server),
            ) else {
                continue;
            };
            // Rotate through the server's paths on retries, in case one is broken.
            let path = &server.paths[request.attempt as usize % server.paths.len()];
            let context = MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPaths {
                invoice_slot: request.slot,
                path_absolute_expiry: now.wall + OFFER_PATHS_REPLY_PATH_LIFETIME,
            });
            log::debug!(
                "requesting offer paths for slot {} of server {} (attempt {})",
                request.slot,
                request.server,
                request.attempt
            );
            link.outbox.push(Outgoing {
                message: Message::AsyncPayments(AsyncPaymentsMessage::OfferPathsRequest(
                    OfferPathsRequest {
                        invoice_slot: request.slot,
                    },
                )),
                destination: path.clone(),
                reply_context: context,
            });
        }
    }

    pub(super) fn queue_resends(&self, state: &mut State, now: Time, afresh: Option<PublicKey>) {
        for id in state.cache.plan_resends(now, afresh) {
            self.queue_invoice(state, id);
        }
    }

    /// Queues the offer's current invoice to its slot on its server, if that server is
    /// connected (on connection, every unconfirmed invoice is sent again).
    pub(super) fn queue_invoice(&self, state: &mut State, id: OfferId) {
        let Some(offer) = state.cache.get(id) else {
            return;
        };
        // A broken offer's slot holds another offer's invoice, which a send would overwrite.
        if offer.broken.is_some()
            || state.cache.reachability(&offer.server) != Reachability::Connected
        {
            return;
        }
        let outgoing = serve_message(offer);
        let Some(link) = state.links.get_mut(&offer.server) else {
            return;
        };
        // A resend replaces a copy still waiting here (after a reconnection, say).
        link.drop_invoices_of(id);
        link.outbox.push(outgoing);
    }

    /// What of `kind` is queued for `server` that may leave now, for a messenger of the app's,
    /// which calls this (for each of its handlers) for every message it sends: invoices leave
    /// one per call. LDK's messenger buffers at most 256 KiB per peer and drops what does not
    /// fit, and an invoice travels in a 32 KiB onion, so the rest follow at the socket's pace.
    pub(crate) fn release_for_messenger(&self, server: &PublicKey, kind: MessageKind) -> Outbox {
        self.release(server, 1, Some(kind))
    }

    /// What is queued for `server` that may leave now, for the client's own transport: its
    /// peer manager takes onions only as fast as the socket drains, so no pacing is needed.
    pub(crate) fn release_for_transport(&self, server: &PublicKey) -> Outbox {
        self.release(server, usize::MAX, None)
    }

    /// What is queued for `server` (of `kind`, if given), as far as its send budget, the
    /// answers it owes and `max_invoices` allow.
    fn release(
        &self,
        server: &PublicKey,
        max_invoices: usize,
        kind: Option<MessageKind>,
    ) -> Outbox {
        let now = self.clock.monotonic();
        let via_messenger = kind.is_some();
        let mut state = self.lock();
        let checks_out = state.cache.checks_out(server);
        let Some(link) = state.links.get_mut(server) else {
            return Vec::new();
        };
        let queued = std::mem::take(&mut link.outbox);
        let mut released = Vec::with_capacity(queued.len());
        let mut invoices_released = 0;
        let mut checks_left = Vec::new();
        for entry in queued {
            if kind.is_some_and(|kind| kind != entry.message.kind()) {
                link.outbox.push(entry);
                continue;
            }
            let Message::AsyncPayments(message) = &entry.message else {
                // A check's request (the cache keeps its window, and counts it out from when it
                // is planned, so `checks_out` includes it): a 32 KiB onion, paced for a
                // messenger of the app's as invoices are, leaving once its answer fits.
                if invoices_released >= max_invoices
                    || !link.owes_room_for(0, checks_out, now)
                    || !link.budget.try_spend(now)
                {
                    link.outbox.push(entry);
                    continue;
                }
                invoices_released += 1;
                checks_left.extend(entry.check_id());
                released.push(entry);
                continue;
            };
            let may_leave = match message {
                // At most one invoice per offer on its way: a newer one waits until the older
                // is answered (or its answer given up on), so that a server storing them as
                // they come, and answering as it stores, ends with the newer.
                AsyncPaymentsMessage::ServeStaticInvoice(message) => {
                    let offer = message.invoice.offer_id();
                    invoices_released < max_invoices
                        && link.invoice_may_leave(checks_out, via_messenger, now)
                        && !link.invoices_in_flight.any(|(of, _)| *of == offer)
                }
                AsyncPaymentsMessage::OfferPathsRequest(_) => {
                    link.request_may_leave(checks_out, via_messenger, now)
                }
                _ => true,
            };
            if !may_leave || !link.budget.try_spend(now) {
                link.outbox.push(entry);
                continue;
            }
            match message {
                AsyncPaymentsMessage::ServeStaticInvoice(message) => {
                    invoices_released += 1;
                    link.invoices_in_flight.sent(
                        (message.invoice.offer_id(), message.invoice.created_at()),
                        now,
                        SMALL_ANSWER_BYTES,
                    );
                }
                AsyncPaymentsMessage::OfferPathsRequest(request) => {
                    link.request_sent(request.invoice_slot, via_messenger, now);
                }
                _ => {}
            }
            released.push(entry);
        }
        if !link.outbox.is_empty() && !link.budget.wait(now).is_zero() {
            log::debug!(
                "send budget of server {server} spent; {} messages wait for it to refill",
                link.outbox.len()
            );
        }
        // A check's answer is waited for from when its request left.
        for id in checks_left {
            state.cache.check_left(&id, now);
        }
        released
    }

    /// `server` answered the request for `slot` with `message` over a reply path to it in
    /// `responder`: room for the next requests, as many as answers of that size leave room for.
    pub(super) fn request_answered(
        &self,
        server: PublicKey,
        slot: u16,
        message: &OfferPaths,
        responder: Option<&Responder>,
    ) {
        let answer_bytes = offer_paths_answer_bytes(message, responder);
        self.answered(server, |link| {
            link.request_answered_with(slot, answer_bytes)
        });
    }

    /// `server` confirmed the invoice of `offer` created at `created_at`: room for the next
    /// invoice, that offer's next one included.
    pub(super) fn invoice_answered(&self, server: PublicKey, offer: OfferId, created_at: Duration) {
        self.answered(server, |link| {
            link.invoices_in_flight.answered(&(offer, created_at))
        });
    }

    fn answered(&self, server: PublicKey, end: impl FnOnce(&mut Link)) {
        if let Some(link) = self.lock().links.get_mut(&server) {
            end(link);
        }
        if let Some(ready) = self.outbox_ready(&server) {
            ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_utils::offer_fixture;

    /// Sends requests for slots from `first` while the link lets them leave (beside
    /// `checks_out` checks); how many left.
    fn requests_leaving(link: &mut Link, first: u16, checks_out: usize, now: Duration) -> usize {
        let mut slot = first;
        while link.request_may_leave(checks_out, false, now) {
            link.request_sent(slot, false, now);
            slot += 1;
        }
        usize::from(slot - first)
    }

    /// A link to a server that gave us one-hop paths (the reference server), or padded ones
    /// (LDK's router pads to four hops).
    fn link_to(padded: bool) -> Link {
        let paths = offer_fixture().server_paths(1, if padded { 3 } else { 0 });
        Link::new(u32::MAX, &paths)
    }

    /// An `OfferPaths` with `paths` paths padded to four hops, and a reply path of the
    /// server's, padded so or one hop.
    fn answer(paths: usize, padded_reply_path: bool) -> (OfferPaths, BlindedMessagePath) {
        let fixture = offer_fixture();
        let message = OfferPaths {
            paths: fixture.server_paths(paths, 3),
            paths_absolute_expiry: None,
        };
        let reply_path = fixture.server_paths(1, if padded_reply_path { 3 } else { 0 });
        (message, reply_path[0].clone())
    }

    /// What we take `answer`'s onion to be.
    fn priced(answer: &(OfferPaths, BlindedMessagePath)) -> usize {
        let responder = crate::offers::responder::responder_for(&answer.1);
        offer_paths_answer_bytes(&answer.0, Some(&responder))
    }

    /// What `answer`'s onion is, as LDK builds it over a reply path of ours (one hop, as the
    /// transport makes them).
    fn built_by_ldk(answer: &(OfferPaths, BlindedMessagePath)) -> usize {
        use lightning::blinded_path::EmptyNodeIdLookUp;
        use lightning::onion_message::messenger::{create_onion_message, OnionMessagePath};
        use lightning::sign::{KeysManager, NodeSigner, Recipient};
        let secp = lightning::bitcoin::secp256k1::Secp256k1::new();
        let (ours, servers) = (
            KeysManager::new(&[7; 32], 1, 1, true),
            KeysManager::new(&[8; 32], 1, 1, true),
        );
        let our_reply_path = BlindedMessagePath::new(
            &[],
            ours.get_node_id(Recipient::Node).unwrap(),
            ours.get_receive_auth_key(),
            MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPaths {
                invoice_slot: u16::MAX,
                path_absolute_expiry: Duration::from_secs(u64::from(u32::MAX)),
            }),
            &ours,
            &secp,
        );
        let path = OnionMessagePath {
            intermediate_nodes: Vec::new(),
            destination: Destination::BlindedPath(our_reply_path),
            first_node_addresses: Vec::new(),
        };
        let (_, onion, _) = create_onion_message(
            &&servers,
            &&servers,
            &&EmptyNodeIdLookUp {},
            &secp,
            path,
            AsyncPaymentsMessage::OfferPaths(answer.0.clone()),
            Some(answer.1.clone()),
        )
        .unwrap();
        match onion.onion_routing_packet.hop_data.len() {
            1_300 => SMALL_ANSWER_BYTES,
            _ => LARGE_ANSWER_BYTES,
        }
    }

    /// The answer size `answer_bytes(paths, padded_reply_path)` shows.
    fn answer_bytes(paths: usize, padded_reply_path: bool) -> usize {
        priced(&answer(paths, padded_reply_path))
    }

    #[test]
    fn an_answer_is_priced_as_ldk_builds_its_onion_reply_path_included() {
        for (paths, padded_reply_path, expected) in [
            // The reference server: one padded path, a one-hop reply path.
            (1, false, SMALL_ANSWER_BYTES),
            // LDK's router (ldk-node with no channel): one padded path, a padded reply path.
            (1, true, LARGE_ANSWER_BYTES),
            (3, false, LARGE_ANSWER_BYTES),
        ] {
            let answer = answer(paths, padded_reply_path);
            assert_eq!(
                built_by_ldk(&answer),
                expected,
                "{paths} {padded_reply_path}"
            );
            assert_eq!(priced(&answer), expected, "{paths} {padded_reply_path}");
        }
    }

    #[test]
    fn answers_owed_are_bounded_by_the_bytes_the_server_buffers_for_them() {
        let now = Duration::from_secs(1_000);
        // One-hop paths, small answers expected: a fill of 20 asks for all its paths at once.
        let mut link = link_to(false);
        assert_eq!(requests_leaving(&mut link, 0, 0, now), 20);
        // An answer shows they are small: many more may be owed, within the bytes.
        link.request_answered_with(0, answer_bytes(1, false));
        let more = requests_leaving(&mut link, 100, 0, now);
        assert_eq!(more, OWED_ANSWER_BYTES / SMALL_ANSWER_BYTES - 19);
        // Unanswered ones stop counting after their timeout.
        let later = now + InFlight::<u16>::TIMEOUT;
        let all_small = OWED_ANSWER_BYTES / SMALL_ANSWER_BYTES;
        assert_eq!(requests_leaving(&mut link, 2_000, 0, later), all_small);
        // Answers that carry several padded paths come in 32 KiB onions: once one shows it,
        // the 19 still out count as large too (as small, 6 more would fit), and no more leave.
        let mut link = link_to(false);
        assert_eq!(requests_leaving(&mut link, 0, 0, now), 20);
        link.request_answered_with(0, answer_bytes(3, false));
        assert_eq!(link.requests_in_flight.bytes(now), 19 * LARGE_ANSWER_BYTES);
        assert_eq!(requests_leaving(&mut link, 100, 0, now), 0);
        let later = now + InFlight::<u16>::TIMEOUT;
        assert_eq!(requests_leaving(&mut link, 200, 0, later), 7);
        // A server whose paths are padded is expected to answer large from the start; checks
        // out take their answers' room.
        let mut link = link_to(true);
        assert_eq!(requests_leaving(&mut link, 0, 0, now), 7);
        let mut link = link_to(true);
        assert_eq!(requests_leaving(&mut link, 0, 3, now), 1);
        // Invoices through a messenger of the app's: at most three of its 32 KiB onions.
        let mut link = link_to(false);
        let mut sent = 0;
        while link.invoice_may_leave(0, true, now) {
            let id = lightning::offers::offer::OfferId([sent; 32]);
            link.invoices_in_flight
                .sent((id, Duration::ZERO), now, SMALL_ANSWER_BYTES);
            sent += 1;
        }
        assert_eq!(sent, 3);
        assert!(
            link.invoice_may_leave(0, false, now),
            "the own transport's are not"
        );
    }

    #[test]
    fn the_send_budget_never_lets_more_than_its_count_leave_in_any_minute() {
        let t0 = Duration::from_secs(1_000);
        let second = Duration::from_secs(1);
        let mut budget = SendBudget::new(6);
        assert_eq!((0..10).filter(|_| budget.try_spend(t0)).count(), 6);
        assert_eq!(budget.wait(t0), 60 * second);
        assert!(!budget.try_spend(t0 + 59 * second));
        assert_eq!(budget.wait(t0 + 59 * second), second);
        assert_eq!(
            (0..10)
                .filter(|_| budget.try_spend(t0 + 60 * second))
                .count(),
            6
        );
        // One message a second from then on: whichever minute is looked at, at most 6 left.
        let start = t0 + 120 * second;
        let sent: Vec<Duration> = (0..600)
            .map(|i| start + i * second / 2)
            .filter(|&at| budget.try_spend(at))
            .collect();
        for (i, &from) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|&&at| at < from + 60 * second);
            assert!(in_minute.count() <= 6);
        }
        assert_eq!(sent.len(), 30, "6 a minute over 5 minutes");
        assert_eq!(budget.wait(start + 600 * second), Duration::ZERO);

        let mut unlimited = SendBudget::new(u32::MAX);
        assert_eq!(
            (0..10_000).filter(|_| unlimited.try_spend(t0)).count(),
            10_000
        );
    }
}
