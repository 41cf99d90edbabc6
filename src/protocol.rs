//! The static-invoice-server protocol, client side.
//!
//! [`Engine`] owns the cache of every server's offers. Each server's onion messenger calls a
//! [`ProtocolHandler`] for that server, which hands the message to the engine: it validates
//! it, applies it to the cache, persists the result and only then queues the messages that
//! depend on it, in that server's outbox. It never touches sockets: any onion messenger can
//! drive it, so the same handler runs over TCP or in-process.
//!
//! What is written is what must survive a crash: offers from Ready on (one may be handed out
//! at any moment) and their refreshed invoices. A Pending offer, built but not yet confirmed,
//! lives in memory only. Losing it loses work, never an offer anyone saw: after a restart a
//! new offer takes its place, and an invoice the server may have stored for it belongs to an
//! offer nobody was shown. Not writing it saves two fsyncs per offer on the way to Ready.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, OffersContext,
};
use lightning::offers::offer::OfferId;
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, AsyncPaymentsMessageHandler, HeldHtlcAvailable, OfferPaths,
    OfferPathsRequest, ReleaseHeldHtlc, ServeStaticInvoice, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{
    Destination, MessageSendInstructions, Responder, ResponseInstruction,
};
use lightning::onion_message::offers::{OffersMessage, OffersMessageHandler};
use lightning::sign::EntropySource;
use tokio::sync::Notify;

use crate::cache::{
    CachePolicy, CachedOffer, Confirmation, Delivery, OfferCache, OfferState, Reachability,
    SlotSequence,
};
use crate::clock::{Clock, Time};
use crate::config::{ChannelHint, Config};
use crate::events::{ClientStatus, Event, EventBus, ImportedOffers, OfferInfo, ServerStatus};
use crate::keys::WalletKeys;
use crate::lock::{DataDirLock, HeldLock};
use crate::offer::OfferFactory;
use crate::responder::reply_path_of;
use crate::store::{decode_book, encode_book, OfferStore};
use crate::Error;

/// How long the server may take to answer an `OfferPathsRequest` over our reply path.
const OFFER_PATHS_REPLY_PATH_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// The longest wait between two sends of an invoice the server does not confirm: at most 24
/// sends a day of a 32 KiB onion per stuck offer, once the first hour's doublings are done.
const MAX_INVOICE_RESEND_AFTER: Duration = Duration::from_secs(3600);
/// How long after its refresh was due a handed-out offer may go without a confirmed invoice
/// before the app hears of it ([`Event::InvoiceRefreshFailed`]).
const REFRESH_FAILURE_MARGIN: Duration = Duration::from_secs(3600);

/// A message we start, for one server: sent over `destination` (one of the server's paths),
/// with a reply path of ours carrying `reply_context`.
pub(crate) struct Outgoing {
    pub message: AsyncPaymentsMessage,
    pub destination: BlindedMessagePath,
    pub reply_context: MessageContext,
}

impl Outgoing {
    /// As LDK's messenger takes it from a handler.
    fn into_instructions(self) -> (AsyncPaymentsMessage, MessageSendInstructions) {
        let instructions = MessageSendInstructions::WithReplyPath {
            destination: Destination::BlindedPath(self.destination),
            context: self.reply_context,
        };
        (self.message, instructions)
    }
}

type Outbox = Vec<Outgoing>;

/// Runs a job away from the messenger's thread. Building an offer or writing one durably takes
/// milliseconds; done inline they would hold back every later message on the connection, and
/// replies would leave in one burst at the end instead of one by one.
pub(crate) type Offload = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

struct State {
    cache: OfferCache,
    hints: Vec<ChannelHint>,
    /// Bumped by every `update_channels`, so an offer built meanwhile knows its hints are old.
    hints_version: u64,
    /// What waits to leave for each configured server.
    links: HashMap<PublicKey, Link>,
    /// What last went wrong with each server, until an invoice of it is confirmed again.
    problems: HashMap<PublicKey, String>,
    /// Offers Ready in the cache whose Ready record is still being written: not counted as
    /// ready for the app's waits, so an app that stops once its offers are ready finds them
    /// all on disk at its next start.
    ready_unwritten: Vec<OfferId>,
}

/// Messages waiting for one server, what that server may still be sent this minute, and what
/// it has not answered yet.
struct Link {
    outbox: Outbox,
    budget: SendBudget,
    /// `OfferPathsRequest`s by slot: each answer waits in the server's buffer, in a 32 KiB
    /// onion when it carries several padded paths.
    requests_in_flight: InFlight<u16>,
    /// `ServeStaticInvoice`s by offer: each is a 32 KiB onion in our messenger's buffer when
    /// the app's messenger sends for us.
    invoices_in_flight: InFlight<OfferId>,
}

