//! Shared setup for integration tests: a reference server on 127.0.0.1 and clients of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::{AsyncOffersClient, ChannelHint, Config, Event, EventListener, ServerConfig};
use async_offers_server::{check_invoice_for_offer, Payer, RunningServer, ServerOptions};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::IntroductionNode;
use lightning::offers::offer::Offer;
use lightning::util::persist::KVStoreSync;

pub const SEED: [u8; 32] = [0x11; 32];
pub const WAIT: Duration = Duration::from_secs(30);

pub async fn start_server(data_dir: &Path) -> RunningServer {
    start_server_with(server_options(data_dir, "127.0.0.1:0")).await
}

/// Options for a regtest server in `data_dir` listening on `listen`, to adjust before starting.
pub fn server_options(data_dir: &Path, listen: &str) -> ServerOptions {
    ServerOptions {
        listen: listen.parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        network: Network::Regtest,
        compact_scid: None,
        replay_replies_after: None,
        ignore_invoice_requests: false,
        offer_paths_lifetime: Default::default(),
    }
}

/// Starts a server, retrying for a while if its port is still held by a stopped one.
pub async fn start_server_with(options: ServerOptions) -> RunningServer {
    let mut attempts = 0;
    loop {
        match async_offers_server::start(options.clone()).await {
            Ok(server) => return server,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("server does not start: {e}"),
        }
    }
}

/// What `server` hands the wallet `recipient`: its node id, address and paths.
pub fn server_config(server: &RunningServer, recipient: &[u8]) -> ServerConfig {
    ServerConfig {
        node_id: server.identity().node_id(),
        address: server.local_addr().to_string(),
        paths: server.identity().mint_paths(recipient, None).unwrap(),
    }
}

pub fn config_for(server: &RunningServer, recipient: &[u8], data_dir: &Path) -> Config {
    let mut config = Config::new(Network::Regtest, data_dir, server_config(server, recipient));
    config.tick_interval = Duration::from_millis(200);
    // No check comes due by chance (an offer's point of the day falling in a test's simulated
    // hours) among what a test counts; tests/checks.rs turns them on where it needs them.
    config.offer_check_interval = Duration::ZERO;
    config
}

pub use async_offers::log_to_stderr;

pub fn client(config: Config) -> AsyncOffersClient {
    builder(config).build().expect("client builds")
}

/// A builder for a client of `SEED` on the test's runtime, to adjust before building.
pub fn builder(config: Config) -> async_offers::ClientBuilder {
    log_to_stderr();
    AsyncOffersClient::builder(config, SEED).runtime(tokio::runtime::Handle::current())
}

/// A started client of the wallet `b"wallet"` of `server`, in `data_dir`, once its `slots`
/// offers are Ready; and its config.
pub async fn filled_client(
    server: &RunningServer,
    data_dir: &Path,
    slots: u16,
) -> (Config, AsyncOffersClient) {
    let mut config = config_for(server, b"wallet", data_dir);
    config.ready_offer_target = slots;
    let client = client(config.clone());
    client.start().unwrap();
    client
        .wait_for_ready_offers(usize::from(slots), WAIT)
        .await
        .unwrap();
    (config, client)
}

/// Fetches each offer's static invoice from `server` as a payer would, and checks it.
pub async fn assert_payable(server: &RunningServer, offers: &[async_offers::OfferInfo]) {
    let payer = async_offers_server::Payer::connect(
        server.identity().node_id(),
        &server.local_addr().to_string(),
        Network::Regtest,
    )
    .await
    .expect("payer connects");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    for info in offers {
        let offer: lightning::offers::offer::Offer = info.offer.parse().unwrap();
        let fetched = payer
            .fetch_static_invoice(&offer, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("offer in slot {}: {e}", info.slot));
        async_offers_server::check_invoice_for_offer(&offer, &fetched.invoice, now)
            .unwrap_or_else(|e| panic!("offer in slot {}: {e}", info.slot));
    }
}

/// Hands every event to the test.
pub struct Events(Mutex<mpsc::Sender<Event>>);

impl EventListener for Events {
    fn on_event(&self, event: Event) {
        let _ = self.0.lock().unwrap().send(event);
    }
}

/// A listener to add to a client, and the receiving end of its events.
pub fn events() -> (Arc<Events>, mpsc::Receiver<Event>) {
    let (sender, receiver) = mpsc::channel();
    (Arc::new(Events(Mutex::new(sender))), receiver)
}

