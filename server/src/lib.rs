//! Reference static invoice server for async-offers.
//!
//! LDK's own server role (`OffersMessageFlow::handle_offer_paths_request`,
//! `verify_serve_static_invoice_message`, `static_invoice_persisted`, `verify_invoice_request`,
//! `enqueue_static_invoice`, `enqueue_invoice_request_to_forward`) behind a noise TCP listener,
//! with invoices stored in files, and a reference payer ([`Payer`]) that fetches static invoices
//! the way a paying node does. For development, tests and the quickstart; not the product.

mod handler;
mod invoices;
mod payer;
mod router;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::hex::DisplayHex;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::blinded_path::EmptyNodeIdLookUp;
use lightning::chain::BestBlock;
use lightning::ln::msgs::OnionMessageHandler;
use lightning::ln::peer_handler::{
    ErroringMessageHandler, IgnoringMessageHandler, MessageHandler, PeerManager,
};
use lightning::onion_message::messenger::OnionMessenger;
use lightning::sign::{EntropySource, KeysManager, NodeSigner, Recipient};
use lightning::util::logger::{Level, Logger, Record};
use lightning::util::ser::Writeable;
use lightning_net_tokio::SocketDescriptor;
use tokio::sync::watch;

use handler::Faults;
pub use handler::ServerHandler;
pub use invoices::InvoiceStore;
pub use payer::{check_invoice_for_offer, FetchedInvoice, Payer, PAYER_NOTE};
pub use router::ServerRouter;

/// The wall clock, as time since the Unix epoch: the server's one reading of it.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// LDK log records into the `log` facade.
pub struct Log;

impl Logger for Log {
    fn log(&self, record: Record) {
        let level = match record.level {
            Level::Gossip | Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log!(target: "ldk", level, "{}", record.args);
    }
}

type Messenger = OnionMessenger<
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<Log>,
    Arc<EmptyNodeIdLookUp>,
    Arc<ServerRouter>,
    Arc<ServerHandler>,
    Arc<ServerHandler>,
    IgnoringMessageHandler,
    IgnoringMessageHandler,
>;

/// A peer manager that carries only onion messages, handled by `M`.
pub(crate) type OnionPeers<M> = PeerManager<
    SocketDescriptor,
    Arc<ErroringMessageHandler>,
    IgnoringMessageHandler,
    Arc<M>,
    Arc<Log>,
    IgnoringMessageHandler,
    Arc<KeysManager>,
    IgnoringMessageHandler,
>;

type Peers = OnionPeers<Messenger>;

/// An [`OnionPeers`] for `messenger`, with the node keys `keys`.
pub(crate) fn onion_peers<M: OnionMessageHandler>(
    messenger: Arc<M>,
    keys: &Arc<KeysManager>,
) -> Arc<OnionPeers<M>> {
    let now = unix_now();
    Arc::new(PeerManager::new(
        MessageHandler {
            chan_handler: Arc::new(ErroringMessageHandler::new()),
            route_handler: IgnoringMessageHandler {},
            onion_message_handler: messenger,
            custom_message_handler: IgnoringMessageHandler {},
            send_only_message_handler: IgnoringMessageHandler {},
        },
        now.as_secs() as u32,
        &keys.get_secure_random_bytes(),
        Arc::new(Log),
        keys.clone(),
    ))
}

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Where to listen, e.g. `127.0.0.1:0` for an ephemeral port.
    pub listen: SocketAddr,
    /// Holds the server's seed and the stored invoices.
    pub data_dir: PathBuf,
    /// The chain.
    pub network: Network,
    /// Name the server in paths by this short channel id (compact paths), as a public LDK node.
    pub compact_scid: Option<u64>,
    /// Fault injection for tests: send every `OfferPaths` and `StaticInvoicePersisted` twice
    /// more, once at once and once after this delay, as a confused or replaying server might.
    pub replay_replies_after: Option<Duration>,
    /// How long the offer paths handed out (and the offers built on them) stay valid.
    pub offer_paths_lifetime: OfferPathsLifetime,
    /// Fault injection for tests: store and confirm invoices, but answer no invoice request
    /// (neither the invoice nor a forward), as a server whose payer-facing side is broken.
    pub ignore_invoice_requests: bool,
}

/// What a running server has received, for tests that bound what a client costs it.
#[derive(Debug, Default)]
pub struct Received {
    /// Invoice requests that reached the server over an offer's paths.
    pub invoice_requests: std::sync::atomic::AtomicU64,
    /// `ServeStaticInvoice`s (each a 32 KiB onion) verified and queued for storing.
    pub invoices: std::sync::atomic::AtomicU64,
}

/// How long the offer paths a server hands out stay valid. Recipients build their offers on
/// them, so this is how long those offers can be paid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OfferPathsLifetime {
    /// What LDK's own server role hands out: a year.
    #[default]
    Ldk,
    /// This long from the request.
    Fixed(Duration),
    /// Forever: offers without expiry, for a profile bio or a printed QR code.
    Unlimited,
}

/// The server's identity and path minting, without any network.
pub struct ServerIdentity {
    keys: Arc<KeysManager>,
    node_id: PublicKey,
    flow: Arc<handler::Flow>,
    router: Arc<ServerRouter>,
}

