//! A deliberately hostile static invoice server for tests: a real LDK node speaking onion
//! messages over TCP that answers like a server when told to, and otherwise replays, forges
//! and floods; with the log capture its tests read the client's rejections from.
// Each test binary including this uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;
use async_offers::{AsyncOffersClient, Config, ManualClock, OfferInfo, ServerConfig};
use async_offers_server::ServerRouter;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, OffersContext,
};
use lightning::blinded_path::EmptyNodeIdLookUp;
use lightning::ln::msgs::{
    BaseMessageHandler, Init, MessageSendEvent, OnionMessage, OnionMessageHandler,
};
use lightning::ln::peer_handler::{
    ErroringMessageHandler, IgnoringMessageHandler, MessageHandler, PeerManager,
};
use lightning::onion_message::async_payments::{
    AsyncPaymentsMessage, AsyncPaymentsMessageHandler, HeldHtlcAvailable, OfferPaths,
    OfferPathsRequest, ReleaseHeldHtlc, ServeStaticInvoice, StaticInvoicePersisted,
};
use lightning::onion_message::messenger::{
    create_onion_message, Destination, MessageRouter, MessageSendInstructions, OnionMessenger,
    Responder, ResponseInstruction,
};
use lightning::sign::{EntropySource, KeysManager, NodeSigner, Recipient};
use lightning::types::features::{InitFeatures, NodeFeatures};
use lightning::util::logger::{Logger, Record};
use lightning_net_tokio::SocketDescriptor;