/// A channel hint through the LSP whose secret key is `[lsp_secret; 32]`.
pub fn hint(lsp_secret: u8, short_channel_id: u64, fee_base_msat: u32) -> ChannelHint {
    let secret = SecretKey::from_slice(&[lsp_secret; 32]).unwrap();
    ChannelHint {
        lsp_node_id: PublicKey::from_secret_key(&Secp256k1::new(), &secret),
        short_channel_id,
        fee_base_msat,
        fee_proportional_millionths: 100,
        cltv_expiry_delta: 72,
        htlc_minimum_msat: 1_000,
        htlc_maximum_msat: 500_000_000,
    }
}

/// Fetches each offer's static invoice as a payer and checks every payment path is `hint`'s.
pub async fn assert_invoices_pay_over(
    server: &RunningServer,
    offers: &[String],
    hint: &ChannelHint,
) {
    let payer = Payer::connect(
        server.identity().node_id(),
        &server.local_addr().to_string(),
        Network::Regtest,
    )
    .await
    .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    for offer in offers {
        let offer: Offer = offer.parse().unwrap();
        let fetched = payer
            .fetch_static_invoice(&offer, Duration::from_secs(10))
            .await
            .unwrap();
        check_invoice_for_offer(&offer, &fetched.invoice, now).unwrap();
        for path in fetched.invoice.payment_paths() {
            assert_eq!(
                path.introduction_node(),
                &IntroductionNode::NodeId(hint.lsp_node_id)
            );
            assert_eq!(path.payinfo.fee_base_msat, hint.fee_base_msat);
        }
    }
}

/// Collects `InvoiceRefreshed` events until `count` distinct offers were refreshed.
pub fn refreshed(
    events: &mpsc::Receiver<Event>,
    count: usize,
    within: Duration,
) -> HashSet<String> {
    let deadline = std::time::Instant::now() + within;
    let mut offers = HashSet::new();
    while offers.len() < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::InvoiceRefreshed { offer_id }) => {
                offers.insert(offer_id);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    offers
}

/// A filesystem store whose offer-record writes can be slowed (as on slow flash) or refused
/// (as on a full disk), counting those begun and ended; everything else passes through.
pub struct FaultyStore {
    inner: lightning_persister::fs_store::FilesystemStore,
    /// How long each offer-record write takes, in milliseconds.
    pub write_delay_ms: AtomicU64,
    /// While set, offer-record writes fail with "no space left on device".
    pub full: AtomicBool,
    pub writes_begun: AtomicUsize,
    pub writes_ended: AtomicUsize,
}

impl FaultyStore {
    /// A store in `dir`, healthy and quick until told otherwise.
    pub fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            inner: lightning_persister::fs_store::FilesystemStore::new(dir.to_path_buf()),
            write_delay_ms: AtomicU64::new(0),
            full: AtomicBool::new(false),
            writes_begun: AtomicUsize::new(0),
            writes_ended: AtomicUsize::new(0),
        })
    }

    /// The same, each offer-record write taking `delay`.
    pub fn slow(dir: &Path, delay: Duration) -> Arc<Self> {
        let store = Self::new(dir);
        store.set_write_delay(delay);
        store
    }

    pub fn set_write_delay(&self, delay: Duration) {
        self.write_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Offer-record writes begun and not ended.
    pub fn writes_under_way(&self) -> usize {
        self.writes_begun.load(Ordering::SeqCst) - self.writes_ended.load(Ordering::SeqCst)
    }
}

impl KVStoreSync for FaultyStore {
    fn read(&self, primary: &str, secondary: &str, key: &str) -> lightning::io::Result<Vec<u8>> {
        self.inner.read(primary, secondary, key)
    }
    fn write(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        buf: Vec<u8>,
    ) -> lightning::io::Result<()> {
        if secondary != "offers" {
            return self.inner.write(primary, secondary, key, buf);
        }
        self.writes_begun.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(
            self.write_delay_ms.load(Ordering::SeqCst),
        ));
        let written = if self.full.load(Ordering::SeqCst) {
            Err(lightning::io::Error::new(
                lightning::io::ErrorKind::Other,
                "no space left on device",
            ))
        } else {
            self.inner.write(primary, secondary, key, buf)
        };
        self.writes_ended.fetch_add(1, Ordering::SeqCst);
        written
    }
    fn remove(
        &self,
        primary: &str,
        secondary: &str,
        key: &str,
        lazy: bool,
    ) -> lightning::io::Result<()> {
        self.inner.remove(primary, secondary, key, lazy)
    }
    fn list(&self, primary: &str, secondary: &str) -> lightning::io::Result<Vec<String>> {
        self.inner.list(primary, secondary)
    }
}
