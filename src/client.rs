//! The public client: configuration, lifecycle, offers and events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::cancel::Cancel;
use crate::clock::{Clock, SystemClock};
use crate::config::{ChannelHint, Config};
use crate::events::{
    CheckReport, ClientStatus, EventBus, EventListener, ImportedOffers, ListenerId, OfferInfo,
    QueuedEvent, SyncReport,
};
use crate::flow::{Engine, EngineHost, Offload, SyncBaseline};
use crate::handler::ProtocolHandler;
use crate::io::lock::{unique_nonce, DataDirLock, Releasing};
use crate::io::private_fs::PrivateFilesystemStore;
use crate::io::store::OfferStore;
use crate::io::DynStore;
use crate::keys::WalletKeys;
use crate::net::transport::Transport;
use crate::offers::builder::OfferFactory;
use crate::Error;

/// Keeps a wallet supplied with ready BOLT 12 offers backed by a static invoice server.
///
/// Offers already built are available from [`AsyncOffersClient::new`] on, without network.
/// [`AsyncOffersClient::start`] connects to the server and keeps the cache full and fresh.
pub struct AsyncOffersClient {
    config: Config,
    keys: Arc<WalletKeys>,
    engine: Arc<Engine>,
    events: Arc<EventBus>,
    runtime: RuntimeHandle,
    running: Arc<RunState>,
    /// Counts the calls of [`Self::stop`]: a start waiting for the data dir gives up when it
    /// moves.
    stops: AtomicU64,
    /// Held by each start (the app's, or a sync's) while it takes the data dir's lock, which
    /// may take long: `running`'s own mutex is never held across that wait, so `stop` and a
    /// sync's end never wait for it.
    launches: Mutex<()>,
    /// Numbers the runs.
    runs: AtomicU64,
}

/// A started client's connections and timer.
struct Running {
    /// Turned true to end them.
    stop: watch::Sender<bool>,
    /// Whether the app started it ([`AsyncOffersClient::start`]), not only syncs.
    by_app: bool,
    /// Syncs under way that count on it.
    syncs: u32,
    /// Tells this run from a later one, for the syncs that end after it.
    run: u64,
}

/// The client's run, if any, and whether it has one as last settled: what `status` reads, so
/// that it never waits for a start taking the data dir's lock.
#[derive(Default)]
struct RunState {
    current: Mutex<Option<Running>>,
    published: AtomicBool,
}

impl RunState {
    /// The run, to read or change; whether there is one is published when the guard goes.
    fn lock(&self) -> RunGuard<'_> {
        RunGuard {
            current: self.current.lock().unwrap_or_else(|e| e.into_inner()),
            published: &self.published,
        }
    }

    fn is_running(&self) -> bool {
        self.published.load(Ordering::SeqCst)
    }
}

struct RunGuard<'a> {
    current: MutexGuard<'a, Option<Running>>,
    published: &'a AtomicBool,
}

impl std::ops::Deref for RunGuard<'_> {
    type Target = Option<Running>;
    fn deref(&self) -> &Self::Target {
        &self.current
    }
}

impl std::ops::DerefMut for RunGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.current
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.published
            .store(self.current.is_some(), Ordering::SeqCst);
    }
}

/// What a start (or a sync's) that [`AsyncOffersClient::stop`] ended returns.
fn stopped_while_starting() -> Error {
    Error::DataDirInUse("the client was stopped while it started".into())
}

/// Ends a run: the connections close, and the data dir is let go of once the writes under way
/// are done, which the returned [`Releasing`] tells.
fn end_run(running: Running, engine: &Engine) -> Option<Releasing> {
    let _ = running.stop.send(true);
    engine.stop_running()
}

enum RuntimeHandle {
    Owned(Option<Runtime>),
    Borrowed(Handle),
}

impl RuntimeHandle {
    fn handle(&self) -> Result<Handle, Error> {
        match self {
            RuntimeHandle::Owned(Some(runtime)) => Ok(runtime.handle().clone()),
            RuntimeHandle::Owned(None) => Err(Error::Runtime("runtime already shut down".into())),
            RuntimeHandle::Borrowed(handle) => Ok(handle.clone()),
        }
    }
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        if let RuntimeHandle::Owned(runtime) = self {
            // Never blocks, so dropping a client, or failing to build one, inside async code
            // is fine.
            if let Some(runtime) = runtime.take() {
                runtime.shutdown_background();
            }
        }
    }
}