/// Every log record of this test binary (the client's rejections are checked in it). While
/// a flood runs (alone in its binary), lines are not kept, and ignored confirmations counted.
pub struct Capture {
    pub lines: Mutex<Vec<String>>,
    pub flooding: AtomicBool,
    pub ignored_confirmations: AtomicUsize,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        if line.contains("confirmation") && line.contains("ignored") {
            self.ignored_confirmations.fetch_add(1, Ordering::SeqCst);
        }
        if !self.flooding.load(Ordering::SeqCst) {
            self.lines.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

pub fn logs() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| Capture {
        lines: Mutex::default(),
        flooding: AtomicBool::new(false),
        ignored_confirmations: AtomicUsize::new(0),
    });
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
        // A panic on a runtime or blocking-pool thread would only end that task, unseen.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            report(info);
        }));
    }
    capture
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Panics anywhere in this test binary so far (the tests' own failed assertions included).
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// Waits until a log line after `from` contains every one of `needles` (tests run at once and
/// share the log: name the server).
pub async fn logged(from: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = logs().lines.lock().unwrap()[from..]
            .iter()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return line.clone();
        }
        if Instant::now() > deadline {
            let recent: Vec<String> = {
                let lines = logs().lines.lock().unwrap();
                lines[from.min(lines.len())..]
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect()
            };
            panic!(
                "never logged: {needles:?}; the last lines:\n{}",
                recent.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn log_mark() -> usize {
    logs().lines.lock().unwrap().len()
}

pub struct NoLog;
impl Logger for NoLog {
    fn log(&self, _: Record) {}
}

/// What the hostile server saw and may replay.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(u16, Responder)>,
    pub invoices: Vec<(ServeStaticInvoice, Responder)>,
    pub received: usize,
}

pub struct HostileHandler {
    node_id: PublicKey,
    keys: Arc<KeysManager>,
    /// Answer requests and store invoices as a server does.
    pub honest: AtomicBool,
    /// Store invoices, but answer requests only when the test says so.
    pub silent_on_requests: AtomicBool,
    /// Answer requests, but never confirm an invoice.
    pub never_confirm: AtomicBool,
    /// When the offer paths of honest answers expire (seconds since the epoch; `None`: never).
    pub paths_expiry: Mutex<Option<u64>>,
    /// Offers whose invoices are never confirmed.
    pub never_confirm_offers: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// Hold invoices instead of storing them at once, as a server whose store writes in the
    /// background does: each is stored, and confirmed, when the test releases it.
    pub hold_invoices: AtomicBool,
    held: Mutex<Vec<(ServeStaticInvoice, Responder)>>,
    /// The invoice each offer's slot holds, by offer id: the last one stored.
    pub stored: Mutex<
        std::collections::HashMap<[u8; 32], lightning::offers::static_invoice::StaticInvoice>,
    >,
    seen: Mutex<Seen>,
    outbox: Mutex<VecDeque<(AsyncPaymentsMessage, MessageSendInstructions)>>,
}

impl HostileHandler {
    /// `count` paths to this server, each with `dummy_hops` dummy hops before it.
    pub fn paths(&self, count: usize, dummy_hops: usize) -> Vec<BlindedMessagePath> {
        let secp = Secp256k1::new();
        let context = MessageContext::Offers(OffersContext::StaticInvoiceRequested {
            recipient_id: b"victim".to_vec(),
            invoice_slot: 0,
            path_absolute_expiry: Duration::MAX,
        });
        (0..count)
            .map(|_| {
                BlindedMessagePath::new_with_dummy_hops(
                    &[],
                    self.node_id,
                    dummy_hops,
                    self.keys.get_receive_auth_key(),
                    context.clone(),
                    &*self.keys,
                    &secp,
                )
            })
            .collect()
    }

    pub fn offer_paths(&self, expiry: Option<u64>, count: usize) -> OfferPaths {
        OfferPaths {
            paths: self.paths(count, 0),
            paths_absolute_expiry: expiry,
        }
    }

    /// `count` paths of `hops` dummy hops each: valid, but too long for any stored invoice.
    pub fn long_offer_paths(&self, count: usize, hops: usize) -> OfferPaths {
        OfferPaths {
            paths: self.paths(count, hops),
            paths_absolute_expiry: None,
        }
    }

    pub fn store_reply_context(slot: u16) -> MessageContext {
        MessageContext::AsyncPayments(AsyncPaymentsContext::ServeStaticInvoice {
            recipient_id: b"victim".to_vec(),
            invoice_slot: slot,
            path_absolute_expiry: Duration::MAX,
        })
    }

    /// Stores `message`'s invoice in its offer's slot and confirms it.
    fn store(&self, message: ServeStaticInvoice, responder: Responder) {
        self.stored
            .lock()
            .unwrap()
            .insert(message.invoice.offer_id().0, message.invoice);
        self.send(
            AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
            MessageSendInstructions::ForReply {
                instructions: responder.respond(),
            },
        );
    }

    /// How many invoices of the offer `offer_id` are held, not yet stored.
    pub fn held_of(&self, offer_id: &[u8; 32]) -> usize {
        let held = self.held.lock().unwrap();
        held.iter()
            .filter(|(message, _)| message.invoice.offer_id().0 == *offer_id)
            .count()
    }

    /// Stores and confirms the held invoices, the last received first (out of order).
    pub fn release_held_newest_first(&self) {
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        for (message, responder) in held.into_iter().rev() {
            self.store(message, responder);
        }
    }

    pub fn send(&self, message: AsyncPaymentsMessage, instructions: MessageSendInstructions) {
        self.outbox
            .lock()
            .unwrap()
            .push_back((message, instructions));
    }
}

impl AsyncPaymentsMessageHandler for HostileHandler {
    fn handle_offer_paths_request(
        &self,
        message: OfferPathsRequest,
        _context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) -> Option<(OfferPaths, ResponseInstruction)> {
        let responder = responder?;
        let mut seen = self.seen.lock().unwrap();
        seen.received += 1;
        seen.requests
            .push((message.invoice_slot, responder.clone()));
        let answers =
            self.honest.load(Ordering::SeqCst) && !self.silent_on_requests.load(Ordering::SeqCst);
        answers.then(|| {
            (
                self.offer_paths(*self.paths_expiry.lock().unwrap(), 1),
                responder.respond_with_reply_path(Self::store_reply_context(message.invoice_slot)),
            )
        })
    }

    fn handle_offer_paths(
        &self,
        _: OfferPaths,
        _: AsyncPaymentsContext,
        _: Option<Responder>,
    ) -> Option<(ServeStaticInvoice, ResponseInstruction)> {
        None
    }

    fn handle_serve_static_invoice(
        &self,
        message: ServeStaticInvoice,
        _context: AsyncPaymentsContext,
        responder: Option<Responder>,
    ) {
        let Some(responder) = responder else { return };
        let mut seen = self.seen.lock().unwrap();
        seen.received += 1;
        let ignored = self
            .never_confirm_offers
            .lock()
            .unwrap()
            .contains(&message.invoice.offer_id().0);
        seen.invoices.push((message.clone(), responder.clone()));
        if self.honest.load(Ordering::SeqCst)
            && !self.never_confirm.load(Ordering::SeqCst)
            && !ignored
        {
            if self.hold_invoices.load(Ordering::SeqCst) {
                self.held.lock().unwrap().push((message, responder));
            } else {
                self.store(message, responder);
            }
        }
    }

    fn handle_static_invoice_persisted(&self, _: StaticInvoicePersisted, _: AsyncPaymentsContext) {}

    fn handle_held_htlc_available(
        &self,
        _: HeldHtlcAvailable,
        _: AsyncPaymentsContext,
        _: Option<Responder>,
    ) -> Option<(ReleaseHeldHtlc, ResponseInstruction)> {
        None
    }

    fn handle_release_held_htlc(&self, _: ReleaseHeldHtlc, _: AsyncPaymentsContext) {}

    /// A few at a time: the messenger asks again for every message it sends, and drops what
    /// does not fit its per-peer buffer.
    fn release_pending_messages(&self) -> Vec<(AsyncPaymentsMessage, MessageSendInstructions)> {
        let mut outbox = self.outbox.lock().unwrap();
        let count = outbox.len().min(16);
        outbox.drain(..count).collect()
    }
}

pub type Messenger = OnionMessenger<
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<NoLog>,
    Arc<EmptyNodeIdLookUp>,
    Arc<ServerRouter>,
    IgnoringMessageHandler,
    Arc<HostileHandler>,
    IgnoringMessageHandler,
    IgnoringMessageHandler,
>;

/// The messenger as the peer manager sees it, sending copies of one prebuilt onion first: a
/// flood replayed at the socket's pace, costing the hostile side neither CPU nor memory.
pub struct Flooding {
    messenger: Arc<Messenger>,
    replay: Mutex<Option<OnionMessage>>,
    replays_left: AtomicUsize,
}

impl BaseMessageHandler for Flooding {
    fn get_and_clear_pending_msg_events(&self) -> Vec<MessageSendEvent> {
        self.messenger.get_and_clear_pending_msg_events()
    }
    fn peer_disconnected(&self, their_node_id: PublicKey) {
        self.messenger.peer_disconnected(their_node_id)
    }
    fn provided_node_features(&self) -> NodeFeatures {
        self.messenger.provided_node_features()
    }
    fn provided_init_features(&self, their_node_id: PublicKey) -> InitFeatures {
        self.messenger.provided_init_features(their_node_id)
    }
    fn peer_connected(
        &self,
        their_node_id: PublicKey,
        msg: &Init,
        inbound: bool,
    ) -> Result<(), ()> {
        self.messenger.peer_connected(their_node_id, msg, inbound)
    }
}

impl OnionMessageHandler for Flooding {
    fn handle_onion_message(&self, peer_node_id: PublicKey, msg: &OnionMessage) {
        self.messenger.handle_onion_message(peer_node_id, msg)
    }
    fn next_onion_message_for_peer(&self, peer_node_id: PublicKey) -> Option<OnionMessage> {
        let left = self.replays_left.load(Ordering::SeqCst);
        if left > 0 {
            self.replays_left.store(left - 1, Ordering::SeqCst);
            return self.replay.lock().unwrap().clone();
        }
        self.messenger.next_onion_message_for_peer(peer_node_id)
    }
    fn timer_tick_occurred(&self) {
        self.messenger.timer_tick_occurred()
    }
}

pub type Peers = PeerManager<
    SocketDescriptor,
    Arc<ErroringMessageHandler>,
    IgnoringMessageHandler,
    Arc<Flooding>,
    Arc<NoLog>,
    IgnoringMessageHandler,
    Arc<KeysManager>,
    IgnoringMessageHandler,
>;

pub struct HostileServer {
    pub handler: Arc<HostileHandler>,
    flooding: Arc<Flooding>,
    router: Arc<ServerRouter>,
    keys: Arc<KeysManager>,
    peers: Arc<Peers>,
    pub config: ServerConfig,
}

impl HostileServer {
    pub async fn start() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        // A node of its own per test: the tests share one log and tell their lines apart by it.
        static SEEDS: AtomicUsize = AtomicUsize::new(0x80);
        let seed = [SEEDS.fetch_add(1, Ordering::SeqCst) as u8; 32];
        let keys = Arc::new(KeysManager::new(
            &seed,
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let node_id = keys.get_node_id(Recipient::Node).unwrap();
        let router = Arc::new(ServerRouter::new(
            node_id,
            keys.clone(),
            Network::Regtest,
            None,
        ));
        let handler = Arc::new(HostileHandler {
            node_id,
            keys: keys.clone(),
            honest: AtomicBool::new(true),
            silent_on_requests: AtomicBool::new(false),
            never_confirm: AtomicBool::new(false),
            never_confirm_offers: Mutex::default(),
            hold_invoices: AtomicBool::new(false),
            held: Mutex::default(),
            stored: Mutex::default(),
            paths_expiry: Mutex::default(),
            seen: Mutex::default(),
            outbox: Mutex::default(),
        });
        let messenger = Arc::new(OnionMessenger::new(
            keys.clone(),
            keys.clone(),
            Arc::new(NoLog),
            Arc::new(EmptyNodeIdLookUp {}),
            router.clone(),
            IgnoringMessageHandler {},
            handler.clone(),
            IgnoringMessageHandler {},
            IgnoringMessageHandler {},
        ));
        let flooding = Arc::new(Flooding {
            messenger,
            replay: Mutex::default(),
            replays_left: AtomicUsize::new(0),
        });
        let peers: Arc<Peers> = Arc::new(PeerManager::new(
            MessageHandler {
                chan_handler: Arc::new(ErroringMessageHandler::new()),
                route_handler: IgnoringMessageHandler {},
                onion_message_handler: flooding.clone(),
                custom_message_handler: IgnoringMessageHandler {},
                send_only_message_handler: IgnoringMessageHandler {},
            },
            now.as_secs() as u32,
            &keys.get_secure_random_bytes(),
            Arc::new(NoLog),
            keys.clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accept = peers.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).unwrap();
                tokio::spawn(lightning_net_tokio::setup_inbound(
                    accept.clone(),
                    stream.into_std().unwrap(),
                ));
            }
        });
        let flush = peers.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tick.tick().await;
                flush.process_events();
            }
        });
        let request_path = router
            .create_blinded_paths(
                node_id,
                keys.get_receive_auth_key(),
                MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
                    recipient_id: b"victim".to_vec(),
                    path_absolute_expiry: None,
                }),
                vec![],
                &Secp256k1::new(),
            )
            .unwrap();
        Self {
            config: ServerConfig {
                node_id,
                address,
                paths: request_path,
            },
            handler,
            flooding,
            router,
            keys,
            peers,
        }
    }

    /// Ends every connection, as a server whose link dropped.
    pub fn drop_connections(&self) {
        self.peers.disconnect_all_peers();
    }

    /// The node id, hex, as the client's log lines name it.
    pub fn id(&self) -> String {
        self.handler.node_id.to_string()
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.handler.seen.lock().unwrap()
    }

    /// The invoices of the offer `offer_id` the server was sent, in the order they came.
    pub fn invoices_of(
        &self,
        offer_id: &[u8; 32],
    ) -> Vec<lightning::offers::static_invoice::StaticInvoice> {
        self.seen()
            .invoices
            .iter()
            .filter(|(message, _)| message.invoice.offer_id().0 == *offer_id)
            .map(|(message, _)| message.invoice.clone())
            .collect()
    }

    pub fn send(&self, message: AsyncPaymentsMessage, instructions: MessageSendInstructions) {
        self.handler.send(message, instructions);
        self.peers.process_events();
    }

    /// Offer paths for `slot` over the reply path of the client's request for it: its
    /// `index`th request overall, or its latest for that slot.
    pub fn answer_request(&self, slot: u16, index: Option<usize>, paths: OfferPaths) {
        let responder = match index {
            Some(index) => self.seen().requests[index].1.clone(),
            None => self
                .seen()
                .requests
                .iter()
                .rev()
                .find(|(requested, _)| *requested == slot)
                .map(|(_, responder)| responder.clone())
                .expect("the client requested that slot"),
        };
        self.send(
            AsyncPaymentsMessage::OfferPaths(paths),
            MessageSendInstructions::ForReply {
                instructions: responder
                    .respond_with_reply_path(HostileHandler::store_reply_context(slot)),
            },
        );
    }

    /// `StaticInvoicePersisted` over the reply path of the client's `index`th invoice.
    pub fn confirm_invoice(&self, index: usize) {
        let responder = self.seen().invoices[index].1.clone();
        self.send(
            AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
            MessageSendInstructions::ForReply {
                instructions: responder.respond(),
            },
        );
    }

    /// `count` copies of one onion: the confirmation of the client's `index`th invoice.
    pub fn flood_confirmations(&self, index: usize, count: usize) {
        let responder = self.seen().invoices[index].1.clone();
        let secp = Secp256k1::new();
        let reply_path = async_offers::testing::bench::reply_path_of(&responder);
        let path = self
            .router
            .find_path(
                self.handler.node_id,
                vec![],
                Destination::BlindedPath(reply_path),
            )
            .unwrap();
        let (_, onion, _) = create_onion_message(
            &self.keys,
            &self.keys,
            &&EmptyNodeIdLookUp {},
            &secp,
            path,
            AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
            None,
        )
        .unwrap();
        *self.flooding.replay.lock().unwrap() = Some(onion);
        self.flooding.replays_left.store(count, Ordering::SeqCst);
        self.peers.process_events();
    }
}

