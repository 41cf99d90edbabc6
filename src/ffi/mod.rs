//! The UniFFI surface of the Kotlin and Swift SDKs, thin over [`crate::AsyncOffersClient`].
//!
//! The records, enums and error the apps see are the core's own, derived with the `ffi`
//! feature ([`crate::OfferInfo`] as `Offer`, [`crate::Event`] as `OfferEvent`,
//! [`crate::Error`] as `OffersError`, [`crate::ClientStatus`], [`crate::ChannelHint`], ...):
//! node ids travel as hex, times as durations (since the Unix epoch for points in time:
//! `java.time.Duration` in Kotlin, `TimeInterval` in Swift). What is only here: the config
//! (whose core form holds types with no foreign form), the network, the client object, and
//! the two traits the app implements: [`OfferListener`] for live events and [`LogWriter`] for
//! the SDK's log records. Calls that may wait (for the data dir's lock, a disk write, the
//! network) say so, and have `async` forms that wait on an SDK thread: [`AsyncOffers::open`],
//! [`AsyncOffers::take_offer_async`], [`AsyncOffers::offer_for_async`],
//! [`AsyncOffers::wait_for_ready_offers`], [`AsyncOffers::wait_next_event`].

mod logging;

use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::hex::{DisplayHex, FromHex};
use lightning::bitcoin::secp256k1::PublicKey;

use crate::cancel::Cancel;
use crate::{config, ClientStatus, Error, ImportedOffers, OfferInfo as Offer};

pub use logging::{set_log_writer, LogLevel, LogRecord, LogWriter};

/// The Bitcoin network the wallet runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Network {
    /// Mainnet.
    Bitcoin,
    /// Testnet3.
    Testnet,
    /// Testnet4.
    Testnet4,
    /// Signet.
    Signet,
    /// Regtest.
    Regtest,
}

impl From<Network> for lightning::bitcoin::Network {
    fn from(network: Network) -> Self {
        match network {
            Network::Bitcoin => Self::Bitcoin,
            Network::Testnet => Self::Testnet,
            Network::Testnet4 => Self::Testnet4,
            Network::Signet => Self::Signet,
            Network::Regtest => Self::Regtest,
        }
    }
}

/// A static invoice server, in the text forms LSPs hand out; see [`crate::ServerConfig`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct InvoiceServer {
    /// The server's node id, hex.
    pub node_id: String,
    /// `host:port` of the server's Lightning listener.
    pub address: String,
    /// The paths the server gave this wallet: LDK's encoding of `Vec<BlindedMessagePath>`, hex.
    pub paths_hex: String,
}

/// Everything the client needs; each field is the [`crate::Config`] field of the same name.
/// Create it with [`default_config`] and change what you need. Not derived from the core's
/// config, whose data dir, servers, network and slot range have no foreign form; the
/// conversion below names every core field, so a field added there fails to build until it is
/// here too.
#[derive(Clone, Debug, uniffi::Record)]
pub struct OffersConfig {
    /// The wallet's network.
    pub network: Network,
    /// Where the offers are kept (the app's private storage).
    pub data_dir: String,
    /// The static invoice servers: one, or more so that offers keep coming when one is down.
    /// Each offer stays with the server that holds its invoice.
    pub servers: Vec<InvoiceServer>,
    /// How many ready offers to keep, from 1 to 1,000.
    pub ready_offer_target: u16,
    /// A ready offer older than this is replaced.
    pub ready_offer_max_age: Duration,
    /// A handed-out offer's invoice is rebuilt when older than this (a week by default).
    pub invoice_refresh_interval: Duration,
    /// How often each handed-out offer is checked as a payer sees it (`checkOffers` does it
    /// now); zero: only when the app asks.
    pub offer_check_interval: Duration,
    /// Offer paths must stay valid at least this long; longer than `offer_expiring_notice`.
    pub min_offer_paths_lifetime: Duration,
    /// The wallet node's channels, for the invoices' payment paths.
    pub channel_hints: Vec<crate::ChannelHint>,
    /// Maintenance period: seconds or more in an app, at least 10 ms.
    pub tick_interval: Duration,
    /// The chain tip height if the app knows it (else estimated from the clock); only caps
    /// payment CLTV expiries.
    pub best_block_height: Option<u32>,
    /// Where payers' invoice requests for these offers go when the wallet is online: its own
    /// LDK node (the default), or this client (then `InvoiceRequestForwarded` events).
    pub invoice_request_target: crate::InvoiceRequestTarget,
    /// The most messages sent to a server in a minute; the rest wait.
    pub max_messages_per_minute: u32,
    /// How long before a handed-out offer expires `OfferExpiring` is sent (once a fresh offer is
    /// Ready to take its place).
    pub offer_expiring_notice: Duration,
    /// The lowest server slot new offers are drawn from (0 unless the server limits them).
    pub invoice_slot_min: u16,
    /// The highest server slot new offers are drawn from (65535 unless the server limits them).
    pub invoice_slot_max: u16,
    /// How long a handed-out offer is kept after it expires by the device's clock (live again
    /// if the clock is put right meanwhile).
    pub expired_offer_retention: Duration,
    /// How long building, `start` and each hand-out of a stopped client wait for another
    /// client (this process or another: an app extension, a second process) to let go of the
    /// data dir before failing with `DataDirInUse`. Zero fails at once.
    pub data_dir_lock_wait: Duration,
}