impl Drop for AsyncOffersClient {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ways to build a client beyond the defaults.
pub struct ClientBuilder {
    config: Config,
    seed: [u8; 32],
    store: Option<Arc<DynStore>>,
    clock: Arc<dyn Clock>,
    runtime: Option<Handle>,
    lock_wait: Duration,
}

impl ClientBuilder {
    /// How long building, [`AsyncOffersClient::start`] and each hand-out of a client that is
    /// not running wait for another client (in this process or another) to let go of the data
    /// dir before failing with [`Error::DataDirInUse`]. Zero (the default) fails at once; a
    /// stopped client of this process finishing its last writes is waited for regardless.
    pub fn data_dir_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Uses `store` instead of a `FilesystemStore` in `config.data_dir`.
    pub fn store(mut self, store: Arc<DynStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `clock` for all time decisions (tests move it by hand).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs on the caller's tokio runtime instead of one the client owns.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// As [`Self::build`], on the tokio runtime's blocking pool, so that an async caller's
    /// thread never waits on the data dir's lock or the disk.
    pub async fn build_async(self) -> Result<AsyncOffersClient, Error> {
        tokio::task::spawn_blocking(move || self.build())
            .await
            .map_err(|e| Error::Runtime(format!("building the client failed: {e}")))?
    }

    /// Loads the stored offers and builds the client. No network, but it blocks: it waits for
    /// the data dir's lock (up to [`Self::data_dir_lock_wait`] for another client, up to 10 s
    /// for a stopped client of this process to finish its writes), then reads and decodes
    /// every stored offer (~0.1 ms each). From async code, use [`Self::build_async`].
    pub fn build(self) -> Result<AsyncOffersClient, Error> {
        let ClientBuilder {
            config,
            seed,
            store,
            clock,
            runtime,
            lock_wait,
        } = self;
        config.validate()?;
        // The lock file lives in the data dir whatever the store.
        private_dir(&config.data_dir)
            .map_err(|e| Error::Storage(format!("preparing {}: {e}", config.data_dir.display())))?;
        let store = store.unwrap_or_else(|| {
            Arc::new(PrivateFilesystemStore::new(config.data_dir.clone())) as Arc<DynStore>
        });
        let store = OfferStore::new(store);
        let keys = Arc::new(WalletKeys::from_seed(&seed));
        let lock = DataDirLock::new(&config.data_dir, lock_wait, unique_nonce());
        let factory =
            OfferFactory::new(keys.clone(), config.network, config.invoice_request_target);
        let runtime = match runtime {
            Some(handle) => RuntimeHandle::Borrowed(handle),
            None => RuntimeHandle::Owned(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("async-offers")
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Runtime(e.to_string()))?,
            )),
        };
        let blocking_pool = runtime.handle()?;
        let offload: Offload = Arc::new(move |job| {
            blocking_pool.spawn_blocking(job);
        });
        let events = Arc::new(EventBus::new(Some(Arc::new(store.clone()))));
        let engine = Engine::new(
            &config,
            keys.clone(),
            factory,
            store,
            EngineHost {
                clock,
                events: events.clone(),
                offload,
                keyed_slots: true,
                lock: Some(lock),
            },
        )?;
        Ok(AsyncOffersClient {
            config,
            keys,
            engine,
            events,
            runtime,
            running: Arc::default(),
            stops: AtomicU64::new(0),
            launches: Mutex::new(()),
            runs: AtomicU64::new(0),
        })
    }
}

/// Creates `dir` if needed and makes it the owner's alone (mode 0700 on Unix), so the offer
/// records inside (labels name the app's contacts) cannot be listed or read by other users,
/// whatever mode the store gives the files themselves.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            log::info!(
                "{} was open to other users (mode {:o}); now 0700",
                dir.display(),
                mode & 0o777
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

impl AsyncOffersClient {
    /// A client for `config` and the wallet's 32-byte seed (the one its LDK node gives
    /// `KeysManager::new`), with a filesystem store in `config.data_dir` and its own runtime.
    pub fn new(config: Config, seed: [u8; 32]) -> Result<Self, Error> {
        Self::builder(config, seed).build()
    }