impl Link {
    fn new(max_messages_per_minute: u32) -> Self {
        Self {
            outbox: Vec::new(),
            budget: SendBudget::new(max_messages_per_minute),
            requests_in_flight: InFlight::default(),
            invoices_in_flight: InFlight::default(),
        }
    }
}

/// Messages of one kind sent to a server and not answered yet. LDK's messenger buffers at most
/// 256 KiB for a peer and silently drops what does not fit: on the server's side, and on ours
/// when a messenger of the app's sends for us (see [`ProtocolHandler`]); invoices, and offer
/// paths when a server hands out several padded ones, travel in 32 KiB onions. With at most
/// [`Self::MAX`] of each kind unanswered, no buffer overflows however many offers are filled
/// at once. An answer ends one; one unanswered for [`Self::TIMEOUT`] no longer counts (its
/// retry is the cache's job).
struct InFlight<K> {
    sent: VecDeque<(K, Duration)>,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        Self {
            sent: VecDeque::new(),
        }
    }
}

impl<K: PartialEq> InFlight<K> {
    const MAX: usize = 6;
    const TIMEOUT: Duration = Duration::from_secs(5);

    fn has_room(&mut self, now: Duration) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|(_, at)| *at + Self::TIMEOUT <= now)
        {
            self.sent.pop_front();
        }
        self.sent.len() < Self::MAX
    }

    fn sent(&mut self, key: K, now: Duration) {
        self.sent.push_back((key, now));
    }

    fn answered(&mut self, key: &K) {
        self.sent.retain(|(sent, _)| sent != key);
    }

    fn clear(&mut self) {
        self.sent.clear();
    }
}

/// A configured server as the engine knows it.
struct Server {
    node_id: PublicKey,
    /// The paths to request offer paths over.
    paths: Vec<BlindedMessagePath>,
    /// Signalled when messages for this server are queued, so its transport flushes them.
    outbox_ready: Arc<Notify>,
}

/// The protocol logic and the owner of the cache, for every server.
pub(crate) struct Engine {
    state: Mutex<State>,
    factory: OfferFactory,
    keys: Arc<WalletKeys>,
    store: OfferStore,
    clock: Arc<dyn Clock>,
    events: Arc<EventBus>,
    servers: Vec<Server>,
    best_block_height: Option<u32>,
    offload: Offload,
    /// The data dir's lock (`None`: a store no other client shares).
    lock: Option<DataDirLock>,
    /// The data dir's lock while the client runs. Not in [`State`]: jobs are offloaded with
    /// that held.
    running_lock: Mutex<Option<Arc<HeldLock>>>,
    /// The first configured server: single-server records are read as its.
    first_server: PublicKey,
    /// Held for each hand-out, from picking the offer to its record being written.
    hand_outs: Mutex<()>,
    /// A fresh install's slot key, until it is written (see [`Self::save_install_key`]).
    unsaved_install_key: Mutex<Option<[u8; 32]>>,
    /// How many Ready offers the config wants.
    target_ready: usize,
    /// Offloaded jobs need an owning handle to the engine.
    me: Weak<Engine>,
}

/// What an engine gets from whoever hosts it: time, the app's events, a place to run slow
/// jobs. The client gives real ones; the fuzz targets give repeatable ones.
pub(crate) struct EngineHost {
    pub clock: Arc<dyn Clock>,
    pub events: Arc<EventBus>,
    pub offload: Offload,
    /// Whether new slots follow this install's key (else the lowest free ones, so that the
    /// fuzz targets can answer requests by slot number).
    pub keyed_slots: bool,
    /// The data dir's lock, held for every write (`None`: a store no other client shares).
    pub lock: Option<DataDirLock>,
}

