//! The UniFFI surface of the Kotlin and Swift SDKs, thin over [`crate::AsyncOffersClient`].
//!
//! Plain records and enums (keys and paths as hex, times as seconds since the Unix epoch), one
//! error enum, the client object, and two traits the app implements: [`OfferListener`] for
//! live events and [`LogWriter`] for the SDK's log records. Calls that may wait (for the data
//! dir's lock, a disk write, the network) say so, and have `async` forms that wait on an SDK
//! thread: [`AsyncOffers::open`], [`AsyncOffers::take_offer_async`],
//! [`AsyncOffers::offer_for_async`], [`AsyncOffers::wait_for_ready_offers`],
//! [`AsyncOffers::wait_next_event`].

mod logging;

use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::secp256k1::PublicKey;

use crate::config;

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

/// A channel of the wallet node with its LSP; see [`crate::ChannelHint`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChannelHint {
    /// The LSP's node id, hex.
    pub lsp_node_id: String,
    /// The channel's short channel id (or an alias the LSP recognizes).
    pub short_channel_id: u64,
    /// The LSP's base fee for forwarding over this channel.
    pub fee_base_msat: u32,
    /// The LSP's proportional fee, in millionths.
    pub fee_proportional_millionths: u32,
    /// The LSP's CLTV expiry delta for this channel.
    pub cltv_expiry_delta: u16,
    /// Smallest HTLC the channel accepts towards the wallet.
    pub htlc_minimum_msat: u64,
    /// Largest HTLC the channel accepts towards the wallet.
    pub htlc_maximum_msat: u64,
}

impl TryFrom<ChannelHint> for crate::ChannelHint {
    type Error = OffersError;

    fn try_from(hint: ChannelHint) -> Result<Self, OffersError> {
        Ok(Self {
            lsp_node_id: parse_node_id(&hint.lsp_node_id, "channel hint LSP node id")?,
            short_channel_id: hint.short_channel_id,
            fee_base_msat: hint.fee_base_msat,
            fee_proportional_millionths: hint.fee_proportional_millionths,
            cltv_expiry_delta: hint.cltv_expiry_delta,
            htlc_minimum_msat: hint.htlc_minimum_msat,
            htlc_maximum_msat: hint.htlc_maximum_msat,
        })
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

/// Everything the client needs; see [`crate::Config`] for what each value does. Create it with
/// [`default_config`] and change what you need.
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
    pub offer_slots: u16,
    /// A ready offer older than this many seconds is replaced.
    pub ready_offer_max_age_secs: u64,
    /// A handed-out offer's invoice is rebuilt after this many seconds.
    pub invoice_refresh_interval_secs: u64,
    /// Offer paths must stay valid at least this many seconds; more than
    /// `offer_expiring_notice_secs`.
    pub min_offer_paths_lifetime_secs: u64,
    /// Maintenance period, in milliseconds: seconds or more in an app, at least 10.
    pub tick_interval_ms: u64,
    /// The wallet node's channels, for the invoices' payment paths.
    pub channel_hints: Vec<ChannelHint>,
    /// The most messages sent to the server in a minute; the rest wait.
    pub max_messages_per_minute: u32,
    /// How many seconds before a handed-out offer expires `OfferExpiring` is sent.
    pub offer_expiring_notice_secs: u64,
    /// The lowest server slot new offers are drawn from (0 unless the server limits them).
    pub invoice_slot_min: u16,
    /// The highest server slot new offers are drawn from (65535 unless the server limits them).
    pub invoice_slot_max: u16,
    /// How many seconds a handed-out offer is kept after it expires by the device's clock
    /// (live again if the clock is put right meanwhile).
    pub expired_offer_retention_secs: u64,
    /// How many milliseconds building, `start` and each hand-out of a stopped client wait for
    /// another client (this process or another: an app extension, a second process) to let go
    /// of the data dir before failing with `DataDirInUse`. 0 fails at once.
    pub data_dir_lock_wait_ms: u64,
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
        offer_slots: config::DEFAULT_OFFER_SLOTS,
        ready_offer_max_age_secs: config::DEFAULT_READY_OFFER_MAX_AGE.as_secs(),
        invoice_refresh_interval_secs: config::DEFAULT_INVOICE_REFRESH_INTERVAL.as_secs(),
        min_offer_paths_lifetime_secs: config::DEFAULT_MIN_OFFER_PATHS_LIFETIME.as_secs(),
        tick_interval_ms: config::DEFAULT_TICK_INTERVAL.as_millis() as u64,
        channel_hints: Vec::new(),
        max_messages_per_minute: config::DEFAULT_MAX_MESSAGES_PER_MINUTE,
        offer_expiring_notice_secs: config::DEFAULT_OFFER_EXPIRING_NOTICE.as_secs(),
        invoice_slot_min: 0,
        invoice_slot_max: u16::MAX,
        expired_offer_retention_secs: config::DEFAULT_EXPIRED_OFFER_RETENTION.as_secs(),
        data_dir_lock_wait_ms: 0,
    }
}

