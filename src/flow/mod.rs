//! The static-invoice-server protocol, client side: what gets sent, when, and what gets written.
//!
//! [`Engine`] owns the cache of every server's offers and applies to it, in this order, what
//! happens: it asks the cache (pure) what to do, writes what must survive, then queues the
//! messages that depend on it in the server's outbox and reports events. Its work is split by
//! what starts it:
//! - `inbound`: the servers (connections, offer paths, confirmations, forwarded requests),
//!   called by the [`ProtocolHandler`](crate::ProtocolHandler) each server's messenger holds;
//! - `hand_out`: the app taking offers, exporting and importing them;
//! - `maintenance`: time (ticks) and the wallet's channels changing;
//! - `outbox`: what may leave for each server now (send budget, answers owed);
//! - `sync`: how far a background window's sync got (what is written counts).
//!
//! It never touches sockets: any onion messenger can drive it, so the same engine runs over
//! TCP or in-process.
//!
//! What is written is what must survive a crash: offers from Ready on (one may be handed out
//! at any moment) and their refreshed invoices. A Pending offer, built but not yet confirmed,
//! lives in memory only. Losing it loses work, never an offer anyone saw: after a restart a
//! new offer takes its place, and an invoice the server may have stored for it belongs to an
//! offer nobody was shown. Not writing it saves two fsyncs per offer on the way to Ready.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::offer::OfferId;
use lightning::sign::EntropySource;
use tokio::sync::Notify;

use crate::clock::{Clock, Time};
use crate::config::{ChannelHint, Config};
use crate::events::{ClientStatus, EventBus, OfferInfo, QueuedEvent, ServerStatus};
use crate::io::lock::{DataDirLock, HeldLock, Releasing};
use crate::io::store::OfferStore;
use crate::keys::WalletKeys;
use crate::offers::builder::OfferFactory;
use crate::offers::cache::{
    CachePolicy, CachedOffer, OfferCache, OfferState, Reachability, SlotSequence,
};
use crate::Error;

mod check;
mod hand_out;
mod inbound;
mod maintenance;
mod outbox;
mod sync;

use inbound::OfferBuilds;
use outbox::Link;
pub(crate) use outbox::{Message, MessageKind, Outgoing};
pub(crate) use sync::SyncBaseline;

/// How long the server may take to answer an `OfferPathsRequest` over our reply path.
const OFFER_PATHS_REPLY_PATH_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// The longest wait between two sends of an invoice the server does not confirm: at most 24
/// sends a day of a 32 KiB onion per stuck offer, once the first hour's doublings are done.
const MAX_INVOICE_RESEND_AFTER: Duration = Duration::from_secs(3600);
/// How long a check waits for the server's answer (and an invoice served again for its
/// confirmation): an invoice in a 32 KiB onion, behind up to two others and what else the
/// link carries, over a slow mobile link (128 kbit/s moves 32 KiB in 2 s).
const CHECK_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after its refresh was due a handed-out offer may go without a confirmed invoice
/// before the app hears of it ([`Event::InvoiceRefreshFailed`]).
const REFRESH_FAILURE_MARGIN: Duration = Duration::from_secs(3600);

/// Runs a job away from the messenger's thread. Building an offer or writing one durably takes
/// milliseconds; done inline they would hold back every later message on the connection, and
/// replies would leave in one burst at the end instead of one by one. It must never run a job
/// inline: the engine hands it jobs with its state's lock held.
pub(crate) type Offload = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

struct State {
    cache: OfferCache,
    hints: Vec<ChannelHint>,
    /// Bumped by every `update_channels`, so an offer built meanwhile knows its hints are old.
    hints_version: u64,
    /// The chain tip the app last gave, for the invoices built from now on.
    best_block_height: Option<u32>,
    /// What waits to leave for each configured server.
    links: HashMap<PublicKey, Link>,
    /// What last went wrong with each server, until an invoice of it is confirmed again.
    problems: HashMap<PublicKey, String>,
    /// Offers whose confirmation (Ready, or a refreshed invoice) is still being written: not
    /// counted as done for the app's waits, so an app that stops once they say so finds it
    /// all on disk at its next start.
    confirmations_unwritten: Vec<OfferId>,
    /// Offers whose invoice is to be rebuilt, with the current hints, in this order: all live
    /// ones after `update_channels`, handed-out ones as they come due. While the client runs,
    /// one worker at a time takes them one by one (see `Engine::refresh_owed`); what waits when
    /// it stops, or comes while it is stopped, waits for the next run (in memory: a process
    /// ended first leaves those offers on their invoice until its next refresh, or until
    /// replaced).
    refreshes_owed: VecDeque<OfferId>,
    /// The offer the worker is rebuilding now: still owed, as far as a sync can tell.
    refresh_under_way: Option<OfferId>,
    /// The payer keys of this client's recent check requests: a server forwarding one back
    /// is not forwarding a payment.
    own_check_requests: check::OwnRequests,
    /// Offers whose check's finding (verified, a round ended, a repair, broken) is still being
    /// written: not ended for `check_offers` and `sync` until it is.
    check_findings_unwritten: Vec<OfferId>,
}