impl Engine {
    pub fn new(
        config: &Config,
        keys: Arc<WalletKeys>,
        factory: OfferFactory,
        store: OfferStore,
        host: EngineHost,
    ) -> Result<Arc<Self>, Error> {
        let EngineHost {
            clock,
            events,
            offload,
            keyed_slots,
            lock,
        } = host;
        let servers: Vec<Server> = config
            .servers
            .iter()
            .map(|server| Server {
                node_id: server.node_id,
                paths: server.paths.clone(),
                outbox_ready: Arc::new(Notify::new()),
            })
            .collect();
        // Loaded, migrated and tidied under the lock, after a stopped client's last writes.
        let _held = lock.as_ref().map(|lock| lock.acquire(true)).transpose()?;
        let offers = keep_offers_of(&servers, store.load_all(config.servers[0].node_id)?, &store);
        events.load_stored();
        let (slot_sequence, new_install_key) = match (keyed_slots, store.install_key()) {
            (false, _) => (SlotSequence::InOrder, None),
            (true, Some(key)) => (SlotSequence::Keyed(key), None),
            (true, None) => {
                let key = keys.wallet_keys_manager().get_secure_random_bytes();
                (SlotSequence::Keyed(key), Some(key))
            }
        };
        let policy = CachePolicy {
            servers: servers.iter().map(|server| server.node_id).collect(),
            target_ready: config.offer_slots,
            ready_max_age: config.ready_offer_max_age,
            invoice_refresh_interval: config.invoice_refresh_interval,
            min_paths_lifetime: config.min_offer_paths_lifetime,
            first_retry_after: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(15 * 60),
            invoice_resend_after: Duration::from_secs(5),
            max_invoice_resend_after: MAX_INVOICE_RESEND_AFTER,
            refresh_failure_margin: REFRESH_FAILURE_MARGIN,
            expiring_notice: config.offer_expiring_notice,
            expired_retention: config.expired_offer_retention,
            slot_range: config.invoice_slots.clone(),
        };
        let links = servers
            .iter()
            .map(|server| (server.node_id, Link::new(config.max_messages_per_minute)))
            .collect();
        Ok(Arc::new_cyclic(|me| Self {
            state: Mutex::new(State {
                cache: OfferCache::new(policy, offers, slot_sequence),
                hints: config.channel_hints.clone(),
                hints_version: 0,
                links,
                problems: HashMap::new(),
                ready_unwritten: Vec::new(),
            }),
            factory,
            keys,
            store,
            clock,
            events,
            servers,
            best_block_height: config.best_block_height,
            offload,
            lock,
            running_lock: Mutex::new(None),
            hand_outs: Mutex::new(()),
            first_server: config.servers[0].node_id,
            unsaved_install_key: Mutex::new(new_install_key),
            target_ready: usize::from(config.offer_slots),
            me: me.clone(),
        }))
    }

    /// Runs `job` off the caller's thread, holding the data dir's lock: the running client's,
    /// taken now so that a stop lets it go only once the job is done, or else its own.
    fn run_offloaded(&self, job: impl FnOnce(&Engine) + Send + 'static) {
        if let Some(engine) = self.me.upgrade() {
            let running = self.running_lock().clone();
            (self.offload)(Box::new(move || {
                let _held = match running {
                    Some(held) => Some(held),
                    None => match engine.hold_data_dir() {
                        Ok(held) => held,
                        Err(e) => return log::warn!("not done, the data dir is not ours: {e}"),
                    },
                };
                job(&engine)
            }));
        }
    }

    /// The data dir's lock for one operation: the running client's, or taken now. Taken after
    /// another client held it, what it wrote is loaded first.
    fn hold_data_dir(&self) -> Result<Option<Arc<HeldLock>>, Error> {
        let Some(lock) = &self.lock else {
            return Ok(None);
        };
        if let Some(held) = self.running_lock().clone() {
            return Ok(Some(held));
        }
        let acquired = lock.acquire(true)?;
        if acquired.others_held_it {
            self.reload()?;
        }
        Ok(Some(acquired.held))
    }

    /// Holds the data dir's lock until [`Self::stop_running`], as a running client does.
    pub fn start_running(&self) -> Result<(), Error> {
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        let acquired = lock.acquire(false)?;
        if acquired.others_held_it {
            self.reload()?;
        }
        *self.running_lock() = Some(acquired.held);
        Ok(())
    }

    /// Lets the data dir's lock go, once the jobs under way are done.
    pub fn stop_running(&self) {
        let key_unsaved = self
            .unsaved_install_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if key_unsaved {
            self.run_offloaded(|engine| engine.save_install_key());
        }
        if let Some(held) = self.running_lock().take() {
            held.release_soon();
        }
    }