impl TryFrom<OffersConfig> for crate::Config {
    type Error = OffersError;

    fn try_from(config: OffersConfig) -> Result<Self, OffersError> {
        let mut servers = config.servers.iter().map(|server| {
            crate::ServerConfig::from_hex(&server.node_id, &server.address, &server.paths_hex)
        });
        let first = servers.next().ok_or_else(|| {
            OffersError::InvalidConfig("no static invoice server in the config".into())
        })??;
        let mut core = crate::Config::new(config.network.into(), &config.data_dir, first);
        for server in servers {
            core.servers.push(server?);
        }
        core.offer_slots = config.offer_slots;
        core.ready_offer_max_age = Duration::from_secs(config.ready_offer_max_age_secs);
        core.invoice_refresh_interval = Duration::from_secs(config.invoice_refresh_interval_secs);
        core.min_offer_paths_lifetime = Duration::from_secs(config.min_offer_paths_lifetime_secs);
        core.tick_interval = Duration::from_millis(config.tick_interval_ms);
        core.max_messages_per_minute = config.max_messages_per_minute;
        core.offer_expiring_notice = Duration::from_secs(config.offer_expiring_notice_secs);
        core.invoice_slots = config.invoice_slot_min..=config.invoice_slot_max;
        core.expired_offer_retention = Duration::from_secs(config.expired_offer_retention_secs);
        core.channel_hints = config
            .channel_hints
            .into_iter()
            .map(crate::ChannelHint::try_from)
            .collect::<Result<_, _>>()?;
        Ok(core)
    }
}

/// What importing an offer book did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ImportedOffers {
    /// Offers of the book now handed out here.
    pub imported: u32,
    /// Offers of the book already handed out here.
    pub already_here: u32,
    /// Offers not imported: an offer handed out here holds their slot.
    pub conflicting: u32,
}

impl From<crate::ImportedOffers> for ImportedOffers {
    fn from(imported: crate::ImportedOffers) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            imported: count(imported.imported),
            already_here: count(imported.already_here),
            conflicting: count(imported.conflicting),
        }
    }
}

/// What the client is doing; see [`crate::ClientStatus`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ClientStatus {
    /// Whether `start` was called and not stopped since.
    pub running: bool,
    /// How many offers are ready.
    pub ready_offers: u32,
    /// How many ready offers the config wants.
    pub wanted_offers: u32,
    /// Each configured server, in the config's order.
    pub servers: Vec<ServerStatus>,
}

/// One server as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ServerStatus {
    /// Its node id, hex.
    pub server_node_id: String,
    /// Whether the connection to it is up.
    pub connected: bool,
    /// What last went wrong with it (its offer paths refused and why, a failed connection, a
    /// stale invoice), until an invoice of it is confirmed again.
    pub last_problem: Option<String>,
}

impl From<crate::ClientStatus> for ClientStatus {
    fn from(status: crate::ClientStatus) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            running: status.running,
            ready_offers: count(status.ready_offers),
            wanted_offers: count(status.wanted_offers),
            servers: status
                .servers
                .into_iter()
                .map(|server| ServerStatus {
                    server_node_id: server.server_node_id,
                    connected: server.connected,
                    last_problem: server.last_problem,
                })
                .collect(),
        }
    }
}

/// Where an offer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum OfferState {
    /// Built and sent to the server, not yet confirmed.
    Pending,
    /// Confirmed by the server and never handed out.
    Ready,
    /// Handed out; kept and refreshed until it expires.
    Used,
}

/// One offer, as the app sees it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Offer {
    /// The node id (hex) of the server holding its invoice.
    pub server_node_id: String,
    /// The server slot holding its invoice.
    pub slot: u16,
    /// Where it is in its life.
    pub state: OfferState,
    /// The offer, bech32 (`lno1…`).
    pub offer: String,
    /// The offer id, hex.
    pub offer_id: String,
    /// The label given when it was handed out.
    pub label: Option<String>,
    /// When it was built, seconds since the Unix epoch.
    pub created_at_secs: u64,
    /// When it expires, seconds since the Unix epoch; `None` never.
    pub expires_at_secs: Option<u64>,
    /// When the server last confirmed it stores an invoice of this offer, seconds since the
    /// Unix epoch by this device's clock; `None` never (or not recorded by earlier releases).
    pub invoice_confirmed_at_secs: Option<u64>,
}

