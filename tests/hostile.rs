//! A deliberately hostile static invoice server: a real LDK node speaking onion messages over
//! TCP that answers like a server when told to, and otherwise replays, forges and floods. Each
//! bad message must leave the client's offers and files as they were, be logged with a reason,
//! and never panic; a flood must not grow the client's memory.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, Config, ManualClock, OfferInfo, ServerConfig};
use async_offers_server::ServerRouter;
use common::*;
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

/// The system allocator, counting live heap bytes (the flood must not grow them).
struct CountingAllocator;

static HEAP_LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            HEAP_LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HEAP_LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            HEAP_LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Every log record of this test binary (the client's rejections are checked in it). While
/// a flood runs, lines are counted instead of kept.
struct Capture {
    lines: Mutex<Vec<String>>,
    keep: AtomicBool,
    ignored_confirmations: AtomicUsize,
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
        if self.keep.load(Ordering::SeqCst) {
            self.lines.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

fn logs() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| Capture {
        lines: Mutex::default(),
        keep: AtomicBool::new(true),
        ignored_confirmations: AtomicUsize::new(0),
    });
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    capture
}

/// Waits until a log line after `from` contains `needle`.
async fn logged(from: usize, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = logs().lines.lock().unwrap()[from..]
            .iter()
            .find(|line| line.contains(needle))
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
                "never logged: {needle}; the last lines:\n{}",
                recent.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_mark() -> usize {
    logs().lines.lock().unwrap().len()
}

struct NoLog;
impl Logger for NoLog {
    fn log(&self, _: Record) {}
}

/// What the hostile server saw and may replay.
#[derive(Default)]
struct Seen {
    requests: Vec<(u16, Responder)>,
    invoices: Vec<(ServeStaticInvoice, Responder)>,
    received: usize,
}

struct HostileHandler {
    node_id: PublicKey,
    keys: Arc<KeysManager>,
    /// Answer requests and store invoices as a server does.
    honest: AtomicBool,
    /// Answer requests, but never confirm an invoice.
    never_confirm: AtomicBool,
    seen: Mutex<Seen>,
    outbox: Mutex<VecDeque<(AsyncPaymentsMessage, MessageSendInstructions)>>,
}

impl HostileHandler {
    fn offer_paths(&self, expiry: Option<u64>, count: usize) -> OfferPaths {
        let secp = Secp256k1::new();
        let paths = (0..count)
            .map(|_| {
                BlindedMessagePath::one_hop(
                    self.node_id,
                    self.keys.get_receive_auth_key(),
                    MessageContext::Offers(OffersContext::StaticInvoiceRequested {
                        recipient_id: b"victim".to_vec(),
                        invoice_slot: 0,
                        path_absolute_expiry: Duration::MAX,
                    }),
                    &*self.keys,
                    &secp,
                )
            })
            .collect();
        OfferPaths {
            paths,
            paths_absolute_expiry: expiry,
        }
    }

    /// `count` paths of `hops` dummy hops each: valid, but too long for any stored invoice.
    fn long_offer_paths(&self, count: usize, hops: usize) -> OfferPaths {
        let secp = Secp256k1::new();
        let paths = (0..count)
            .map(|_| {
                BlindedMessagePath::new_with_dummy_hops(
                    &[],
                    self.node_id,
                    hops,
                    self.keys.get_receive_auth_key(),
                    MessageContext::Offers(OffersContext::StaticInvoiceRequested {
                        recipient_id: b"victim".to_vec(),
                        invoice_slot: 0,
                        path_absolute_expiry: Duration::MAX,
                    }),
                    &*self.keys,
                    &secp,
                )
            })
            .collect();
        OfferPaths {
            paths,
            paths_absolute_expiry: None,
        }
    }

    fn store_reply_context(slot: u16) -> MessageContext {
        MessageContext::AsyncPayments(AsyncPaymentsContext::ServeStaticInvoice {
            recipient_id: b"victim".to_vec(),
            invoice_slot: slot,
            path_absolute_expiry: Duration::MAX,
        })
    }

    fn send(&self, message: AsyncPaymentsMessage, instructions: MessageSendInstructions) {
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
        self.honest.load(Ordering::SeqCst).then(|| {
            (
                self.offer_paths(None, 1),
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
        seen.invoices.push((message, responder.clone()));
        if self.honest.load(Ordering::SeqCst) && !self.never_confirm.load(Ordering::SeqCst) {
            self.send(
                AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
                MessageSendInstructions::ForReply {
                    instructions: responder.respond(),
                },
            );
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

type Messenger = OnionMessenger<
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
struct Flooding {
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

type Peers = PeerManager<
    SocketDescriptor,
    Arc<ErroringMessageHandler>,
    IgnoringMessageHandler,
    Arc<Flooding>,
    Arc<NoLog>,
    IgnoringMessageHandler,
    Arc<KeysManager>,
    IgnoringMessageHandler,
>;

struct HostileServer {
    handler: Arc<HostileHandler>,
    flooding: Arc<Flooding>,
    router: Arc<ServerRouter>,
    keys: Arc<KeysManager>,
    peers: Arc<Peers>,
    config: ServerConfig,
}

impl HostileServer {
    async fn start() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let keys = Arc::new(KeysManager::new(
            &[0xbd; 32],
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
            never_confirm: AtomicBool::new(false),
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

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.handler.seen.lock().unwrap()
    }

    fn send(&self, message: AsyncPaymentsMessage, instructions: MessageSendInstructions) {
        self.handler.send(message, instructions);
        self.peers.process_events();
    }

    /// Offer paths for `slot` over the reply path of the client's request for it: its
    /// `index`th request overall, or its latest for that slot.
    fn answer_request(&self, slot: u16, index: Option<usize>, paths: OfferPaths) {
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
    fn confirm_invoice(&self, index: usize) {
        let responder = self.seen().invoices[index].1.clone();
        self.send(
            AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
            MessageSendInstructions::ForReply {
                instructions: responder.respond(),
            },
        );
    }

    /// `count` copies of one onion: the confirmation of the client's `index`th invoice.
    fn flood_confirmations(&self, index: usize, count: usize) {
        let responder = self.seen().invoices[index].1.clone();
        let secp = Secp256k1::new();
        let reply_path = reply_path_of(&responder);
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

/// The path a responder replies over: its encoding is a TLV stream with one record, type 0.
fn reply_path_of(responder: &Responder) -> BlindedMessagePath {
    use lightning::util::ser::{BigSize, Readable, Writeable};
    let encoded = responder.encode();
    let mut stream = &encoded[..];
    let _stream_len = BigSize::read(&mut stream).unwrap();
    assert_eq!(BigSize::read(&mut stream).unwrap().0, 0);
    let _record_len = BigSize::read(&mut stream).unwrap();
    BlindedMessagePath::read(&mut stream).unwrap()
}

/// The client's offers and every file of its data dir.
fn snapshot(client: &AsyncOffersClient, dir: &Path) -> (Vec<OfferInfo>, Vec<(String, Vec<u8>)>) {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
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

fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// A client of `server` on a clock that moves only when the test moves it.
fn victim(
    server: &HostileServer,
    dir: &Path,
    slots: u16,
    clock: Arc<ManualClock>,
) -> AsyncOffersClient {
    logs();
    let mut config = Config::new(Network::Regtest, dir, server.config.clone());
    config.offer_slots = slots;
    config.tick_interval = Duration::from_millis(50);
    // Nothing is replaced or refreshed for age while the test moves the clock.
    config.ready_offer_max_age = Duration::from_secs(30 * 24 * 3600);
    config.invoice_refresh_interval = Duration::from_secs(30 * 24 * 3600);
    AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock)
        .build()
        .unwrap()
}

/// Waits until the server has seen `count` requests.
async fn requests_seen(server: &HostileServer, count: usize) {
    let deadline = Instant::now() + WAIT;
    while server.seen().requests.len() < count {
        assert!(Instant::now() < deadline, "the client sent no request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offer_paths_change_nothing_and_are_logged_with_a_reason() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let client = victim(&server, dir.path(), 2, clock.clone());
    client.start().unwrap();
    client.wait_for_ready_offers(2, WAIT).await.unwrap();

    // From now on the server only does what the test says. A handout makes the client
    // request offer paths for that slot again.
    server.handler.honest.store(false, Ordering::SeqCst);
    let taken = client.take_offer(None).unwrap();
    requests_seen(&server, 3).await;
    // A handed-out offer keeps its slot: the new one gets another.
    let request = server.seen().requests.len() - 1;
    let slot = server.seen().requests[request].0;
    let filled = taken.slot;
    let before = snapshot(&client, dir.path());

    let year = (now() + Duration::from_secs(365 * 24 * 3600)).as_secs();
    let existing: lightning::offers::offer::Offer = taken.offer.parse().unwrap();
    let cases: Vec<(&str, u16, OfferPaths, &str)> = vec![
        (
            "a filled slot",
            filled,
            server.handler.offer_paths(Some(year), 1),
            "SlotNotRequested",
        ),
        (
            "no paths",
            slot,
            server.handler.offer_paths(Some(year), 0),
            "NoPaths",
        ),
        (
            "too many paths",
            slot,
            server.handler.offer_paths(None, 50),
            "TooManyPaths",
        ),
        (
            "paths expiring in a minute",
            slot,
            server
                .handler
                .offer_paths(Some((now() + Duration::from_secs(60)).as_secs()), 1),
            "ExpiresTooSoon",
        ),
        (
            "another offer's paths",
            slot,
            OfferPaths {
                paths: existing.paths().to_vec(),
                paths_absolute_expiry: None,
            },
            "DuplicatePaths",
        ),
        (
            "paths too long for an invoice a server stores",
            slot,
            server.handler.long_offer_paths(8, 10),
            "bytes, over the",
        ),
    ];
    for (what, to_slot, paths, reason) in cases {
        let mark = log_mark();
        server.answer_request(to_slot, None, paths);
        let line = logged(mark, "rejected OfferPaths").await;
        assert!(line.contains(reason), "{what}: {line}");
        assert_eq!(
            snapshot(&client, dir.path()),
            before,
            "{what} changed the client"
        );
    }

    // Hours later the reply path of that request has expired; the client asked again.
    clock.advance(Duration::from_secs(3 * 3600));
    requests_seen(&server, request + 2).await;
    let mark = log_mark();
    server.answer_request(slot, Some(request), server.handler.offer_paths(None, 1));
    let line = logged(mark, "rejected OfferPaths").await;
    assert!(line.contains("ReplyPathExpired"), "{line}");
    assert_eq!(snapshot(&client, dir.path()).0, before.0);

    // A good answer to the new request still fills the slot.
    server.handler.honest.store(true, Ordering::SeqCst);
    server.answer_request(slot, None, server.handler.offer_paths(None, 1));
    client.wait_for_ready_offers(2, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_paths_for_a_slot_out_of_range_after_a_restart_are_rejected() {
    let server = HostileServer::start().await;
    server.handler.honest.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let client = victim(&server, dir.path(), 3, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    requests_seen(&server, 3).await;
    client.stop();
    drop(client);

    // The app now wants one offer: slot 2 is out of range, but its reply path is still ours.
    let client = victim(&server, dir.path(), 1, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    requests_seen(&server, 4).await;
    let before = snapshot(&client, dir.path());
    let mark = log_mark();
    server.answer_request(2, None, server.handler.offer_paths(None, 1));
    let line = logged(mark, "rejected OfferPaths").await;
    assert!(
        line.contains("slot 2") && line.contains("SlotNotRequested"),
        "{line}"
    );
    assert_eq!(snapshot(&client, dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_unknown_and_flooded_confirmations_are_ignored_in_bounded_memory() {
    let server = HostileServer::start().await;
    server.handler.honest.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let client = victim(&server, dir.path(), 1, clock.clone());
    client.start().unwrap();
    requests_seen(&server, 1).await;
    let expiry = (now() + Duration::from_secs(365 * 24 * 3600)).as_secs();
    server.answer_request(0, None, server.handler.offer_paths(Some(expiry), 1));
    let deadline = Instant::now() + WAIT;
    while server.seen().invoices.is_empty() {
        assert!(Instant::now() < deadline, "no invoice sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.confirm_invoice(0);
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let ready = snapshot(&client, dir.path());

    // The same confirmation again.
    let mark = log_mark();
    server.confirm_invoice(0);
    logged(mark, "duplicate or stale confirmation").await;
    assert_eq!(snapshot(&client, dir.path()), ready);

    // Ten thousand times more, replayed as fast as the socket takes them.
    let heap_before = HEAP_LIVE_BYTES.load(Ordering::SeqCst);
    let ignored_before = logs().ignored_confirmations.load(Ordering::SeqCst);
    logs().keep.store(false, Ordering::SeqCst);
    server.flood_confirmations(0, 10_000);
    let deadline = Instant::now() + Duration::from_secs(120);
    while logs().ignored_confirmations.load(Ordering::SeqCst) < ignored_before + 10_000 {
        assert!(Instant::now() < deadline, "the flood was not all handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    logs().keep.store(true, Ordering::SeqCst);
    let grown = HEAP_LIVE_BYTES
        .load(Ordering::SeqCst)
        .saturating_sub(heap_before);
    assert!(
        grown < 1 << 20,
        "the flood left {grown} bytes more on the heap"
    );
    assert_eq!(snapshot(&client, dir.path()), ready);

    // Once the offer has expired and is gone, its confirmation names an unknown offer.
    clock.advance(Duration::from_secs(366 * 24 * 3600));
    let deadline = Instant::now() + WAIT;
    while !client.offers().is_empty() {
        assert!(Instant::now() < deadline, "the expired offer stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mark = log_mark();
    server.confirm_invoice(0);
    logged(mark, "confirmation for an unknown offer ignored").await;
    assert!(client.offers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_messages_without_our_reply_path_never_reach_the_cache() {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = victim(&server, dir.path(), 1, Arc::new(ManualClock::new(now())));
    client.start().unwrap();
    client.wait_for_ready_offers(1, WAIT).await.unwrap();
    let before = snapshot(&client, dir.path());
    let mark = log_mark();
    for message in [
        AsyncPaymentsMessage::OfferPaths(server.handler.offer_paths(None, 1)),
        AsyncPaymentsMessage::StaticInvoicePersisted(StaticInvoicePersisted {}),
    ] {
        server.send(
            message,
            MessageSendInstructions::WithoutReplyPath {
                destination: Destination::Node(client.transport_node_id()),
            },
        );
    }
    // LDK's messenger drops what did not come over one of our own reply paths.
    logged(mark, "wrong or missing context").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(snapshot(&client, dir.path()), before);
}

/// However the server behaves, the client sends it at most its budget in any minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_exceeds_its_message_budget_whatever_the_server_does() {
    const BUDGET: u32 = 10;
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let mut config = Config::new(Network::Regtest, dir.path(), server.config.clone());
    config.offer_slots = 8;
    config.max_messages_per_minute = BUDGET;
    config.tick_interval = Duration::from_millis(20);
    logs();
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .clock(clock.clone())
        .build()
        .unwrap();
    // Offer paths for every request at once, and never a confirmation: every invoice is
    // resent for ever, and every slot stays wanted.
    server.handler.never_confirm.store(true, Ordering::SeqCst);
    client.start().unwrap();
    let step = Duration::from_secs(10);
    let mut received = vec![0usize];
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        received.push(server.seen().received);
        clock.advance(step);
    }
    let total = *received.last().unwrap();
    assert!(
        total > BUDGET as usize * 3,
        "the server saw too little to mean anything: {total}"
    );
    // What arrived over five consecutive 10-second steps was sent within 50 s of the client's
    // clock (a message sent just before a step may arrive after it): one minute at most.
    for window in received.windows(6) {
        let in_minute = window[5] - window[0];
        assert!(
            in_minute <= BUDGET as usize,
            "{in_minute} messages in a minute: {received:?}"
        );
    }
}