    /// Loads the records again, as another client left them. What this one had in memory only
    /// (Pending offers, outstanding requests, queued messages) is dropped: the other client
    /// knew nothing of their slots and may have filled them.
    fn reload(&self) -> Result<(), Error> {
        let offers = keep_offers_of(
            &self.servers,
            self.store.load_all(self.first_server)?,
            &self.store,
        );
        self.events.load_stored();
        let mut state = self.lock();
        log::info!(
            "another client used the data dir; reloaded {} offers",
            offers.len()
        );
        state.cache.reload(offers);
        state.ready_unwritten.clear();
        for link in state.links.values_mut() {
            link.outbox.clear();
            link.requests_in_flight.clear();
            link.invoices_in_flight.clear();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running_lock(&self) -> MutexGuard<'_, Option<Arc<HeldLock>>> {
        self.running_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signalled when messages for `server` are queued (`None`: not a configured server).
    pub fn outbox_ready(&self, server: &PublicKey) -> Option<Arc<Notify>> {
        self.servers
            .iter()
            .find(|known| known.node_id == *server)
            .map(|known| known.outbox_ready.clone())
    }

    /// Tells every transport to flush what was queued for its server.
    fn wake_transports(&self) {
        for server in &self.servers {
            server.outbox_ready.notify_one();
        }
    }

    /// How long until messages for `server` held back by the send budget can leave (`None`:
    /// none are).
    pub fn deferred_release_in(&self, server: &PublicKey) -> Option<Duration> {
        let now = self.clock.monotonic();
        let mut state = self.lock();
        let link = state.links.get_mut(server)?;
        if link.outbox.is_empty() {
            return None;
        }
        Some(link.budget.wait(now)).filter(|wait| !wait.is_zero())
    }

    pub fn offers(&self) -> Vec<OfferInfo> {
        self.offers_where(|_| true)
    }

    pub fn ready_offers(&self) -> Vec<OfferInfo> {
        self.offers_where(|offer| offer.state == OfferState::Ready)
    }

    /// How many offers are Ready and written so, without encoding any of them.
    pub fn ready_count(&self) -> usize {
        let state = self.lock();
        state
            .cache
            .offers()
            .iter()
            .filter(|offer| {
                offer.state == OfferState::Ready && !state.ready_unwritten.contains(&offer.id())
            })
            .count()
    }

    fn offers_where(&self, keep: impl Fn(&CachedOffer) -> bool) -> Vec<OfferInfo> {
        self.lock()
            .cache
            .offers()
            .iter()
            .filter(|offer| keep(offer))
            .map(OfferInfo::from)
            .collect()
    }

    /// `server` is connected: it gets its unconfirmed invoices again and its share of the
    /// missing offers at once.
    pub fn on_connected(&self, server: PublicKey) {
        let mut state = self.lock();
        state
            .cache
            .set_reachability(server, Reachability::Connected);
        self.queue_resends(&mut state, Time::of(&*self.clock), Some(server));
        self.queue_offer_paths_requests(&mut state);
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
            link.outbox.clear();
            link.requests_in_flight.clear();
            link.invoices_in_flight.clear();
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

    /// Keeps `problem` as what last went wrong with `server`, for [`Self::status`].
    fn note_problem(&self, server: PublicKey, problem: String) {
        self.lock().problems.insert(server, problem);
    }

    /// Each configured server's connection and last problem, and the Ready offers.
    pub fn status(&self, running: bool) -> ClientStatus {
        let state = self.lock();
        ClientStatus {
            running,
            ready_offers: state
                .cache
                .offers()
                .iter()
                .filter(|offer| offer.state == OfferState::Ready)
                .count(),
            wanted_offers: self.target_ready,
            servers: self
                .servers
                .iter()
                .map(|server| ServerStatus {
                    server_node_id: OfferInfo::node_id_hex(&server.node_id),
                    connected: state.cache.reachability(&server.node_id) == Reachability::Connected,
                    last_problem: state.problems.get(&server.node_id).cloned(),
                })
                .collect(),
        }
    }

    fn mark_unreachable(&self, server: PublicKey) {
        let mut state = self.lock();
        state
            .cache
            .set_reachability(server, Reachability::Unreachable);
        state.cache.note_unreachable(server, self.clock.monotonic());
        if let Some(link) = state.links.get_mut(&server) {
            link.outbox.clear();
            link.requests_in_flight.clear();
            link.invoices_in_flight.clear();
        }
        self.queue_offer_paths_requests(&mut state);
        drop(state);
        self.wake_transports();
    }

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
        if !maintenance.rebuild.is_empty() {
            self.run_offloaded(move |engine| engine.refresh_invoices(maintenance.rebuild));
        }
        self.queue_resends(&mut state, now, None);
        self.queue_offer_paths_requests(&mut state);
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

    /// The oldest event the app has not handled.
    pub fn next_event(&self) -> Option<Event> {
        self.events.next_event()
    }

    /// Removes the oldest event, handled by the app; written before it returns.
    pub fn event_handled(&self) -> Result<(), Error> {
        let _held = self.hold_data_dir()?;
        self.events.event_handled().map(|_| ())
    }

    /// Hands out a Ready offer never handed out before, persisted as Used first.
    pub fn take_offer(&self, label: Option<String>) -> Result<OfferInfo, Error> {
        self.hand_out(|cache, now| cache.take(label, now).map(|offer| (offer, true)))
    }

    /// The offer for `label`: the same one every time while it lives.
    pub fn offer_for(&self, label: &str) -> Result<OfferInfo, Error> {
        self.hand_out(|cache, now| cache.offer_for(label, now))
    }

    /// Runs `pick`; an offer it newly hands out is persisted as Used before it is returned, and
    /// its slot's replacement requested. The write is made outside the engine's lock: message
    /// handling and maintenance never wait for it; hand-outs (and exports) wait for each
    /// other, so no two see an offer whose hand-out is not yet durable.
    fn hand_out(
        &self,
        pick: impl FnOnce(&mut OfferCache, Duration) -> Option<(CachedOffer, bool)>,
    ) -> Result<OfferInfo, Error> {
        let _held = self.hold_data_dir()?;
        let _one_at_a_time = self.hand_outs.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        let (offer, write) = {
            let mut state = self.lock();
            let (offer, newly_handed_out) =
                pick(&mut state.cache, now).ok_or(Error::NoReadyOffer)?;
            let write = newly_handed_out.then(|| self.store.prepare(&offer));
            (offer, write)
        };
        if let Some(write) = write {
            if let Err(e) = self.store.commit(write) {
                self.lock().cache.untake(offer.id());
                return Err(e);
            }
            let mut state = self.lock();
            self.queue_offer_paths_requests(&mut state);
            drop(state);
            self.wake_transports();
        }
        Ok(OfferInfo::from(&offer))
    }

    /// The handed-out offers as an offer book (see [`crate::store`]), as on disk now.
    pub fn export_offers(&self) -> Result<Vec<u8>, Error> {
        let _held = self.hold_data_dir()?;
        // Not while a hand-out is being written: its offer may yet go back to Ready.
        let _no_hand_out = self.hand_outs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(encode_book(self.lock().cache.handed_out()))
    }

    /// Merges the handed-out offers of `book` (see [`OfferCache::import`]), written before this
    /// returns; their unconfirmed invoices are sent, and they are refreshed as ours from now on.
    pub fn import_offers(&self, book: &[u8]) -> Result<ImportedOffers, Error> {
        let offers = decode_book(book, self.first_server).map_err(Error::InvalidOfferBook)?;
        let _held = self.hold_data_dir()?;
        let mut state = self.lock();
        let import = state.cache.import(offers);
        let writes: Vec<_> = import
            .made_way
            .iter()
            .map(|offer| self.store.prepare_removal(offer))
            .chain(import.written.iter().map(|offer| self.store.prepare(offer)))
            .collect();
        drop(state);
        for offer in &import.conflicts {
            log::warn!(
                "not importing the offer in slot {} of server {}: an offer handed out here holds that slot",
                offer.slot,
                offer.server
            );
        }
        for write in writes {
            self.store.commit(write)?;
        }
        let mut state = self.lock();
        self.queue_resends(&mut state, Time::of(&*self.clock), None);
        self.queue_offer_paths_requests(&mut state);
        drop(state);
        self.wake_transports();
        Ok(ImportedOffers {
            imported: import.written.len(),
            already_here: import.already_here,
            conflicting: import.conflicts.len(),
        })
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
        drop(state);
        self.run_offloaded(move |engine| engine.refresh_invoices(ids));
        Ok(())
    }

    /// Builds, persists and queues a new invoice for each offer, with the current hints.
    fn refresh_invoices(&self, ids: Vec<OfferId>) {
        for id in ids {
            self.refresh_invoice(id);
        }
    }

    fn refresh_invoice(&self, id: OfferId) {
        let now = Time::of(&*self.clock);
        let (offer, nonce, server, hints, replaced_created_at) = {
            let state = self.lock();
            let Some(cached) = state.cache.get(id) else {
                return;
            };
            (
                cached.offer.clone(),
                cached.nonce,
                cached.server,
                state.hints.clone(),
                cached.invoice.invoice.created_at(),
            )
        };
        // Later than the invoice it replaces, even within the same second (invoices carry
        // whole seconds): a confirmation names its invoice by that time, and one of the old
        // invoice must never pass for the new one's.
        let created_at = now
            .wall
            .max(Duration::from_secs(replaced_created_at.as_secs() + 1));
        // Built outside the lock: a refresh of many offers must not stall the messenger.
        let invoice = match self.factory.build_invoice(
            &offer,
            nonce,
            server,
            &hints,
            created_at,
            self.best_block_height,
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
        // The new invoice is written before the cache takes it: until then nothing (a resend,
        // a reconnection) can send the server an invoice the disk does not know.
        let (write, slot) = {
            let state = self.lock();
            let Some(cached) = state.cache.get(id) else {
                return;
            };
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
        state.cache.replace_invoice(id, invoice, now.monotonic);
        self.queue_invoice(&mut state, id);
        drop(state);
        self.wake_transports();
    }

    /// Queues the `OfferPathsRequest`s the cache plans, each to its server.
    fn queue_offer_paths_requests(&self, state: &mut State) {
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
                message: AsyncPaymentsMessage::OfferPathsRequest(OfferPathsRequest {
                    invoice_slot: request.slot,
                }),
                destination: path.clone(),
                reply_context: context,
            });
        }
    }

    fn queue_resends(&self, state: &mut State, now: Time, reconnected: Option<PublicKey>) {
        for id in state.cache.plan_resends(now, reconnected) {
            self.queue_invoice(state, id);
        }
    }

    /// Queues the offer's current invoice to its slot on its server, if that server is
    /// connected (on connection, every unconfirmed invoice is sent again).
    fn queue_invoice(&self, state: &mut State, id: OfferId) {
        let Some(offer) = state.cache.get(id) else {
            return;
        };
        if state.cache.reachability(&offer.server) != Reachability::Connected {
            return;
        }
        let outgoing = serve_message(offer);
        let Some(link) = state.links.get_mut(&offer.server) else {
            return;
        };
        // A resend replaces a copy still waiting here (after a reconnection, say).
        link.outbox.retain(|queued| {
            !matches!(&queued.message, AsyncPaymentsMessage::ServeStaticInvoice(m) if m.invoice.offer_id() == id)
        });
        link.outbox.push(outgoing);
    }

    /// Checks an `OfferPaths` from `server` and builds the offer and its invoice. The offer is
    /// Pending, in memory only: it is first written once the server confirms its invoice.
    fn accept_offer_paths(
        &self,
        server: PublicKey,
        message: OfferPaths,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Result<Outgoing, String> {
        let AsyncPaymentsContext::OfferPaths {
            invoice_slot,
            path_absolute_expiry,
        } = context
        else {
            return Err("arrived over a path that was not an OfferPaths reply path".into());
        };
        let server_path = responder
            .as_ref()
            .map(reply_path_of)
            .ok_or("no reply path to send the invoice over")?
            .map_err(|e| format!("undecodable reply path: {e:?}"))?;
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
                .map_err(|why| format!("slot {invoice_slot} of server {server}: {why}"))
        };
        let (hints, hints_version) = {
            let state = self.lock();
            check(&state)?;
            (state.hints.clone(), state.hints_version)
        };
        // Built outside the lock: offers for several slots are built at once.
        let (offer, nonce) = self
            .factory
            .build_offer(message.paths.clone(), paths_expiry)?;
        // Over the size servers store even with one channel, sending it would only be retried
        // for ever.
        let invoice = self
            .factory
            .build_invoice(&offer, nonce, server, &hints, now, self.best_block_height)
            .map_err(|why| format!("slot {invoice_slot} of server {server}: {why}"))?;
        let mut state = self.lock();
        // Again: a duplicate of this message may have filled the slot meanwhile.
        check(&state)?;
        let offer = CachedOffer {
            server,
            slot: invoice_slot,
            offer,
            nonce,
            state: OfferState::Pending,
            label: None,
            created_at: now,
            handed_out_at: None,
            server_path,
            invoice,
            invoice_confirmed: false,
            invoice_sent_at: Some(monotonic),
            pending_since: monotonic,
            expiry_announced: false,
            expired_announced: false,
            invoice_confirmed_at: None,
            delivery: Delivery {
                sends: 1,
                ..Delivery::default()
            },
        };
        let id = offer.id();
        let outgoing = serve_message(&offer);
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
        Ok(outgoing)
    }

    fn confirm_invoice(&self, context: AsyncPaymentsContext) {
        let AsyncPaymentsContext::StaticInvoicePersisted {
            offer_id,
            invoice_created_at,
        } = context
        else {
            log::warn!("StaticInvoicePersisted over an unexpected path; ignored");
            return;
        };
        let now = self.clock.now();
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
        let mut writes = Vec::new();
        let now_ready = matches!(outcome, Confirmation::NowReady { .. });
        // This offer completes the fill: the first one's, for a fresh install's slot key.
        let filled = now_ready
            && state
                .cache
                .offers()
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count()
                >= self.target_ready;
        let events = match outcome {
            Confirmation::Ignored => {
                log::debug!(
                    "duplicate or stale confirmation for slot {} of server {} ignored",
                    cached.slot,
                    cached.server
                );
                return;
            }
            Confirmation::Refreshed => vec![Event::InvoiceRefreshed {
                offer_id: OfferInfo::offer_id_hex(offer_id),
            }],
            Confirmation::NowReady { replaced } => {
                // Encoded only here: duplicates and refreshes need no bech32 offer.
                let offer = OfferInfo::from(cached);
                writes.extend(replaced.iter().map(|old| self.store.prepare_removal(old)));
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
        writes.extend(state.cache.get(offer_id).map(|o| self.store.prepare(o)));
        if now_ready {
            state.ready_unwritten.push(offer_id);
        }
        drop(state);
        for write in writes {
            if let Err(e) = self.store.commit(write) {
                // The offer stays usable now. After a restart, an offer never written Ready is
                // replaced by a new one, and one whose new invoice was not written is
                // refreshed again.
                log::error!("{e}");
            }
        }
        if now_ready {
            self.lock().ready_unwritten.retain(|id| *id != offer_id);
        }
        for event in events {
            self.events.emit(event);
        }
        // After the events: what waits for this offer need not wait for the key's write.
        if filled {
            self.save_install_key();
        }
    }

    /// Writes a fresh install's slot key, if it is not yet: once its first fill is done, or when
    /// it stops, so that the fill does not wait for two more fsyncs. Lost before that (a
    /// crash), a new key is made at the next start: no slot depends on it staying the same,
    /// only how few slots an install comes to use.
    fn save_install_key(&self) {
        let Some(key) = self
            .unsaved_install_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        if let Err(e) = self.store.save_install_key(&key) {
            log::warn!("{e}");
        }
    }

    /// What is queued for `server`, as far as its send budget and the answers it owes allow.
    ///
    /// With `one_invoice`, invoices leave one per call: LDK's messenger buffers at most 256 KiB
    /// per peer and drops what does not fit, and an invoice travels in a 32 KiB onion; it calls
    /// again for every message it sends, so the rest follow at the socket's pace. The client's
    /// own transport needs no such pacing: the peer manager takes its onions only as fast as the
    /// socket drains.
    pub(crate) fn release_pending_messages(&self, server: &PublicKey, one_invoice: bool) -> Outbox {
        let now = self.clock.monotonic();
        let mut state = self.lock();
        let Some(link) = state.links.get_mut(server) else {
            return Vec::new();
        };
        let queued = std::mem::take(&mut link.outbox);
        let mut released = Vec::with_capacity(queued.len());
        let mut invoice_released = false;
        for entry in queued {
            let may_leave = match &entry.message {
                AsyncPaymentsMessage::ServeStaticInvoice(_) => {
                    !(one_invoice && invoice_released) && link.invoices_in_flight.has_room(now)
                }
                AsyncPaymentsMessage::OfferPathsRequest(_) => link.requests_in_flight.has_room(now),
                _ => true,
            };
            if !may_leave || !link.budget.try_spend(now) {
                link.outbox.push(entry);
                continue;
            }
            match &entry.message {
                AsyncPaymentsMessage::ServeStaticInvoice(message) => {
                    invoice_released = true;
                    link.invoices_in_flight
                        .sent(message.invoice.offer_id(), now);
                }
                AsyncPaymentsMessage::OfferPathsRequest(request) => {
                    link.requests_in_flight.sent(request.invoice_slot, now);
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
        released
    }

    /// `server` answered a message: room for the next one of its kind.
    fn answered(&self, server: PublicKey, end: impl FnOnce(&mut Link)) {
        if let Some(link) = self.lock().links.get_mut(&server) {
            end(link);
        }
        if let Some(ready) = self.outbox_ready(&server) {
            ready.notify_one();
        }
    }

    /// Verifies an invoice request forwarded by a server and reports it.
    fn handle_forwarded_invoice_request(
        &self,
        message: OffersMessage,
        context: Option<OffersContext>,
    ) {
        let (OffersMessage::InvoiceRequest(request), Some(OffersContext::InvoiceRequest { nonce })) =
            (message, context)
        else {
            log::debug!("ignoring an offers message that is not a forwarded invoice request");
            return;
        };
        let expanded_key = self.keys.expanded_key();
        let amount_msats = request.amount_msats();
        let payer_note = request.payer_note().map(|note| note.to_string());
        match request.verify_using_recipient_data(nonce, &expanded_key, self.factory.secp()) {
            Ok(verified) => {
                let offer_id = OfferInfo::offer_id_hex(verified.offer_id);
                log::info!("verified forwarded invoice request for offer {offer_id}");
                // Written with the data dir held: a messenger of the app's may run this while
                // the client is not started.
                let _held = self
                    .hold_data_dir()
                    .inspect_err(|e| log::warn!("the request waits in memory only: {e}"));
                self.events.emit(Event::InvoiceRequestForwarded {
                    offer_id,
                    amount_msats,
                    payer_note,
                });
            }
            Err(()) => log::warn!("rejected a forwarded invoice request that failed verification"),
        }
    }
}

/// The stored offers to load: those of configured servers, and handed-out ones of servers no
/// longer configured (payers may still use them; nothing is sent for them). Ready and Pending
/// offers of those servers are removed: they were never shown.
fn keep_offers_of(
    servers: &[Server],
    offers: Vec<CachedOffer>,
    store: &OfferStore,
) -> Vec<CachedOffer> {
    let configured = |offer: &CachedOffer| servers.iter().any(|s| s.node_id == offer.server);
    let mut kept = Vec::with_capacity(offers.len());
    for offer in offers {
        if configured(&offer) {
            kept.push(offer);
        } else if offer.state == OfferState::Used {
            log::warn!(
                "server {} is no longer configured: its handed-out offer in slot {} is kept until it expires, but its invoice is no longer refreshed",
                offer.server,
                offer.slot
            );
            kept.push(offer);
        } else {
            log::info!(
                "server {} is no longer configured: dropping its unused offer in slot {}",
                offer.server,
                offer.slot
            );
            if let Err(e) = store.remove(&offer) {
                log::error!("{e}");
            }
        }
    }
    kept
}

/// The offer's current invoice, to its server's reply path.
fn serve_message(offer: &CachedOffer) -> Outgoing {
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
        message: AsyncPaymentsMessage::ServeStaticInvoice(message),
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

/// The client's protocol handler for one of its servers: the `AsyncPaymentsMessageHandler` and
/// `OffersMessageHandler` of the onion messenger connected to that server. The client's own
/// TCP transport runs one per server; use it to run the client over an `OnionMessenger` of your
/// own instead (tests with in-memory LDK nodes, custom transports).
///
/// Give it to the messenger as both the offers and the async-payments handler, sign with
/// [`WalletKeys::transport_keys_manager`](crate::keys::WalletKeys::transport_keys_manager),
/// route with [`ServerRouter`](crate::ServerRouter), and report the connection to the server and
/// the maintenance ticks. Do not also call [`AsyncOffersClient::start`](crate::AsyncOffersClient::start).
#[derive(Clone)]
pub struct ProtocolHandler {
    engine: Arc<Engine>,
    server: PublicKey,
    /// Whether the messenger takes our messages from this handler; the client's own transport
    /// takes them from the engine instead and builds their onions itself.
    messenger_sends: bool,
}

impl ProtocolHandler {
    /// A handler whose messenger sends the messages we start.
    pub(crate) fn new(engine: Arc<Engine>, server: PublicKey) -> Self {
        Self {
            engine,
            server,
            messenger_sends: true,
        }
    }

    /// A handler for the client's own transport, which sends the messages we start itself.
    pub(crate) fn receiving_only(engine: Arc<Engine>, server: PublicKey) -> Self {
        Self {
            engine,
            server,
            messenger_sends: false,
        }
    }

    /// The messenger is connected to the server: its missing slots are requested.
    pub fn server_connected(&self) {
        self.engine.on_connected(self.server)
    }

    /// The messenger lost the server.
    pub fn server_disconnected(&self) {
        self.engine.on_disconnected(self.server)
    }

    /// Maintenance of every server's offers: expiry, resends, refreshes, retries. Call it every
    /// [`Config::tick_interval`](crate::Config::tick_interval), once for the client.
    pub fn tick(&self) {
        self.engine.on_tick()
    }
}

impl AsyncPaymentsMessageHandler for ProtocolHandler {
    fn handle_offer_paths_request(
        &self,
        _message: OfferPathsRequest,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) -> Option<(OfferPaths, ResponseInstruction)> {
        log::debug!("ignoring OfferPathsRequest: this client is not a static invoice server");
        None
    }

    fn handle_offer_paths(
        &self,
        message: OfferPaths,
        context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Option<(ServeStaticInvoice, ResponseInstruction)> {
        let server = self.server;
        if let AsyncPaymentsContext::OfferPaths { invoice_slot, .. } = &context {
            self.engine.answered(server, |link| {
                link.requests_in_flight.answered(invoice_slot)
            });
        }
        self.engine.run_offloaded(move |engine| {
            match engine.accept_offer_paths(server, message, context, responder) {
                Ok(outgoing) => {
                    if let Some(link) = engine.lock().links.get_mut(&server) {
                        link.outbox.push(outgoing);
                    }
                    engine.wake_transports();
                }
                Err(why) => {
                    log::warn!("rejected OfferPaths: {why}");
                    engine.note_problem(server, format!("rejected its offer paths: {why}"));
                }
            }
        });
        None
    }

    fn handle_serve_static_invoice(
        &self,
        _message: ServeStaticInvoice,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) {
        log::debug!("ignoring ServeStaticInvoice: this client is not a static invoice server");
    }

    fn handle_static_invoice_persisted(
        &self,
        _message: StaticInvoicePersisted,
        context: AsyncPaymentsContext,
    ) {
        if let AsyncPaymentsContext::StaticInvoicePersisted { offer_id, .. } = &context {
            self.engine.answered(self.server, |link| {
                link.invoices_in_flight.answered(offer_id)
            });
        }
        self.engine
            .run_offloaded(move |engine| engine.confirm_invoice(context));
    }

    fn handle_held_htlc_available(
        &self,
        _message: HeldHtlcAvailable,
        _context: AsyncPaymentsContext,
        _responder: Option<Responder>,
    ) -> Option<(ReleaseHeldHtlc, ResponseInstruction)> {
        log::debug!("ignoring HeldHtlcAvailable: HTLCs are released by the wallet node");
        None
    }

    fn handle_release_held_htlc(&self, _message: ReleaseHeldHtlc, _context: AsyncPaymentsContext) {}

    fn release_pending_messages(&self) -> Vec<(AsyncPaymentsMessage, MessageSendInstructions)> {
        if !self.messenger_sends {
            return Vec::new();
        }
        self.engine
            .release_pending_messages(&self.server, true)
            .into_iter()
            .map(Outgoing::into_instructions)
            .collect()
    }
}

impl OffersMessageHandler for ProtocolHandler {
    fn handle_message(
        &self,
        message: OffersMessage,
        context: Option<OffersContext>,
        _responder: Option<Responder>,
    ) -> Option<(OffersMessage, ResponseInstruction)> {
        self.engine
            .handle_forwarded_invoice_request(message, context);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::SendBudget;
    use std::time::Duration;

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