/// A configuration with the SDK's defaults for everything but the server and the data dir;
/// add servers to its `servers`.
#[uniffi::export]
pub fn default_config(
    network: Network,
    data_dir: String,
    server_node_id: String,
    server_address: String,
    server_paths_hex: String,
) -> OffersConfig {
    OffersConfig {
        network,
        data_dir,
        servers: vec![InvoiceServer {
            node_id: server_node_id,
            address: server_address,
            paths_hex: server_paths_hex,
        }],
        ready_offer_target: config::DEFAULT_READY_OFFER_TARGET,
        ready_offer_max_age: config::DEFAULT_READY_OFFER_MAX_AGE,
        invoice_refresh_interval: config::DEFAULT_INVOICE_REFRESH_INTERVAL,
        offer_check_interval: config::DEFAULT_OFFER_CHECK_INTERVAL,
        min_offer_paths_lifetime: config::DEFAULT_MIN_OFFER_PATHS_LIFETIME,
        tick_interval: config::DEFAULT_TICK_INTERVAL,
        channel_hints: Vec::new(),
        best_block_height: None,
        invoice_request_target: crate::InvoiceRequestTarget::default(),
        max_messages_per_minute: config::DEFAULT_MAX_MESSAGES_PER_MINUTE,
        offer_expiring_notice: config::DEFAULT_OFFER_EXPIRING_NOTICE,
        invoice_slot_min: 0,
        invoice_slot_max: u16::MAX,
        expired_offer_retention: config::DEFAULT_EXPIRED_OFFER_RETENTION,
        data_dir_lock_wait: Duration::ZERO,
    }
}

impl TryFrom<OffersConfig> for crate::Config {
    type Error = Error;

    fn try_from(config: OffersConfig) -> Result<Self, Error> {
        let servers = config
            .servers
            .iter()
            .map(|server| {
                crate::ServerConfig::from_hex(&server.node_id, &server.address, &server.paths_hex)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(Error::InvalidConfig(
                "no static invoice server in the config".into(),
            ));
        }
        // Every field named, no `..`: a core field the FFI lacks does not build.
        Ok(crate::Config {
            network: config.network.into(),
            data_dir: config.data_dir.into(),
            servers,
            ready_offer_target: config.ready_offer_target,
            ready_offer_max_age: config.ready_offer_max_age,
            invoice_refresh_interval: config.invoice_refresh_interval,
            offer_check_interval: config.offer_check_interval,
            min_offer_paths_lifetime: config.min_offer_paths_lifetime,
            channel_hints: config.channel_hints,
            tick_interval: config.tick_interval,
            best_block_height: config.best_block_height,
            invoice_request_target: config.invoice_request_target,
            max_messages_per_minute: config.max_messages_per_minute,
            offer_expiring_notice: config.offer_expiring_notice,
            invoice_slots: config.invoice_slot_min..=config.invoice_slot_max,
            expired_offer_retention: config.expired_offer_retention,
        })
    }
}

// Node ids travel as hex strings.
uniffi::custom_type!(PublicKey, String, {
    remote,
    lower: |key| key.serialize().as_hex().to_string(),
    try_lift: |hex| {
        Vec::<u8>::from_hex(hex.trim())
            .ok()
            .and_then(|bytes| PublicKey::from_slice(&bytes).ok())
            .ok_or_else(|| uniffi::deps::anyhow::anyhow!("{hex:?} is not a hex public key"))
    },
});

/// Runs `work` on the runtime's blocking pool: it may wait for locks and disks, which no
/// foreign caller's thread (a main thread, a coroutine dispatcher) should. A wait for the data
/// dir's lock in it gives up once `cancel` is cancelled, or this future dropped.
async fn off_the_callers_thread<T: Send + 'static>(
    cancel: &Cancel,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let cancel_if_dropped = cancel.on_drop();
    let in_force = cancel.clone();
    let done = tokio::task::spawn_blocking(move || in_force.run_blocking(work)).await;
    cancel_if_dropped.disarm();
    done.map_err(|e| Error::Runtime(format!("the SDK's worker failed: {e}")))?
}