impl From<crate::OfferInfo> for Offer {
    fn from(info: crate::OfferInfo) -> Self {
        Self {
            server_node_id: info.server_node_id,
            slot: info.slot,
            state: match info.state {
                crate::OfferState::Pending => OfferState::Pending,
                crate::OfferState::Ready => OfferState::Ready,
                crate::OfferState::Used => OfferState::Used,
            },
            offer: info.offer,
            offer_id: info.offer_id,
            label: info.label,
            created_at_secs: info.created_at.as_secs(),
            expires_at_secs: info.expires_at.map(|at| at.as_secs()),
            invoice_confirmed_at_secs: info.invoice_confirmed_at.map(|at| at.as_secs()),
        }
    }
}

/// What happened; see [`crate::Event`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum OfferEvent {
    /// A new offer is ready to hand out.
    OfferReady {
        /// The offer.
        offer: Offer,
    },
    /// A stale ready offer was dropped for a fresh one.
    OfferReplaced {
        /// The dropped offer's id.
        old_offer_id: String,
        /// Its replacement.
        new_offer: Offer,
    },
    /// A handed-out offer expires soon: publish another (`offerFor` gives its label a fresh one).
    OfferExpiring {
        /// The offer, with its label and expiry.
        offer: Offer,
    },
    /// An offer expired by the device's clock: a ready one is removed; a handed-out one is
    /// kept (not refreshed) for `expiredOfferRetentionSecs`, live again if the clock is put right.
    OfferExpired {
        /// Its id.
        offer_id: String,
    },
    /// The server stored a fresh invoice for an offer.
    InvoiceRefreshed {
        /// Its id.
        offer_id: String,
    },
    /// A handed-out offer has gone an hour past its refresh interval without a confirmed fresh
    /// invoice; sent once until one is confirmed. The client keeps trying.
    InvoiceRefreshFailed {
        /// The offer, with when its invoice was last confirmed.
        offer: Offer,
        /// Why: the server does not answer, cannot be reached, or the invoice could not be
        /// built or written.
        reason: String,
    },
    /// Connected to a server.
    ServerConnected {
        /// Its node id, hex.
        server_node_id: String,
    },
    /// Lost a server; reconnecting, while the others take over its share of the offers.
    ServerDisconnected {
        /// Its node id, hex.
        server_node_id: String,
    },
    /// A payer's invoice request came through the server and was verified.
    InvoiceRequestForwarded {
        /// The offer it is for.
        offer_id: String,
        /// The amount asked for, if any.
        amount_msats: Option<u64>,
        /// The payer's note, if any.
        payer_note: Option<String>,
    },
}

impl From<crate::Event> for OfferEvent {
    fn from(event: crate::Event) -> Self {
        use crate::Event as E;
        match event {
            E::OfferReady { offer } => Self::OfferReady {
                offer: offer.into(),
            },
            E::OfferReplaced {
                old_offer_id,
                new_offer,
            } => Self::OfferReplaced {
                old_offer_id,
                new_offer: new_offer.into(),
            },
            E::OfferExpiring { offer } => Self::OfferExpiring {
                offer: offer.into(),
            },
            E::OfferExpired { offer_id } => Self::OfferExpired { offer_id },
            E::InvoiceRefreshed { offer_id } => Self::InvoiceRefreshed { offer_id },
            E::InvoiceRefreshFailed { offer, reason } => Self::InvoiceRefreshFailed {
                offer: offer.into(),
                reason,
            },
            E::ServerConnected { server_node_id } => Self::ServerConnected { server_node_id },
            E::ServerDisconnected { server_node_id } => Self::ServerDisconnected { server_node_id },
            E::InvoiceRequestForwarded {
                offer_id,
                amount_msats,
                payer_note,
            } => Self::InvoiceRequestForwarded {
                offer_id,
                amount_msats,
                payer_note,
            },
        }
    }
}

/// Everything that can go wrong; the message says what and where.
#[derive(Debug, uniffi::Error)]
#[uniffi(flat_error)]
pub enum OffersError {
    /// A configuration value is unusable.
    InvalidConfig(String),
    /// An argument of a call is out of range (a negative count or timeout, say); raised by the
    /// Swift SDK's checks, which the Rust core's types make unneeded there.
    InvalidArgument(String),
    /// The server paths are not LDK's encoding of `Vec<BlindedMessagePath>`.
    InvalidServerPaths(String),
    /// No ready offer right now; more are being prepared.
    NoReadyOffer(String),
    /// The client is already running.
    AlreadyStarted(String),
    /// Reading or writing the offers failed.
    Storage(String),
    /// A stored record is corrupt; it was left untouched.
    CorruptStore(String),
    /// Another client (this process or another) holds the data dir.
    DataDirInUse(String),
    /// The bytes to import are not an offer book.
    InvalidOfferBook(String),
    /// A wait ran out of time.
    Timeout(String),
    /// The SDK's runtime is unavailable.
    Runtime(String),
}

