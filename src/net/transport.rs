//! The wire: for each server, an `OnionMessenger` and a `PeerManager` over
//! `lightning-net-tokio`, one noise connection reconnected with capped exponential backoff,
//! and the peer timer. Each server's messenger has the protocol handler of that server, so
//! replies are attributed to the server they came from and every message leaves on the
//! connection of the server it is for. The messages the client starts are taken from the
//! engine and their onions built on the blocking pool, several at once, instead of one after
//! another inside the messenger on the connection's task.
//!
//! The client has no network graph: its messenger routes with [`ServerRouter`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::blinded_path::EmptyNodeIdLookUp;
use lightning::ln::msgs::{
    BaseMessageHandler, Init, MessageSendEvent, OnionMessage, OnionMessageHandler,
};
use lightning::ln::peer_handler::{
    ErroringMessageHandler, IgnoringMessageHandler, MessageHandler, PeerManager,
};
use lightning::onion_message::messenger::{
    create_onion_message, Destination, MessageRouter, OnionMessagePath, OnionMessenger,
};
use lightning::onion_message::packet::OnionMessageContents;
use lightning::sign::{EntropySource, KeysManager, NodeSigner, Recipient};
use lightning::types::features::{InitFeatures, NodeFeatures};
use lightning_net_tokio::SocketDescriptor;
use tokio::sync::{watch, Notify};

use super::router::ServerRouter;
use crate::clock::{Clock, SystemClock};
use crate::flow::{Engine, Message, Outgoing};
use crate::handler::ProtocolHandler;
use crate::logging::LdkLogBridge;

type Messenger = OnionMessenger<
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<LdkLogBridge>,
    Arc<EmptyNodeIdLookUp>,
    Arc<ServerRouter>,
    Arc<ProtocolHandler>,
    Arc<ProtocolHandler>,
    IgnoringMessageHandler,
    IgnoringMessageHandler,
>;

type Peers = PeerManager<
    SocketDescriptor,
    Arc<ErroringMessageHandler>,
    IgnoringMessageHandler,
    Arc<ConnectionWatcher>,
    Arc<LdkLogBridge>,
    IgnoringMessageHandler,
    Arc<KeysManager>,
    IgnoringMessageHandler,
>;

const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(100);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection up this long counts as working even if it carried no reply: the redial delay
/// starts over after it. As long as the longest delay, so that a server dropping connections
/// at any pace is dialled at most about once per `MAX_RECONNECT_DELAY` once the delay grew.
const STABLE_CONNECTION: Duration = MAX_RECONNECT_DELAY;
/// How long an abandoned connection's socket, shut down, may take to be let go of by the
/// peer manager before the next dial goes ahead regardless.
const ABANDON_TIMEOUT: Duration = Duration::from_secs(2);
/// LDK's peer handler expects a timer tick about every ten seconds (pings, timeouts).
const PEER_TIMER_INTERVAL: Duration = Duration::from_secs(10);