impl State {
    /// Ready offers whose Ready record is written: what the app's waits count.
    fn written_ready_count(&self) -> usize {
        self.cache
            .offers()
            .iter()
            .filter(|offer| {
                offer.state == OfferState::Ready
                    && !self.confirmations_unwritten.contains(&offer.id())
            })
            .count()
    }
}

/// What a refresh worker works in (see `Engine::refresh_owed`).
enum RefreshRun {
    /// The client's run, whose data dir lock the worker holds until it ends with the run
    /// (`None`: an engine without a lock).
    Run(Option<Arc<HeldLock>>),
    /// No run: a client driven by the app's own messenger, or not started yet. The worker
    /// takes the data dir for each offer, and ends when the app stops the client.
    Unstarted,
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
    offload: Offload,
    /// The data dir's lock (`None`: a store no other client shares).
    lock: Option<DataDirLock>,
    /// The data dir's lock while the client runs. Not in [`State`]: jobs are offloaded with
    /// that held.
    running_lock: Mutex<Option<Arc<HeldLock>>>,
    /// Whether a worker takes the refreshes owed (`State::refreshes_owed`).
    refresh_worker: Arc<AtomicBool>,
    /// Offer paths received, waiting for an offer and its invoice to be built over them.
    offer_builds: OfferBuilds,
    /// Whether the app stopped the client (or a sync's run ended) since it last ran: then
    /// nothing takes the data dir for refreshes until the next run.
    stopped: AtomicBool,
    /// The first configured server: single-server records are read as its.
    first_server: PublicKey,
    /// Held for each hand-out, from picking the offer to its record being written.
    hand_outs: Mutex<()>,
    /// Held by each invoice refresh from its write to its install, so they land in order.
    refreshes: Mutex<()>,
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
            target_ready: config.ready_offer_target,
            ready_max_age: config.ready_offer_max_age,
            // As long as a Ready offer may wait to be handed out: an offer the server has not
            // confirmed by then would be replaced if it were Ready.
            pending_max_age: config.ready_offer_max_age,
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
            offer_check_interval: config.offer_check_interval,
            check_answer_timeout: CHECK_ANSWER_TIMEOUT,
        };
        let links = servers
            .iter()
            .map(|server| {
                (
                    server.node_id,
                    Link::new(config.max_messages_per_minute, &server.paths),
                )
            })
            .collect();
        Ok(Arc::new_cyclic(|me| Self {
            state: Mutex::new(State {
                cache: OfferCache::new(policy, offers, slot_sequence),
                hints: config.channel_hints.clone(),
                hints_version: 0,
                best_block_height: config.best_block_height,
                links,
                problems: HashMap::new(),
                confirmations_unwritten: Vec::new(),
                refreshes_owed: VecDeque::new(),
                refresh_under_way: None,
                own_check_requests: Default::default(),
                check_findings_unwritten: Vec::new(),
            }),
            factory,
            keys,
            store,
            clock,
            events,
            servers,
            offload,
            lock,
            running_lock: Mutex::new(None),
            refresh_worker: Arc::default(),
            offer_builds: OfferBuilds::default(),
            stopped: AtomicBool::new(false),
            hand_outs: Mutex::new(()),
            refreshes: Mutex::new(()),
            first_server: config.servers[0].node_id,
            unsaved_install_key: Mutex::new(new_install_key),
            target_ready: usize::from(config.ready_offer_target),
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
        self.hold_data_dir_unless(&|| false)
    }

    /// As [`Self::hold_data_dir`], giving up the wait for another client once `abandoned`
    /// says so ([`Error::DataDirInUse`]), and before loading what it wrote.
    fn hold_data_dir_unless(
        &self,
        abandoned: &dyn Fn() -> bool,
    ) -> Result<Option<Arc<HeldLock>>, Error> {
        let Some(lock) = &self.lock else {
            return Ok(None);
        };
        if let Some(held) = self.running_lock().clone() {
            return Ok(Some(held));
        }
        let acquired = lock.acquire_unless(true, abandoned)?;
        if abandoned() {
            return Err(Error::DataDirInUse("given up".into()));
        }
        if acquired.others_held_it {
            self.reload()?;
        }
        Ok(Some(acquired.held))
    }

    /// Holds the data dir's lock until [`Self::stop_running`], as a running client does;
    /// gives up waiting for it once `abandoned` says so.
    pub fn start_running(&self, abandoned: &dyn Fn() -> bool) -> Result<(), Error> {
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        let acquired = lock.acquire_unless(false, abandoned)?;
        if acquired.others_held_it {
            self.reload()?;
        }
        *self.running_lock() = Some(acquired.held);
        self.resume();
        Ok(())
    }

    /// The app stopped the client: nothing takes the data dir for refreshes until it runs.
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// The app drives the client again (a run began, or its own messenger called): the
    /// refreshes owed get a worker.
    pub fn resume(&self) {
        self.stopped.store(false, Ordering::SeqCst);
        let mut state = self.lock();
        self.owe_refreshes(&mut state, Vec::new());
    }

    /// Lets the data dir's lock go, once the jobs under way are done: the returned
    /// [`Releasing`] says when. Long jobs of the run (refresh batches) end at their next step.
    pub fn stop_running(&self) -> Option<Releasing> {
        self.mark_stopped();
        let key_unsaved = self
            .unsaved_install_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if key_unsaved {
            self.run_offloaded(|engine| engine.save_install_key());
        }
        let held = self.running_lock().take()?;
        held.release_soon();
        Some(Releasing::of(&held))
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
        state.confirmations_unwritten.clear();
        // Answers to requests the reloaded cache no longer has.
        self.offer_builds.clear();
        for link in state.links.values_mut() {
            link.forget();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running_lock(&self) -> MutexGuard<'_, Option<Arc<HeldLock>>> {
        self.running_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a refresh worker begun now works in; `None`: it must not begin (the app stopped
    /// the client, and only the next run may take the data dir for refreshes).
    fn refresh_run(&self) -> Option<RefreshRun> {
        match (&self.lock, self.running_lock().clone()) {
            (None, _) => Some(RefreshRun::Run(None)),
            (Some(_), Some(held)) => Some(RefreshRun::Run(Some(held))),
            (Some(_), None) if self.stopped.load(Ordering::SeqCst) => None,
            (Some(_), None) => Some(RefreshRun::Unstarted),
        }
    }

    /// Whether a worker begun in `run` may go on to its next offer.
    fn refresh_run_continues(&self, run: &RefreshRun) -> bool {
        match run {
            RefreshRun::Run(None) => true,
            RefreshRun::Run(Some(held)) => self
                .running_lock()
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, held)),
            RefreshRun::Unstarted => !self.stopped.load(Ordering::SeqCst),
        }
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

    pub fn offers(&self) -> Vec<OfferInfo> {
        self.offers_where(|_| true)
    }

    pub fn ready_offers(&self) -> Vec<OfferInfo> {
        self.offers_where(|offer| offer.state == OfferState::Ready)
    }

    /// How many offers are Ready and written so, without encoding any of them.
    pub fn ready_count(&self) -> usize {
        self.lock().written_ready_count()
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

    /// Keeps `problem` as what last went wrong with `server`, for [`Self::status`].
    fn note_problem(&self, server: PublicKey, problem: String) {
        self.lock().problems.insert(server, problem);
    }

    /// Each configured server's connection and last problem, and the Ready offers.
    pub fn status(&self, running: bool) -> ClientStatus {
        let state = self.lock();
        let offer_checks = check::offer_checks(&state.cache, Time::of(&*self.clock));
        let mut status = ClientStatus {
            running,
            ready_offers: count(
                state
                    .cache
                    .offers()
                    .iter()
                    .filter(|offer| offer.state == OfferState::Ready)
                    .count(),
            ),
            wanted_offers: count(self.target_ready),
            servers: self
                .servers
                .iter()
                .map(|server| ServerStatus {
                    server_node_id: OfferInfo::node_id_hex(&server.node_id),
                    connected: state.cache.reachability(&server.node_id) == Reachability::Connected,
                    last_problem: state.problems.get(&server.node_id).cloned(),
                    checks: None,
                })
                .collect(),
            offer_checks,
        };
        for server in &mut status.servers {
            server.checks = check::server_checks(&status.offer_checks, server);
        }
        status
    }

    /// The oldest event the app has not handled.
    pub fn next_event(&self) -> Option<QueuedEvent> {
        self.events.next_event()
    }

    /// Every event not handled yet, oldest first, none given to the app.
    pub fn waiting_events(&self) -> Vec<QueuedEvent> {
        self.events.waiting_events()
    }

    /// Removes the event `id`, handled by the app; written before it returns.
    pub fn event_handled(&self, id: u64) -> Result<(), Error> {
        // An event kept in memory only is handled without the data dir: an app extension
        // holding it holds up only the events whose records must go. (A reload, which takes
        // the lock, never gives a record to an event without one.)
        let _held = match self.events.is_stored(id) {
            true => self.hold_data_dir()?,
            false => None,
        };
        self.events.event_handled(id).map(|_| ())
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
}

/// `n` as the `u32` counts the app gets (they never come near its limit).
fn count(n: usize) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
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