impl ServerIdentity {
    /// Loads (or creates) the server seed in `data_dir`.
    pub fn open(
        data_dir: &std::path::Path,
        network: Network,
        compact_scid: Option<u64>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let seed_path = data_dir.join("server_seed");
        let seed: [u8; 32] = match std::fs::read(&seed_path) {
            Ok(bytes) => bytes
                .try_into()
                .map_err(|_| std::io::Error::other("server_seed is not 32 bytes"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed = random_seed()?;
                std::fs::write(&seed_path, seed)?;
                seed
            }
            Err(e) => return Err(e),
        };
        let now = unix_now();
        let keys = Arc::new(KeysManager::new(
            &seed,
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let node_id = keys
            .get_node_id(Recipient::Node)
            .map_err(|()| std::io::Error::other("node id"))?;
        let router = Arc::new(ServerRouter::new(
            node_id,
            keys.clone(),
            network,
            compact_scid,
        ));
        let flow = Arc::new(handler::Flow::new(
            ChainHash::using_genesis_block(network),
            BestBlock::from_network(network),
            node_id,
            now.as_secs() as u32,
            keys.get_expanded_key(),
            keys.get_receive_auth_key(),
            Secp256k1::new(),
            router.clone(),
            Arc::new(Log),
        ));
        Ok(Self {
            keys,
            node_id,
            flow,
            router,
        })
    }

    /// The server's node id.
    pub fn node_id(&self) -> PublicKey {
        self.node_id
    }

    /// Paths a recipient uses to request offer paths, LDK-encoded, hex. `None` expiry: never.
    pub fn mint_paths_hex(
        &self,
        recipient_id: &[u8],
        relative_expiry: Option<Duration>,
    ) -> Result<String, String> {
        self.mint_paths(recipient_id, relative_expiry)
            .map(|paths| paths.encode().as_hex().to_string())
    }

    /// Paths a recipient uses to request offer paths.
    pub fn mint_paths(
        &self,
        recipient_id: &[u8],
        relative_expiry: Option<Duration>,
    ) -> Result<Vec<BlindedMessagePath>, String> {
        self.flow
            .blinded_paths_for_async_recipient(recipient_id.to_vec(), relative_expiry, vec![])
            .map_err(|()| "could not mint paths (recipient id over 1 KiB?)".to_string())
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random_seed() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

/// A server accepting connections until stopped or dropped.
pub struct RunningServer {
    identity: ServerIdentity,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    peers: Arc<Peers>,
    received: Arc<Received>,
}

impl RunningServer {
    /// The identity (node id, path minting).
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What it has received since it started.
    pub fn received(&self) -> &Received {
        &self.received
    }

    /// One JSON line with what a recipient needs: node id, address, paths.
    pub fn recipient_json(&self, recipient_id: &[u8]) -> Result<String, String> {
        let paths = self.identity.mint_paths_hex(recipient_id, None)?;
        Ok(serde_json::json!({
            "node_id": self.identity.node_id.serialize().as_hex().to_string(),
            "address": self.local_addr.to_string(),
            "paths": paths,
        })
        .to_string())
    }

    /// Stops accepting and drops every connection.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.peers.disconnect_all_peers();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a server on the current tokio runtime.
pub async fn start(options: ServerOptions) -> std::io::Result<RunningServer> {
    let identity = ServerIdentity::open(&options.data_dir, options.network, options.compact_scid)?;
    let store = InvoiceStore::new(options.data_dir.join("invoices"));
    let flush = Arc::new(tokio::sync::Notify::new());
    let flush_signal = flush.clone();
    let received = Arc::new(Received::default());
    let handler = Arc::new(ServerHandler::new(
        &identity,
        store,
        options.offer_paths_lifetime,
        Faults {
            replay_after: options.replay_replies_after,
            ignore_invoice_requests: options.ignore_invoice_requests,
        },
        received.clone(),
        move || flush_signal.notify_one(),
    ));
    let messenger = Arc::new(OnionMessenger::new(
        identity.keys.clone(),
        identity.keys.clone(),
        Arc::new(Log),
        Arc::new(EmptyNodeIdLookUp {}),
        identity.router.clone(),
        handler.clone(),
        handler,
        IgnoringMessageHandler {},
        IgnoringMessageHandler {},
    ));
    let peers = onion_peers(messenger, &identity.keys);
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let local_addr = listener.local_addr()?;
    let flush_peers = peers.clone();
    let flusher = tokio::spawn(async move {
        loop {
            flush.notified().await;
            flush_peers.process_events();
        }
    });
    let (stop, mut stopped) = watch::channel(false);
    let accept_peers = peers.clone();
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(Duration::from_secs(10));
        // Never the missed ticks back to back (a stalled process): LDK would take a second
        // tick before any message as an unanswered ping and drop the peer.
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        match stream.into_std() {
                            Ok(stream) => { tokio::spawn(lightning_net_tokio::setup_inbound(accept_peers.clone(), stream)); },
                            Err(e) => log::warn!("accepted socket unusable: {e}"),
                        }
                    },
                    Err(e) => log::warn!("accept failed: {e}"),
                },
                _ = timer.tick() => accept_peers.timer_tick_occurred(),
                _ = stopped.changed() => break,
            }
        }
        flusher.abort();
    });
    log::info!(
        "static invoice server {} listening on {local_addr}",
        identity.node_id
    );
    Ok(RunningServer {
        identity,
        local_addr,
        stop,
        peers,
        received,
    })
}