/// The peer timer's ticks, `period` apart. A late tick is followed by the next a whole period
/// later, never by the ticks missed meanwhile: LDK drops a peer as unresponsive when a second
/// tick comes before any message after the ping of the first, and an app resumed after a
/// suspension of two periods or more would get its missed ticks back to back.
fn peer_ticks(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// The messenger as the peer manager sees it, telling whether the peer manager has the server
/// connected (its `init` arrived, and no disconnection since) and whether it sent anything, and
/// handing the peer manager the onions the transport built before anything the messenger has.
pub(crate) struct ConnectionWatcher {
    messenger: Arc<Messenger>,
    server: PublicKey,
    /// Whether the peer manager has the server connected: set by its `peer_connected`,
    /// cleared by its `peer_disconnected`, never a left-over signal.
    connected: watch::Sender<bool>,
    /// Onion messages received from the server.
    received: AtomicU64,
    /// Our messages to the server, built and waiting for room in the connection's buffer.
    built: Mutex<VecDeque<OnionMessage>>,
}

impl ConnectionWatcher {
    fn built(&self) -> MutexGuard<'_, VecDeque<OnionMessage>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BaseMessageHandler for ConnectionWatcher {
    fn get_and_clear_pending_msg_events(&self) -> Vec<MessageSendEvent> {
        self.messenger.get_and_clear_pending_msg_events()
    }
    fn peer_disconnected(&self, their_node_id: PublicKey) {
        if their_node_id == self.server {
            // Unanswered messages are sent again, rebuilt: on the next connection, or at their
            // backoff if this one was dropped without a word (see `Engine::on_connected`).
            self.built().clear();
            self.connected.send_replace(false);
        }
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
        let result = self.messenger.peer_connected(their_node_id, msg, inbound);
        if result.is_ok() && their_node_id == self.server {
            self.connected.send_replace(true);
        }
        result
    }
}

impl OnionMessageHandler for ConnectionWatcher {
    fn handle_onion_message(&self, peer_node_id: PublicKey, msg: &OnionMessage) {
        if peer_node_id == self.server {
            self.received.fetch_add(1, Ordering::Relaxed);
        }
        self.messenger.handle_onion_message(peer_node_id, msg)
    }
    fn next_onion_message_for_peer(&self, peer_node_id: PublicKey) -> Option<OnionMessage> {
        if peer_node_id == self.server {
            if let Some(built) = self.built().pop_front() {
                return Some(built);
            }
        }
        self.messenger.next_onion_message_for_peer(peer_node_id)
    }
    fn timer_tick_occurred(&self) {
        self.messenger.timer_tick_occurred()
    }
}

/// Builds the onions of the messages we start, as LDK's messenger would, on any thread: the
/// reply path, the path to the server, and the layered encryption (a 32 KiB onion for an
/// invoice). Done on the connection's task, every message would wait for the ones before it.
struct OnionBuilder {
    keys: Arc<KeysManager>,
    router: Arc<ServerRouter>,
    secp: Secp256k1<secp256k1::All>,
    node_id: PublicKey,
    server: PublicKey,
}

impl OnionBuilder {
    fn build(&self, outgoing: Outgoing) -> Result<OnionMessage, String> {
        let reply_path = self
            .router
            .create_blinded_paths(
                self.node_id,
                self.keys.get_receive_auth_key(),
                outgoing.reply_context,
                Vec::new(),
                &self.secp,
            )
            .ok()
            .and_then(|paths| paths.into_iter().next())
            .ok_or("no reply path")?;
        let path = self
            .router
            .find_path(
                self.node_id,
                vec![self.server],
                Destination::BlindedPath(outgoing.destination),
            )
            .map_err(|()| "no path to the server")?;
        let (first_hop, onion) = match outgoing.message {
            Message::AsyncPayments(message) => self.onion(path, message, reply_path)?,
            Message::Offers(message) => self.onion(path, message, reply_path)?,
        };
        if first_hop != self.server {
            return Err(format!("the path starts at {first_hop}, not at the server"));
        }
        Ok(onion)
    }

    /// The layered onion of `message` over `path`, and its first hop.
    fn onion<T: OnionMessageContents>(
        &self,
        path: OnionMessagePath,
        message: T,
        reply_path: BlindedMessagePath,
    ) -> Result<(PublicKey, OnionMessage), String> {
        create_onion_message(
            &self.keys,
            &self.keys,
            &&EmptyNodeIdLookUp {},
            &self.secp,
            path,
            message,
            Some(reply_path),
        )
        .map(|(first_hop, onion, _)| (first_hop, onion))
        .map_err(|e| format!("{e:?}"))
    }
}

/// The running transport to one server: its connection loop, outbox flushing and peer timer.
pub(crate) struct Transport {
    peers: Arc<Peers>,
    watcher: Arc<ConnectionWatcher>,
    onions: Arc<OnionBuilder>,
    engine: Arc<Engine>,
    outbox_ready: Arc<Notify>,
    server: PublicKey,
    address: String,
    /// The longest a flush waits for the send budget (a test's clock may not move with tokio's).
    max_flush_wait: Duration,
}

impl Transport {
    /// The transport to `server`, one of the engine's; `None` if it is not.
    pub fn new(
        engine: Arc<Engine>,
        transport_keys: Arc<KeysManager>,
        server: PublicKey,
        address: String,
        network: Network,
        max_flush_wait: Duration,
    ) -> Option<Arc<Self>> {
        let outbox_ready = engine.outbox_ready(&server)?;
        let handler = Arc::new(ProtocolHandler::receiving_only(engine.clone(), server));
        let router = Arc::new(ServerRouter::new(server, network, transport_keys.clone()));
        let onions = Arc::new(OnionBuilder {
            keys: transport_keys.clone(),
            router: router.clone(),
            secp: Secp256k1::new(),
            node_id: transport_keys.get_node_id(Recipient::Node).ok()?,
            server,
        });
        let messenger = Arc::new(OnionMessenger::new(
            transport_keys.clone(),
            transport_keys.clone(),
            Arc::new(LdkLogBridge),
            Arc::new(EmptyNodeIdLookUp {}),
            router,
            handler.clone(),
            handler,
            IgnoringMessageHandler {},
            IgnoringMessageHandler {},
        ));
        let watcher = Arc::new(ConnectionWatcher {
            messenger,
            server,
            connected: watch::Sender::new(false),
            received: AtomicU64::new(0),
            built: Mutex::new(VecDeque::new()),
        });
        let handlers = MessageHandler {
            chan_handler: Arc::new(ErroringMessageHandler::new()),
            route_handler: IgnoringMessageHandler {},
            onion_message_handler: watcher.clone(),
            custom_message_handler: IgnoringMessageHandler {},
            send_only_message_handler: IgnoringMessageHandler {},
        };
        // The device's wall clock, as LDK's peer handler wants it (it only seeds counters).
        let now = SystemClock.now().as_secs() as u32;
        let peers = Arc::new(PeerManager::new(
            handlers,
            now,
            &transport_keys.get_secure_random_bytes(),
            Arc::new(LdkLogBridge),
            transport_keys,
        ));
        Some(Arc::new(Self {
            peers,
            watcher,
            onions,
            engine,
            outbox_ready,
            server,
            address,
            max_flush_wait,
        }))
    }

    /// Runs until `shutdown` turns true: the connection loop, message flushing, peer timer.
    /// One connection at a time: the next dial waits until the last connection is gone. The
    /// redial delay doubles from 100 ms to 30 s, and starts over only after a connection that
    /// carried a message from the server or stayed up [`STABLE_CONNECTION`]: a server that
    /// accepts and drops the client (a refused transport id, a restart loop) is not dialled
    /// ten times a second, nor sent every request and invoice again on each connection.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let flush = tokio::spawn(self.clone().flush_outbox());
        let ticks = tokio::spawn(self.clone().peer_timer());
        let mut delay = FIRST_RECONNECT_DELAY;
        // Whether the last connection worked; the run's first is taken as after one that did.
        let mut last_worked = true;
        loop {
            tokio::select! {
                worked = self.connect_once(last_worked) => {
                    if let Some(worked) = worked {
                        last_worked = worked;
                        if worked {
                            delay = FIRST_RECONNECT_DELAY;
                        }
                    }
                },
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            log::debug!("reconnecting to the server in {delay:?}");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {},
                _ = shutdown.changed() => break,
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
        flush.abort();
        ticks.abort();
        // Every connection, a handshake under way too.
        self.peers.disconnect_all_peers();
        // Last: no `on_connected` of this transport can follow.
        self.engine.on_stopped(self.server);
    }

    /// One connection's life, until it is gone. Returns whether it worked (it carried a
    /// message from the server, or stayed up [`STABLE_CONNECTION`]); `None` if there was no
    /// connection (no handshake). `afresh`: the last connection worked, so what was lost with
    /// it is sent again at once.
    async fn connect_once(&self, afresh: bool) -> Option<bool> {
        // Never a second connection beside one the peer manager still has (one given up on
        // that would not close within `ABANDON_TIMEOUT`): LDK would refuse the new one.
        if self.peers.peer_by_node_id(&self.server).is_some() {
            log::warn!("ending a connection to {} left open", self.address);
            self.peers.disconnect_by_node_id(self.server);
        }
        let stream = match self.open_stream().await {
            Ok(stream) => stream,
            Err(why) => {
                log::warn!("cannot reach the server at {}: {why}", self.address);
                self.engine
                    .on_connection_failed(self.server, &format!("{}: {why}", self.address));
                return None;
            }
        };
        // To end the connection if its handshake is given up: the peer manager cannot be
        // asked to drop a peer before the handshake names it.
        let socket = stream.try_clone();
        let mut connected = self.watcher.connected.subscribe();
        let connection =
            lightning_net_tokio::setup_outbound(self.peers.clone(), self.server, stream);
        let mut connection = std::pin::pin!(connection);
        let up = async { connected.wait_for(|up| *up).await.map(drop) };
        let handshake = tokio::time::timeout(CONNECT_TIMEOUT, up);
        tokio::select! {
            result = handshake => {
                if result.is_err() {
                    log::warn!("handshake with the server at {} timed out", self.address);
                    // Ended, not left to finish later beside the next dial's.
                    match socket {
                        Ok(socket) => drop(socket.shutdown(std::net::Shutdown::Both)),
                        Err(e) => log::warn!("cannot end the abandoned connection: {e}"),
                    }
                    if tokio::time::timeout(ABANDON_TIMEOUT, &mut connection).await.is_err() {
                        log::warn!("the abandoned connection to {} lingers", self.address);
                    }
                    self.engine
                        .on_connection_failed(self.server, "the handshake timed out");
                    return None;
                }
            },
            _ = &mut connection => {
                log::warn!("the server at {} closed the connection during the handshake", self.address);
                self.engine.on_connection_failed(
                    self.server,
                    "the server closed the connection during the handshake",
                );
                return None;
            },
        }
        let up_since = tokio::time::Instant::now();
        let received_before = self.watcher.received.load(Ordering::Relaxed);
        log::info!("connected to the server {}", self.server);
        self.engine.on_connected(self.server, afresh);
        connection.await;
        log::info!("disconnected from the server {}", self.server);
        self.engine.on_disconnected(self.server);
        Some(
            self.watcher.received.load(Ordering::Relaxed) != received_before
                || up_since.elapsed() >= STABLE_CONNECTION,
        )
    }

    async fn open_stream(&self) -> Result<std::net::TcpStream, String> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| format!("address lookup: {e}"))?
            .collect();
        let mut last_error = "no address".to_string();
        for address in addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Ok(Ok(stream)) => {
                    // Without this every small message waits for the peer's delayed ACK (~40 ms).
                    stream
                        .set_nodelay(true)
                        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
                    return stream.into_std().map_err(|e| e.to_string());
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "connect timed out".into(),
            }
        }
        Err(last_error)
    }

    async fn flush_outbox(self: Arc<Self>) {
        loop {
            match self.engine.deferred_release_in(&self.server) {
                // Messages wait for the send budget: flush again once it allows, at the latest
                // after `max_flush_wait`.
                Some(wait) => tokio::select! {
                    _ = self.outbox_ready.notified() => {},
                    _ = tokio::time::sleep(wait.min(self.max_flush_wait)) => {},
                },
                None => self.outbox_ready.notified().await,
            }
            for outgoing in self.engine.release_for_transport(&self.server) {
                tokio::spawn(self.clone().send(outgoing));
            }
            self.peers.process_events();
        }
    }

    /// Builds `outgoing` on the blocking pool (several at once), then hands it to the peer
    /// manager, which sends it as soon as the connection's buffer has room.
    async fn send(self: Arc<Self>, outgoing: Outgoing) {
        let onions = self.onions.clone();
        match tokio::task::spawn_blocking(move || onions.build(outgoing)).await {
            Ok(Ok(onion)) => {
                self.watcher.built().push_back(onion);
                self.peers.process_events();
            }
            Ok(Err(why)) => log::warn!("could not build a message for the server: {why}"),
            Err(e) => log::error!("building a message for the server failed: {e}"),
        }
    }

    async fn peer_timer(self: Arc<Self>) {
        let mut peer_timer = peer_ticks(PEER_TIMER_INTERVAL);
        loop {
            peer_timer.tick().await;
            self.peers.timer_tick_occurred();
            self.peers.process_events();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_after_a_suspension_gives_one_peer_tick_not_the_ones_missed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let period = Duration::from_millis(100);
            let mut ticks = peer_ticks(period);
            ticks.tick().await;
            // The app suspended for more than three periods: no task of its runs meanwhile.
            std::thread::sleep(period * 3 + period / 2);
            ticks.tick().await;
            let after_the_late_tick = tokio::time::Instant::now();
            ticks.tick().await;
            // Half a period: the timer's own `now` was taken a moment before this one.
            assert!(
                after_the_late_tick.elapsed() >= period / 2,
                "the next tick came {:?} after the late one, not about a period later: LDK \
                 would take the two for an unanswered ping",
                after_the_late_tick.elapsed()
            );
        });
    }
}