/// Runs `call` until it returns or `cancel` is cancelled ([`Error::Cancelled`]); dropping
/// `call` ends its waits.
async fn until_cancelled<T>(
    cancel: &Cancel,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Error::Cancelled),
        result = call => result,
    }
}

/// Cancels one call of [`AsyncOffers`] from the app: the Swift SDK makes one for each call
/// it may cancel and cancels it from the task's cancellation handler, because UniFFI's Swift
/// glue cannot drop a Rust future. The call then ends within milliseconds with
/// `OffersError.Cancelled` (the Swift SDK throws `CancellationError`), having let go of the
/// data dir as `stop` would. Kotlin needs none: a cancelled coroutine drops the call.
#[derive(uniffi::Object, Default)]
pub struct CallCancellation(Cancel);

#[uniffi::export]
impl CallCancellation {
    /// A cancellation not cancelled yet.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Cancels the call it was given to; idempotent, and effective even before the call.
    pub fn cancel(&self) {
        self.0.cancel()
    }
}

/// The call's cancel: the app's, or one only a dropped future sets.
fn cancel_of(cancellation: Option<Arc<CallCancellation>>) -> Cancel {
    cancellation.map_or_else(Cancel::default, |cancellation| cancellation.0.clone())
}

/// The seed of the wallet's LDK node, from the form the wallet keeps it in (see
/// [`crate::WalletSeed`]): what [`AsyncOffers::new`] takes is [`Self::keys_manager_seed`].
#[derive(uniffi::Object)]
pub struct WalletSeed(crate::WalletSeed);

#[uniffi::export]
impl WalletSeed {
    /// The 32 bytes an LDK node (not ldk-node) gives `KeysManager::new`.
    #[uniffi::constructor]
    pub fn from_keys_manager_seed(seed: Vec<u8>) -> Result<Arc<Self>, Error> {
        let seed: [u8; 32] = seed.try_into().map_err(|seed: Vec<u8>| {
            Error::InvalidArgument(format!(
                "a KeysManager seed is 32 bytes, not {}",
                seed.len()
            ))
        })?;
        Ok(Arc::new(Self(crate::WalletSeed::from_keys_manager_seed(
            seed,
        ))))
    }

    /// The seed of the ldk-node node made from a BIP39 mnemonic (English words separated by
    /// spaces) and its optional passphrase.
    #[uniffi::constructor]
    pub fn from_ldk_node_mnemonic(
        words: String,
        passphrase: Option<String>,
    ) -> Result<Arc<Self>, Error> {
        crate::WalletSeed::from_ldk_node_mnemonic(&words, passphrase.as_deref())
            .map(|seed| Arc::new(Self(seed)))
    }

    /// The seed of the ldk-node node made from its 64 seed bytes.
    #[uniffi::constructor]
    pub fn from_ldk_node_seed_bytes(seed: Vec<u8>) -> Result<Arc<Self>, Error> {
        let seed: [u8; crate::keys::LDK_NODE_SEED_LEN] =
            seed.try_into().map_err(|seed: Vec<u8>| {
                Error::InvalidArgument(format!("ldk-node's seed is 64 bytes, not {}", seed.len()))
            })?;
        Ok(Arc::new(Self(crate::WalletSeed::from_ldk_node_seed_bytes(
            &seed,
        ))))
    }