impl std::fmt::Display for OffersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Self::InvalidConfig(message)
        | Self::InvalidArgument(message)
        | Self::InvalidServerPaths(message)
        | Self::NoReadyOffer(message)
        | Self::AlreadyStarted(message)
        | Self::Storage(message)
        | Self::CorruptStore(message)
        | Self::DataDirInUse(message)
        | Self::InvalidOfferBook(message)
        | Self::Timeout(message)
        | Self::Runtime(message)) = self;
        f.write_str(message)
    }
}

impl std::error::Error for OffersError {}

impl From<crate::Error> for OffersError {
    fn from(error: crate::Error) -> Self {
        use crate::Error as E;
        let message = error.to_string();
        match error {
            E::InvalidConfig(_) => Self::InvalidConfig(message),
            E::InvalidServerPaths(_) => Self::InvalidServerPaths(message),
            E::NoReadyOffer => Self::NoReadyOffer(message),
            E::AlreadyStarted => Self::AlreadyStarted(message),
            E::Storage(_) => Self::Storage(message),
            E::CorruptStore { .. } => Self::CorruptStore(message),
            E::DataDirInUse(_) => Self::DataDirInUse(message),
            E::InvalidOfferBook(_) => Self::InvalidOfferBook(message),
            E::Timeout => Self::Timeout(message),
            E::Runtime(_) => Self::Runtime(message),
        }
    }
}

/// Runs `work` on the runtime's blocking pool: it may wait for locks and disks, which no
/// foreign caller's thread (a main thread, a coroutine dispatcher) should.
async fn off_the_callers_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OffersError> + Send + 'static,
) -> Result<T, OffersError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OffersError::Runtime(format!("the SDK's worker failed: {e}")))?
}

fn parse_node_id(hex: &str, what: &str) -> Result<PublicKey, OffersError> {
    Vec::<u8>::from_hex(hex.trim())
        .ok()
        .and_then(|bytes| PublicKey::from_slice(&bytes).ok())
        .ok_or_else(|| OffersError::InvalidConfig(format!("{what} is not a hex public key")))
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
    fn on_event(&self, event: OfferEvent) -> Result<(), CallbackError>;
}

/// Hands the core's events to a foreign listener.
struct ForeignListener(Arc<dyn OfferListener>);