/// The client's offers and every offer record in its data dir.
pub fn snapshot(
    client: &AsyncOffersClient,
    dir: &Path,
) -> (Vec<OfferInfo>, Vec<(String, Vec<u8>)>) {
    let mut files = Vec::new();
    let offers = dir.join("async_offers/offers");
    let mut stack = match offers.exists() {
        true => vec![offers],
        false => vec![],
    };
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    (client.offers(), files)
}

pub fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// A client of `server` on a clock that moves only when the test moves it.
pub fn victim(
    server: &HostileServer,
    dir: &Path,
    slots: u16,
    clock: Arc<ManualClock>,
) -> (AsyncOffersClient, Stored) {
    logs();
    let mut config = Config::new(Network::Regtest, dir, server.config.clone());
    config.ready_offer_target = slots;
    config.tick_interval = Duration::from_millis(50);
    // Nothing is replaced or refreshed for age while the test moves the clock.
    config.ready_offer_max_age = Duration::from_secs(30 * 24 * 3600);
    config.invoice_refresh_interval = Duration::from_secs(30 * 24 * 3600);
    // Nor checked: this server answers no invoice request, and a check's repairs would add
    // sends to what the tests count.
    config.offer_check_interval = Duration::ZERO;
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock)
        .build()
        .unwrap();
    let (listener, events) = events();
    client.add_listener(listener);
    (client, Stored { events, ready: 0 })
}