    /// The seed of the ldk-node node whose seed file is at `path`.
    #[uniffi::constructor]
    pub fn from_ldk_node_seed_file(path: String) -> Result<Arc<Self>, Error> {
        crate::WalletSeed::from_ldk_node_seed_file(path.as_ref()).map(|seed| Arc::new(Self(seed)))
    }

    /// The 32 bytes to give [`AsyncOffers::new`] (and the node's `KeysManager`).
    pub fn keys_manager_seed(&self) -> Vec<u8> {
        self.0.keys_manager_seed().to_vec()
    }
}

/// What the app's [`OfferListener`] or [`LogWriter`] threw. Any exception becomes one of these
/// rather than a panic; the SDK logs a listener's and ignores a log writer's, and carries on.
#[derive(Debug, uniffi::Error)]
pub enum CallbackError {
    /// The app's code failed; `reason` is what it threw.
    Failed {
        /// The exception, as the foreign language prints it.
        reason: String,
    },
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self::Failed { reason } = self;
        f.write_str(reason)
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(error: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            reason: error.reason,
        }
    }
}

/// The app's listener, called on an SDK thread for every event as it happens: a live feed
/// (what happened before it was added, or while the app was not running, it never hears; the
/// event queue, `nextEvent`/`eventHandled`, keeps that). What it throws is logged and
/// contained: the SDK keeps running and keeps calling it.
#[uniffi::export(with_foreign)]
pub trait OfferListener: Send + Sync {
    /// One event, in order.
    fn on_event(&self, event: crate::Event) -> Result<(), CallbackError>;
}

/// Hands the core's events to a foreign listener.
struct ForeignListener(Arc<dyn OfferListener>);

impl crate::EventListener for ForeignListener {
    fn on_event(&self, event: crate::Event) {
        if let Err(error) = self.0.on_event(event) {
            log::warn!("the app's listener threw on an event: {error}");
        }
    }
}

/// The client: keeps the wallet's offers filled and fresh.
#[derive(uniffi::Object)]
pub struct AsyncOffers {
    client: crate::AsyncOffersClient,
}

#[uniffi::export(async_runtime = "tokio")]
impl AsyncOffers {
    /// A client for `config` and the wallet's 32-byte seed (the one its LDK node gives
    /// `KeysManager::new`). Offers already stored in the data dir are available at once.
    ///
    /// Blocks the calling thread: it may wait up to `dataDirLockWait` for another client of
    /// the data dir (an app extension, a second process) to let go, and up to 10 s for a
    /// stopped client of this process to finish its writes, then reads and decodes every
    /// stored offer (~0.1 ms each). Never call it on the main thread: use [`Self::open`].
    #[uniffi::constructor]
    pub fn new(config: OffersConfig, seed: Vec<u8>) -> Result<Arc<Self>, Error> {
        let seed: [u8; 32] = seed.try_into().map_err(|seed: Vec<u8>| {
            Error::InvalidConfig(format!("the seed is {} bytes, not 32", seed.len()))
        })?;
        let lock_wait = config.data_dir_lock_wait;
        let client = crate::AsyncOffersClient::builder(config.try_into()?, seed)
            .data_dir_lock_wait(lock_wait)
            .build()?;
        Ok(Arc::new(Self { client }))
    }