impl crate::EventListener for ForeignListener {
    fn on_event(&self, event: crate::Event) {
        if let Err(error) = self.0.on_event(event.into()) {
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
    /// Blocks the calling thread: it may wait up to `dataDirLockWaitMs` for another client of
    /// the data dir (an app extension, a second process) to let go, and up to 10 s for a
    /// stopped client of this process to finish its writes, then reads and decodes every
    /// stored offer (~0.1 ms each). Never call it on the main thread: use [`Self::open`].
    #[uniffi::constructor]
    pub fn new(config: OffersConfig, seed: Vec<u8>) -> Result<Arc<Self>, OffersError> {
        let seed: [u8; 32] = seed.try_into().map_err(|seed: Vec<u8>| {
            OffersError::InvalidConfig(format!("the seed is {} bytes, not 32", seed.len()))
        })?;
        let lock_wait = Duration::from_millis(config.data_dir_lock_wait_ms);
        let client = crate::AsyncOffersClient::builder(config.try_into()?, seed)
            .data_dir_lock_wait(lock_wait)
            .build()?;
        Ok(Arc::new(Self { client }))
    }

    /// As [`Self::new`], without blocking the caller: the waits and the loading run on an SDK
    /// thread (`suspend` in Kotlin, `async` in Swift).
    #[uniffi::constructor]
    pub async fn open(config: OffersConfig, seed: Vec<u8>) -> Result<Arc<Self>, OffersError> {
        off_the_callers_thread(move || Self::new(config, seed)).await
    }

    /// Connects to the server and fills the offers in the background. Returns at once. Holds
    /// the data dir until `stop` (`DataDirInUse` if another client holds it).
    pub fn start(&self) -> Result<(), OffersError> {
        Ok(self.client.start()?)
    }

    /// Disconnects and lets go of the data dir; the offers stay available. Call it before an
    /// iOS app is suspended.
    pub fn stop(&self) {
        self.client.stop()
    }

    /// Every offer, with its state.
    pub fn offers(&self) -> Vec<Offer> {
        self.client.offers().into_iter().map(Offer::from).collect()
    }

    /// The offers ready to hand out.
    pub fn ready_offers(&self) -> Vec<Offer> {
        self.client
            .ready_offers()
            .into_iter()
            .map(Offer::from)
            .collect()
    }

    /// Hands out a ready offer never handed out before, under `label`. Written to disk before
    /// it returns (an fsync, milliseconds; longer on slow flash), and may wait for the data
    /// dir as `new` does if the client is not started: prefer [`Self::take_offer_async`] on
    /// the main thread.
    pub fn take_offer(&self, label: Option<String>) -> Result<Offer, OffersError> {
        Ok(self.client.take_offer(label)?.into())
    }

    /// As [`Self::take_offer`], on an SDK thread.
    pub async fn take_offer_async(
        self: Arc<Self>,
        label: Option<String>,
    ) -> Result<Offer, OffersError> {
        off_the_callers_thread(move || self.take_offer(label)).await
    }

    /// The offer for `label`: the same one every time for the same label, a different one for
    /// each label, never one handed out before under another. A first call for a label writes
    /// as [`Self::take_offer`] does.
    pub fn offer_for(&self, label: String) -> Result<Offer, OffersError> {
        Ok(self.client.offer_for(&label)?.into())
    }

    /// As [`Self::offer_for`], on an SDK thread.
    pub async fn offer_for_async(self: Arc<Self>, label: String) -> Result<Offer, OffersError> {
        off_the_callers_thread(move || self.offer_for(label)).await
    }

    /// The oldest event not handled yet, if any: it stays first until [`Self::event_handled`].
    /// Those that ask the app to act (an offer expiring or expired, a refresh failing, a
    /// payer's request) are kept in the data dir until handled, across restarts.
    pub fn next_event(&self) -> Option<OfferEvent> {
        self.client.next_event().map(OfferEvent::from)
    }

    /// Waits up to `timeout_ms` for an event not handled yet and returns it, as
    /// [`Self::next_event`]; `None` if none came. Bounded, so that a foreign task waiting in a
    /// loop notices its own cancellation.
    pub async fn wait_next_event(&self, timeout_ms: u64) -> Option<OfferEvent> {
        tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.client.wait_next_event(),
        )
        .await
        .ok()
        .map(OfferEvent::from)
    }

    /// The oldest event was handled: the next one comes up. Written before it returns.
    pub fn event_handled(&self) -> Result<(), OffersError> {
        Ok(self.client.event_handled()?)
    }

    /// The handed-out offers as an offer book, bytes for the app's backup.
    pub fn export_offers(&self) -> Result<Vec<u8>, OffersError> {
        Ok(self.client.export_offers()?)
    }

    /// Imports an offer book of another install of this wallet (a restored backup, another
    /// device): its offers are refreshed here and their slots never reused; merged with the
    /// offers here, none is handed out twice.
    pub fn import_offers(&self, book: Vec<u8>) -> Result<ImportedOffers, OffersError> {
        Ok(self.client.import_offers(&book)?.into())
    }

    /// New channel hints: every offer gets a fresh invoice.
    pub fn update_channels(&self, hints: Vec<ChannelHint>) -> Result<(), OffersError> {
        let hints = hints
            .into_iter()
            .map(crate::ChannelHint::try_from)
            .collect::<Result<_, _>>()?;
        Ok(self.client.update_channels(hints)?)
    }

    /// Running or not, the ready offers, each server's connection and what last went wrong
    /// with it. Never blocks.
    pub fn status(&self) -> ClientStatus {
        self.client.status().into()
    }

    /// The wallet node's id, hex.
    pub fn node_id(&self) -> String {
        self.client.node_id().to_string()
    }

    /// Registers a listener for every future event, as it happens.
    pub fn add_listener(&self, listener: Arc<dyn OfferListener>) {
        self.client
            .add_listener(Arc::new(ForeignListener(listener)));
    }

    /// Waits until at least `count` offers are ready, or `timeout_ms` passes.
    pub async fn wait_for_ready_offers(
        &self,
        count: u32,
        timeout_ms: u64,
    ) -> Result<Vec<Offer>, OffersError> {
        let ready = self
            .client
            .wait_for_ready_offers(count as usize, Duration::from_millis(timeout_ms))
            .await?;
        Ok(ready.into_iter().map(Offer::from).collect())
    }
}