/// The client's `OfferReady` events, which come once an offer's Ready record is on disk: a
/// snapshot of the data dir taken after them does not race the write.
pub struct Stored {
    events: std::sync::mpsc::Receiver<async_offers::Event>,
    ready: usize,
}

impl Stored {
    /// Waits until `count` offers in all have become Ready and been written so.
    pub async fn ready(&mut self, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.ready < count {
            match self.events.try_recv() {
                Ok(async_offers::Event::OfferReady { .. }) => self.ready += 1,
                Ok(_) => {}
                Err(_) => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} offers ready",
                        self.ready
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

impl Stored {
    /// Waits until the client, having lost its connection, is connected again (its
    /// `ServerDisconnected` then `ServerConnected`, sent once the client knows).
    pub async fn reconnected(&mut self) {
        let deadline = Instant::now() + WAIT;
        let mut disconnected = false;
        loop {
            match self.events.try_recv() {
                Ok(async_offers::Event::OfferReady { .. }) => self.ready += 1,
                Ok(async_offers::Event::ServerDisconnected { .. }) => disconnected = true,
                Ok(async_offers::Event::ServerConnected { .. }) if disconnected => return,
                Ok(_) => {}
                Err(_) => {
                    assert!(Instant::now() < deadline, "the client did not reconnect");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Waits until the server has seen `count` requests.
pub async fn requests_seen(server: &HostileServer, count: usize) {
    let deadline = Instant::now() + WAIT;
    while server.seen().requests.len() < count {
        assert!(Instant::now() < deadline, "the client sent no request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