    /// As [`Self::new`], without blocking the caller: the waits and the loading run on an SDK
    /// thread (`suspend` in Kotlin, `async` in Swift). Cancelled (see [`CallCancellation`]),
    /// it gives up waiting for the data dir, or lets go of it if it was taken.
    #[uniffi::constructor(default(cancellation = None))]
    pub async fn open(
        config: OffersConfig,
        seed: Vec<u8>,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<Arc<Self>, Error> {
        let cancel = cancel_of(cancellation);
        let client = off_the_callers_thread(&cancel, move || Self::new(config, seed)).await?;
        // Dropped if cancelled meanwhile: nothing was handed out, and the data dir is let go.
        match cancel.is_cancelled() {
            true => Err(Error::Cancelled),
            false => Ok(client),
        }
    }

    /// Connects to the server and fills the offers in the background. Returns at once. Holds
    /// the data dir until `stop` (`DataDirInUse` if another client holds it).
    pub fn start(&self) -> Result<(), Error> {
        self.client.start()
    }

    /// Disconnects and lets go of the data dir; the offers stay available. Call it before an
    /// iOS app is suspended.
    pub fn stop(&self) {
        self.client.stop()
    }

    /// Every offer, with its state.
    pub fn offers(&self) -> Vec<Offer> {
        self.client.offers()
    }

    /// The offers ready to hand out.
    pub fn ready_offers(&self) -> Vec<Offer> {
        self.client.ready_offers()
    }

    /// Hands out a ready offer never handed out before, under `label`. Written to disk before
    /// it returns (an fsync, milliseconds; longer on slow flash), and may wait for the data
    /// dir as `new` does if the client is not started: prefer [`Self::take_offer_async`] on
    /// the main thread.
    pub fn take_offer(&self, label: Option<String>) -> Result<Offer, Error> {
        self.client.take_offer(label)
    }

    /// As [`Self::take_offer`], on an SDK thread. Cancelled (see [`CallCancellation`]), it
    /// gives up waiting for the data dir; an offer already being written is returned.
    #[uniffi::method(default(cancellation = None))]
    pub async fn take_offer_async(
        self: Arc<Self>,
        label: Option<String>,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<Offer, Error> {
        off_the_callers_thread(&cancel_of(cancellation), move || self.take_offer(label)).await
    }

    /// The offer for `label`: the same one every time for the same label, a different one for
    /// each label, never one handed out before under another. A first call for a label writes
    /// as [`Self::take_offer`] does.
    pub fn offer_for(&self, label: String) -> Result<Offer, Error> {
        self.client.offer_for(&label)
    }

    /// As [`Self::offer_for`], on an SDK thread; cancelled, as [`Self::take_offer_async`].
    #[uniffi::method(default(cancellation = None))]
    pub async fn offer_for_async(
        self: Arc<Self>,
        label: String,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<Offer, Error> {
        off_the_callers_thread(&cancel_of(cancellation), move || self.offer_for(label)).await
    }

    /// The oldest event not handled yet, if any, with its id: it stays first until
    /// [`Self::event_handled`] is given that id. Those that ask the app to act (an offer
    /// expiring or expired, a refresh failing, a payer's request) are kept in the data dir
    /// until handled, across restarts.
    pub fn next_event(&self) -> Option<crate::QueuedEvent> {
        self.client.next_event()
    }

    /// Waits up to `timeout` for an event not handled yet and returns it, as
    /// [`Self::next_event`]; `None` if none came, or once cancelled (see
    /// [`CallCancellation`]).
    #[uniffi::method(default(cancellation = None))]
    pub async fn wait_next_event(
        &self,
        timeout: Duration,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Option<crate::QueuedEvent> {
        let wait = async {
            Ok(tokio::time::timeout(timeout, self.client.wait_next_event())
                .await
                .ok())
        };
        until_cancelled(&cancel_of(cancellation), wait)
            .await
            .ok()
            .flatten()
    }

    /// The event `id` was handled: it leaves the queue, and its record the data dir, before
    /// this returns. An id no longer queued is ignored.
    pub fn event_handled(&self, id: u64) -> Result<(), Error> {
        self.client.event_handled(id)
    }

    /// As [`Self::event_handled`], on an SDK thread: what the Kotlin and Swift event streams
    /// call, so that the collector's thread (a main thread) never waits for the write or the
    /// data dir. Cancelled (see [`CallCancellation`]), it gives up waiting for the data dir.
    #[uniffi::method(default(cancellation = None))]
    pub async fn event_handled_async(
        self: Arc<Self>,
        id: u64,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<(), Error> {
        off_the_callers_thread(&cancel_of(cancellation), move || self.event_handled(id)).await
    }

    /// The handed-out offers as an offer book, bytes for the app's backup.
    pub fn export_offers(&self) -> Result<Vec<u8>, Error> {
        self.client.export_offers()
    }

    /// Imports an offer book of another install of this wallet (a restored backup, another
    /// device): its offers are refreshed here and their slots never reused; merged with the
    /// offers here, none is handed out twice.
    pub fn import_offers(&self, book: Vec<u8>) -> Result<ImportedOffers, Error> {
        self.client.import_offers(&book)
    }

    /// New channel hints: every offer gets a fresh invoice.
    pub fn update_channels(&self, hints: Vec<crate::ChannelHint>) -> Result<(), Error> {
        self.client.update_channels(hints)
    }

    /// The chain's tip height as the wallet's node last saw it, for the invoices built from
    /// now on (see `bestBlockHeight` in the config). Never blocks.
    pub fn set_best_block_height(&self, height: u32) {
        self.client.set_best_block_height(height)
    }

    /// Running or not, the ready offers, each server's connection and what last went wrong
    /// with it. Never blocks.
    pub fn status(&self) -> ClientStatus {
        self.client.status()
    }

    /// The wallet node's id, hex.
    pub fn node_id(&self) -> String {
        self.client.node_id().to_string()
    }

    /// The id of the SDK's own connection to the servers, hex: not the wallet node's, so a
    /// server that limits who may connect must allow this one.
    pub fn transport_node_id(&self) -> String {
        self.client.transport_node_id().to_string()
    }

    /// Registers a listener for every future event, as it happens; returns its id for
    /// [`Self::remove_listener`]. The SDK holds the listener (and what it captures: the client
    /// too, if it does) until then.
    pub fn add_listener(&self, listener: Arc<dyn OfferListener>) -> u64 {
        self.client
            .add_listener(Arc::new(ForeignListener(listener)))
            .0
    }

    /// Removes the listener `id` (from [`Self::add_listener`]) and lets go of it; whether it
    /// was registered. No event that comes after this returns reaches it.
    pub fn remove_listener(&self, id: u64) -> bool {
        self.client.remove_listener(crate::ListenerId(id))
    }

    /// Does in one short background window (an iOS `BGAppRefreshTask`, an Android worker)
    /// what a started client does over time, and returns by `timeout` with a report:
    /// connects if the client is not started, fills the missing ready offers, sends the
    /// invoices due for a refresh, checks the offers due a check, waits until the server
    /// confirmed each and it is written,
    /// then disconnects if it connected. Nothing counts as done before it is on disk.
    /// `DataDirInUse` if the client is not started and another holds the data dir. Its start
    /// (taking the data dir) runs on an SDK thread, and the rest only waits. Cancelled (see
    /// [`CallCancellation`]; in Kotlin, the coroutine), it ends at once, and lets go of the
    /// data dir as `stop` would if it took it.
    #[uniffi::method(default(cancellation = None))]
    pub async fn sync(
        self: Arc<Self>,
        timeout: Duration,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<crate::SyncReport, Error> {
        let cancel = cancel_of(cancellation);
        let began = tokio::time::Instant::now();
        let client = self.clone();
        let sync = off_the_callers_thread(&cancel, move || client.client.begin_sync()).await?;
        self.client.finish_sync(sync, began, timeout, &cancel).await
    }

    /// Checks every handed-out offer now as a payer sees it, and returns by `timeout` with a
    /// report (see [`crate::AsyncOffersClient::check_offers`]): verified offers get
    /// `verifiedAt`, invoices the server lost are served again, overwritten offers are
    /// `OfferBroken`. Connects if the client is not started, as [`Self::sync`] does; its start
    /// runs on an SDK thread. Cancelled (see [`CallCancellation`]), it ends at once.
    #[uniffi::method(default(cancellation = None))]
    pub async fn check_offers(
        self: Arc<Self>,
        timeout: Duration,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<crate::CheckReport, Error> {
        let cancel = cancel_of(cancellation);
        let began = tokio::time::Instant::now();
        let client = self.clone();
        let sync = off_the_callers_thread(&cancel, move || client.client.begin_sync()).await?;
        self.client
            .finish_check(sync, began, timeout, &cancel)
            .await
    }

    /// Waits until at least `count` offers are ready, or `timeout` passes, or it is cancelled
    /// (see [`CallCancellation`]).
    #[uniffi::method(default(cancellation = None))]
    pub async fn wait_for_ready_offers(
        &self,
        count: u32,
        timeout: Duration,
        cancellation: Option<Arc<CallCancellation>>,
    ) -> Result<Vec<Offer>, Error> {
        let wait = self.client.wait_for_ready_offers(count as usize, timeout);
        until_cancelled(&cancel_of(cancellation), wait).await
    }
}