    /// A builder for a custom store, clock or runtime.
    pub fn builder(config: Config, seed: [u8; 32]) -> ClientBuilder {
        ClientBuilder {
            config,
            seed,
            store: None,
            clock: Arc::new(SystemClock),
            runtime: None,
            lock_wait: Duration::ZERO,
        }
    }

    /// Connects to every server and keeps the offers filled and fresh. Returns at once. Holds
    /// the data dir until [`Self::stop`]: fails with [`Error::DataDirInUse`] if another client
    /// holds it (within [`ClientBuilder::data_dir_lock_wait`]), and first loads what another
    /// client wrote there since.
    pub fn start(&self) -> Result<(), Error> {
        let stops = self.stops.load(Ordering::SeqCst);
        let _launching = self.launching(stops)?;
        match self.running().as_mut() {
            Some(run) if run.by_app => return Err(Error::AlreadyStarted),
            // Started by a sync under way: now the app's, and left running when it ends.
            Some(run) => {
                run.by_app = true;
                return Ok(());
            }
            None => {}
        }
        let run = self.launch(true, stops)?;
        self.install(run, stops).map(drop)
    }

    /// The right to start a run, once no other start of this client is under way; given up
    /// (as a start's wait for the data dir is) when [`Self::stop`] is called after the caller
    /// read `stops`, or the app cancels the call.
    fn launching(&self, stops: u64) -> Result<MutexGuard<'_, ()>, Error> {
        loop {
            match self.launches.try_lock() {
                Ok(launching) => return Ok(launching),
                Err(std::sync::TryLockError::Poisoned(e)) => return Ok(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if crate::cancel::cancelled_here() {
                return Err(Error::Cancelled);
            }
            if self.stops.load(Ordering::SeqCst) != stops {
                return Err(stopped_while_starting());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Makes `run` the client's, unless [`Self::stop`] was called since the caller read
    /// `stops`: then it ends at once.
    fn install(&self, run: Running, stops: u64) -> Result<RunGuard<'_>, Error> {
        let mut running = self.running();
        // Checked with the mutex held: a stop counted later finds the run installed.
        if self.stops.load(Ordering::SeqCst) != stops {
            drop(running);
            end_run(run, &self.engine);
            return Err(stopped_while_starting());
        }
        *running = Some(run);
        Ok(running)
    }

    /// Takes the data dir and starts the connections and the timer; gives up waiting for the
    /// data dir if [`Self::stop`] is called after the caller read `stops`.
    fn launch(&self, by_app: bool, stops: u64) -> Result<Running, Error> {
        let handle = self.runtime.handle()?;
        let transports = self
            .config
            .servers
            .iter()
            .map(|server| {
                Transport::new(
                    self.engine.clone(),
                    self.keys.transport_keys_manager().clone(),
                    server.node_id,
                    server.address.clone(),
                    self.config.network,
                    self.config.tick_interval,
                )
                .ok_or_else(|| Error::Runtime("a configured server unknown to the engine".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.engine
            .start_running(&|| self.stops.load(Ordering::SeqCst) != stops)?;
        let (stop, stopped) = watch::channel(false);
        for transport in transports {
            handle.spawn(transport.run(stopped.clone()));
        }
        handle.spawn(maintain(
            self.engine.clone(),
            self.config.tick_interval,
            stopped,
        ));
        Ok(Running {
            stop,
            by_app,
            syncs: 0,
            run: self.runs.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn running(&self) -> RunGuard<'_> {
        self.running.lock()
    }

    /// Disconnects, and lets go of the data dir once the writes under way are done (within
    /// milliseconds; never while the app is idle, which iOS requires of files in shared
    /// containers). Offers stay available; `start` may be called again. A sync under way
    /// returns at once with what it got done; a start or sync's start under way (waiting for
    /// another client to let go of the data dir, or loading what it wrote) gives up with
    /// [`Error::DataDirInUse`].
    pub fn stop(&self) {
        // First, so that a start waiting for the data dir gives up and lets the run go.
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.engine.mark_stopped();
        if let Some(running) = self.running().take() {
            end_run(running, &self.engine);
        }
    }

    /// Does in one short background window (an iOS `BGAppRefreshTask`'s 30 seconds, an
    /// Android worker's few minutes) what a started client does over time, and returns by
    /// `timeout` (`Duration::MAX`, or any too long to add to the clock: no limit) with a
    /// report: connects if the client is not started, fills the missing
    /// Ready offers, sends the invoices due for a refresh, checks the handed-out offers due a
    /// check ([`Config::offer_check_interval`]), and waits until the servers confirmed each and
    /// the records are written; then disconnects if it connected.
    /// Nothing counts as done before it is on disk, so an app suspended right after it
    /// returns loses nothing it reported; and if it started the client, it returns once the
    /// data dir is let go of (iOS kills an app suspended holding a lock in a shared
    /// container). Dropping the future ends the sync as its timeout would, at once, the data
    /// dir let go of once the writes under way are done, as [`Self::stop`] does.
    ///
    /// Starting a client that is not started takes the data dir as [`Self::start`] does (and
    /// fails as it does: [`Error::DataDirInUse`]). That part blocks for as long as taking the
    /// lock does (see [`ClientBuilder::data_dir_lock_wait`]), on a runtime worker that tokio
    /// is told will block when the runtime has several, and the sync's waiting never blocks.
    pub async fn sync(&self, timeout: Duration) -> Result<SyncReport, Error> {
        let began = tokio::time::Instant::now();
        let sync = blocking_section(|| self.begin_sync())?;
        self.finish_sync(sync, began, timeout, &Cancel::default())
            .await
    }

    /// The blocking start of a [`Self::sync`]: the client started (or counted on), and a
    /// maintenance tick done now, so that due refreshes leave at once and the first report
    /// counts nothing already expired.
    pub(crate) fn begin_sync(&self) -> Result<SyncRun, Error> {
        let stops = self.stops.load(Ordering::SeqCst);
        let _launching = self.launching(stops)?;
        let mut running = self.running();
        let was_running = running.is_some();
        if !was_running {
            drop(running);
            let run = self.launch(false, stops)?;
            running = self.install(run, stops)?;
        }
        let run = running.as_mut().expect("started above");
        run.syncs += 1;
        let sync = SyncRun {
            running: self.running.clone(),
            engine: self.engine.clone(),
            run: run.run,
            baseline: self.engine.sync_baseline(),
            ended: false,
        };
        drop(running);
        // Now, whether the run is new or not: what is due (expiry, refreshes, checks) is
        // planned before the first report, which would otherwise count what has expired.
        self.engine.on_tick();
        Ok(sync)
    }

    /// The waiting part of a [`Self::sync`] begun at `began`: until all is done and written,
    /// the run ends, `timeout` passes or `cancel` is cancelled ([`Error::Cancelled`]); then,
    /// if the run ends with it, until the data dir is let go of.
    pub(crate) async fn finish_sync(
        &self,
        sync: SyncRun,
        began: tokio::time::Instant,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<SyncReport, Error> {
        self.run_until_done(sync, began, timeout, cancel, |sync, elapsed| {
            let report = self.engine.sync_report(&sync.baseline, elapsed);
            (report.complete, report)
        })
        .await
    }

    /// Checks every handed-out offer now as a payer sees it, and returns by `timeout` with a
    /// report: the app's "check my offers", a support tool. Each offer's static invoice is
    /// fetched from its server over the offer's own paths and compared with the invoice the
    /// server confirmed last. Found served as confirmed, the offer is verified
    /// ([`OfferInfo::verified_at`]); found missing or older (the server lost or rolled back
    /// its store), its invoice is served again and checked again once confirmed; found
    /// holding another offer's invoice, it is broken ([`Event::OfferBroken`](crate::Event::OfferBroken)).
    /// Connects if the client is not started, and disconnects after, as [`Self::sync`] does.
    /// [`Config::offer_check_interval`] has the running client do the same for each offer on
    /// its own, spread over the interval.
    pub async fn check_offers(&self, timeout: Duration) -> Result<CheckReport, Error> {
        let began = tokio::time::Instant::now();
        let sync = blocking_section(|| self.begin_sync())?;
        self.finish_check(sync, began, timeout, &Cancel::default())
            .await
    }

    /// The waiting part of a [`Self::check_offers`], as [`Self::finish_sync`].
    pub(crate) async fn finish_check(
        &self,
        sync: SyncRun,
        began: tokio::time::Instant,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<CheckReport, Error> {
        let asked = self.engine.ask_checks();
        self.run_until_done(sync, began, timeout, cancel, |_, elapsed| {
            let report = self.engine.check_report(&asked, elapsed);
            (report.complete, report)
        })
        .await
    }

    /// Waits until `report` says done (it gives whether, and the report), the run of `sync`
    /// ends, `timeout` passes from `began`, or `cancel` is cancelled ([`Error::Cancelled`]);
    /// then, if the run ends with it, until the data dir is let go of.
    async fn run_until_done<R>(
        &self,
        sync: SyncRun,
        began: tokio::time::Instant,
        timeout: Duration,
        cancel: &Cancel,
        report: impl Fn(&SyncRun, Duration) -> (bool, R),
    ) -> Result<R, Error> {
        // `None`: no limit (a timeout too long to add to the clock, `Duration::MAX` say).
        let deadline = began.checked_add(timeout);
        let mut changes = self.events.watch();
        // Events wake the wait as confirmations are written; the poll notices what comes
        // without one (a write that failed, a check the server did not answer) and the
        // deadline.
        let poll = self.config.tick_interval.min(Duration::from_millis(250));
        let outcome = loop {
            self.engine.time_out_checks();
            let (done, report) = report(&sync, began.elapsed());
            let past_deadline = deadline.is_some_and(|at| tokio::time::Instant::now() >= at);
            if done || !sync.still_running() || past_deadline {
                break Ok(report);
            }
            let wake = tokio::time::Instant::now() + poll;
            let wake = deadline.map_or(wake, |at| wake.min(at));
            tokio::select! {
                _ = cancel.cancelled() => break Err(Error::Cancelled),
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(wake).await;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        };
        if let Some(releasing) = sync.end() {
            releasing.released().await;
        }
        outcome
    }

    /// Every offer with its state.
    pub fn offers(&self) -> Vec<OfferInfo> {
        self.engine.offers()
    }

    /// The offers that are Ready (confirmed by the server, never handed out).
    pub fn ready_offers(&self) -> Vec<OfferInfo> {
        self.engine.ready_offers()
    }

    /// Hands out a Ready offer never handed out before, labelled `label`. It is persisted as
    /// Used before it is returned (an fsync: milliseconds, more on slow flash; a client that
    /// is not started also takes the data dir's lock), and a replacement is requested at once.
    /// Nothing else waits for that write.
    pub fn take_offer(&self, label: Option<String>) -> Result<OfferInfo, Error> {
        self.engine.take_offer(label)
    }

    /// The offer for `label` (a contact, a profile, a point of sale): the same offer every time
    /// for the same label, across restarts, for as long as it lives; a different one for each
    /// label, never one handed out before under another. The first call for a label hands out
    /// a Ready offer like [`Self::take_offer`] with that label, whose labels it shares. Labels
    /// never leave the device.
    pub fn offer_for(&self, label: &str) -> Result<OfferInfo, Error> {
        self.engine.offer_for(label)
    }

    /// The handed-out offers, with their states, slots, labels and what their refreshes need,
    /// as an offer book: bytes for the app's backup. Ready offers are left out: another
    /// install may hand them out only if this one never does.
    pub fn export_offers(&self) -> Result<Vec<u8>, Error> {
        self.engine.export_offers()
    }

    /// Imports an offer book from [`Self::export_offers`] of an install of this wallet (a
    /// restored backup, another device): its offers are refreshed here from now on and their
    /// slots never reused. Offers this client already has are merged, never handed out twice.
    /// Written before it returns. A book that is not one, or not this wallet's (an offer whose
    /// signing key this seed does not derive on this network), is refused with
    /// [`Error::InvalidOfferBook`] and changes nothing. A write that fails returns
    /// [`Error::Storage`] and leaves the offers not yet written unimported (a Ready offer that
    /// made way for one waits for its server to confirm its invoice again): import the book
    /// again (those written count as `already_here`).
    pub fn import_offers(&self, book: &[u8]) -> Result<ImportedOffers, Error> {
        self.engine.import_offers(book)
    }

    /// Replaces the channel hints; every offer (Pending, Ready and handed out) gets a fresh
    /// invoice now, on the server that holds it, rebuilt one at a time off the caller's
    /// thread (a [`Self::stop`] meanwhile ends that at the next offer; the next start or sync
    /// rebuilds the rest). A hint no payment could use is refused with
    /// [`Error::InvalidConfig`] naming it, and the hints stay as they were.
    pub fn update_channels(&self, hints: Vec<ChannelHint>) -> Result<(), Error> {
        self.engine.update_channels(hints)
    }

    /// The chain's tip height, as the wallet's node last saw it: invoices built from now on
    /// cap their payments' CLTV expiry from it rather than from an estimate off the clock
    /// (wrong when the clock is). Those already built keep theirs until their next refresh.
    pub fn set_best_block_height(&self, height: u32) {
        self.engine.set_best_block_height(height)
    }

    /// What the client is doing: running or not, its Ready offers, each server's connection
    /// and what last went wrong with it (offer paths it refused and why, a failed connection).
    /// For an app's diagnostics; never blocks on the network or the disk, nor waits for a
    /// start taking the data dir's lock (it reports the client as it was before).
    pub fn status(&self) -> ClientStatus {
        self.engine.status(self.running.is_running())
    }

    /// The wallet node's id (the node that receives the payments).
    pub fn node_id(&self) -> PublicKey {
        self.keys.wallet_node_id()
    }

    /// The id of the SDK's own connection to the server.
    pub fn transport_node_id(&self) -> PublicKey {
        self.keys.transport_node_id()
    }

    /// The protocol handler for the configured server `server_node_id`, to drive this client
    /// over an `OnionMessenger` of your own instead of [`Self::start`]'s TCP connections.
    pub fn protocol_handler(&self, server_node_id: PublicKey) -> Result<ProtocolHandler, Error> {
        if self.engine.outbox_ready(&server_node_id).is_none() {
            return Err(Error::InvalidConfig(format!(
                "{server_node_id} is not a configured server"
            )));
        }
        Ok(ProtocolHandler::new(self.engine.clone(), server_node_id))
    }

    /// Registers a listener for every future event, as it happens (a live feed: what happened
    /// before, or while the app was not running, it never hears; see [`Self::next_event`]).
    /// Listeners are called in the order they were added, on one SDK thread.
    pub fn add_listener(&self, listener: Arc<dyn EventListener>) -> ListenerId {
        self.events.add_listener(listener)
    }

    /// Removes the listener `id` and lets go of it; whether it was registered. The SDK's event
    /// thread calls it for no event that comes after this returns; one it was delivering at
    /// that moment may still reach it.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        self.events.remove_listener(id)
    }

    /// The oldest event the app has not handled yet, if any, with its id; it stays first until
    /// [`Self::event_handled`] is given that id. Events that ask the app to act
    /// ([`Event::asks_the_app_to_act`](crate::Event::asks_the_app_to_act)) are written to the
    /// data dir before they are queued, and wait across restarts; the others live in this
    /// process only. An event returned here stays queued, in its place, until the app handles
    /// it: nothing else removes it. Of the events not given yet, at most 1,024 that ask
    /// nothing wait (past that the oldest goes), and at most 256 forwarded invoice requests
    /// (likewise); notices about an offer are one per offer and kind, never dropped. Never blocks: event records
    /// are written and removed without the queue's lock held.
    pub fn next_event(&self) -> Option<QueuedEvent> {
        self.engine.next_event()
    }

    /// Every event not handled yet, oldest first, for a look (a diagnostics screen, the
    /// command line's `events`): none counts as given to the app, so the queue's limits may
    /// still drop one of those that ask nothing. Handle them through [`Self::next_event`].
    pub fn waiting_events(&self) -> Vec<QueuedEvent> {
        self.engine.waiting_events()
    }

    /// Waits for an event the app has not handled yet and returns it, as [`Self::next_event`].
    pub async fn wait_next_event(&self) -> QueuedEvent {
        self.events.wait_next_event().await
    }

    /// The app handled the event `id` (from [`Self::next_event`]): it leaves the queue, and its
    /// record the data dir, before this returns. An id no longer queued (handled already) is
    /// ignored. For an event kept in the data dir, takes the data dir's lock if the client is
    /// not running (see [`ClientBuilder::data_dir_lock_wait`]); one kept in memory only needs
    /// neither the lock nor a write.
    pub fn event_handled(&self, id: u64) -> Result<(), Error> {
        self.engine.event_handled(id)
    }

    /// Waits until at least `count` offers are Ready, and written so: an app that stops then
    /// finds them at its next start. Or until `timeout` passes.
    pub async fn wait_for_ready_offers(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<OfferInfo>, Error> {
        let mut changes = self.events.watch();
        let wait = async {
            loop {
                // Counted on every event; encoded once, when enough are there.
                if self.engine.ready_count() >= count {
                    return Ok(self.ready_offers());
                }
                if changes.changed().await.is_err() {
                    return Err(Error::Runtime("event bus closed".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout)?
    }
}

/// A sync under way: ends the run it started when it ends, however it ends (returned, or its
/// future dropped), unless the app started the client meanwhile or another sync counts on it.
pub(crate) struct SyncRun {
    running: Arc<RunState>,
    engine: Arc<Engine>,
    run: u64,
    baseline: SyncBaseline,
    /// Counted off its run already.
    ended: bool,
}

impl SyncRun {
    fn still_running(&self) -> bool {
        self.running
            .lock()
            .as_ref()
            .is_some_and(|running| running.run == self.run)
    }
}

impl SyncRun {
    /// Ends the sync: its run too, if no one else counts on it, and then says when the data
    /// dir is let go of.
    fn end(mut self) -> Option<Releasing> {
        self.end_run()
    }

    fn end_run(&mut self) -> Option<Releasing> {
        // Counted off once: `end` leaves nothing for the drop that follows.
        if std::mem::replace(&mut self.ended, true) {
            return None;
        }
        let mut running = self.running.lock();
        let run = running.as_mut().filter(|running| running.run == self.run)?;
        run.syncs -= 1;
        if run.syncs > 0 || run.by_app {
            return None;
        }
        end_run(running.take()?, &self.engine)
    }
}

impl Drop for SyncRun {
    fn drop(&mut self) {
        self.end_run();
    }
}

/// Runs `work`, which may block for a moment, telling tokio first when it runs on a worker of
/// a multi-threaded runtime (so that the worker's other tasks move on); elsewhere it just runs.
fn blocking_section<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The maintenance timer of every server's offers, until `shutdown` turns true.
async fn maintain(engine: Arc<Engine>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A stop wins over a tick due at the same moment: no tick after the run ended.
            biased;
            _ = shutdown.changed() => return,
            _ = ticks.tick() => engine.on_tick(),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use crate::offers::cache::OfferState;
    use crate::test_utils::{offer_fixture, server_key};
    use lightning::bitcoin::Network;
    use lightning::blinded_path::message::{BlindedMessagePath, MessageContext};

    #[test]
    fn a_client_listing_its_offers_from_disk_derives_no_key() {
        // The cold start `examples/bench.rs` measures: deriving a `KeysManager` is a fifth of it.
        let dir = tempfile::tempdir().unwrap();
        let store = OfferStore::new(Arc::new(PrivateFilesystemStore::new(dir.path().into())));
        let fixture = offer_fixture();
        for slot in 0..10 {
            let mut offer = fixture.cached(slot, Duration::from_secs(1_800_000_000), None);
            offer.state = OfferState::Ready;
            store.save(&offer).unwrap();
        }
        // As a filled data dir has it (a new install draws its key from the wallet's keys).
        store.save_install_key(&[9; 32]).unwrap();
        let keys = lightning::sign::KeysManager::new(&[3; 32], 1, 1, true);
        let path = BlindedMessagePath::one_hop(
            server_key(),
            lightning::sign::ReceiveAuthKey([1; 32]),
            MessageContext::Custom(vec![]),
            &keys,
            &lightning::bitcoin::secp256k1::Secp256k1::new(),
        );
        let config = Config::new(
            Network::Regtest,
            dir.path(),
            ServerConfig {
                node_id: server_key(),
                address: "127.0.0.1:9735".into(),
                paths: vec![path],
            },
        );
        let client = AsyncOffersClient::new(config, [1; 32]).unwrap();
        assert_eq!(client.ready_offers().len(), 10);
        client.status();
        assert!(
            !client.keys.any_derived(),
            "a cold start derived a KeysManager it did not need"
        );
    }
}
