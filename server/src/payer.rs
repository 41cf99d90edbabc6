//! A reference payer: asks a static invoice server for an offer's static invoice over the
//! offer's own blinded paths, the way a paying LDK node does, and checks what comes back.
//!
//! It stops at the invoice (it has no channels to pay with). It is written independently of the
//! SDK on purpose, so tests and the quickstart check the SDK's offers against a second reading
//! of the protocol rather than against the SDK itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    BlindedMessagePath, MessageContext, MessageForwardNode, OffersContext,
};
use lightning::blinded_path::{Direction, EmptyNodeIdLookUp, IntroductionNode};
use lightning::ln::channelmanager::PaymentId;
use lightning::ln::peer_handler::IgnoringMessageHandler;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::messenger::{
    Destination, MessageRouter, MessageSendInstructions, OnionMessagePath, OnionMessenger,
    Responder, ResponseInstruction,
};
use lightning::onion_message::offers::{OffersMessage, OffersMessageHandler};
use lightning::sign::{EntropySource, KeysManager, NodeSigner, ReceiveAuthKey};
use tokio::sync::oneshot;

use crate::router::{one_channel_graph, other_endpoint};
use crate::Log;

type Messenger = OnionMessenger<
    Arc<KeysManager>,
    Arc<KeysManager>,
    Arc<Log>,
    Arc<EmptyNodeIdLookUp>,
    Arc<PayerRouter>,
    Arc<Inbox>,
    IgnoringMessageHandler,
    IgnoringMessageHandler,
    IgnoringMessageHandler,
>;

type Peers = crate::OnionPeers<Messenger>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// What the payer asks for on an amount-less offer; the static invoice does not depend on it.
/// The note every invoice request of this payer carries, as a person's payment might.
pub const PAYER_NOTE: &str = "for the coffee, from Bob";
const REQUESTED_AMOUNT_MSATS: u64 = 1_000;

/// A connection to one static invoice server, able to fetch static invoices for offers.
pub struct Payer {
    peers: Arc<Peers>,
    messenger: Arc<Messenger>,
    inbox: Arc<Inbox>,
    keys: Arc<KeysManager>,
    network: Network,
    timer: tokio::task::JoinHandle<()>,
}

/// A static invoice the server returned for an offer, and how long the round trip took.
#[derive(Debug)]
pub struct FetchedInvoice {
    /// The invoice as received (its signature is checked when it is parsed).
    pub invoice: StaticInvoice,
    /// From sending the invoice request to receiving the invoice.
    pub elapsed: Duration,
}

impl Payer {
    /// Connects (noise handshake, `init`) to the server `server_node_id` at `address`, with a
    /// fresh random identity. Must run inside a tokio runtime.
    pub async fn connect(
        server_node_id: PublicKey,
        address: &str,
        network: Network,
    ) -> Result<Self, String> {
        let seed = crate::random_seed().map_err(|e| format!("payer seed: {e}"))?;
        let now = crate::unix_now();
        let keys = Arc::new(KeysManager::new(
            &seed,
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let inbox = Arc::new(Inbox::default());
        let router = Arc::new(PayerRouter {
            server: server_node_id,
            network,
            entropy: keys.clone(),
        });
        let messenger = Arc::new(OnionMessenger::new(
            keys.clone(),
            keys.clone(),
            Arc::new(Log),
            Arc::new(EmptyNodeIdLookUp {}),
            router,
            inbox.clone(),
            IgnoringMessageHandler {},
            IgnoringMessageHandler {},
            IgnoringMessageHandler {},
        ));
        let peers = crate::onion_peers(messenger.clone(), &keys);
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot reach {address}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let stream = stream.into_std().map_err(|e| e.to_string())?;
        tokio::spawn(lightning_net_tokio::setup_outbound(
            peers.clone(),
            server_node_id,
            stream,
        ));
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        while peers.peer_by_node_id(&server_node_id).is_none() {
            if Instant::now() > deadline {
                peers.disconnect_all_peers();
                return Err(format!("no handshake with {server_node_id} at {address}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let timer_peers = peers.clone();
        let timer = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(10));
            // As the client's peer timer: no burst of missed ticks for LDK to take as a timeout.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                timer_peers.timer_tick_occurred();
            }
        });
        Ok(Self {
            peers,
            messenger,
            inbox,
            keys,
            network,
            timer,
        })
    }

    /// Sends an `InvoiceRequest` for `offer` over its paths, with a reply path through the
    /// server, and waits up to `timeout` for the static invoice.
    pub async fn fetch_static_invoice(
        &self,
        offer: &Offer,
        timeout: Duration,
    ) -> Result<FetchedInvoice, String> {
        let secp = Secp256k1::new();
        let payment_id = PaymentId(self.keys.get_secure_random_bytes());
        let nonce = Nonce::from_entropy_source(&*self.keys);
        let request = offer
            .request_invoice(&self.keys.get_expanded_key(), nonce, &secp, payment_id)
            .and_then(|builder| builder.chain(self.network))
            .and_then(|builder| builder.amount_msats(REQUESTED_AMOUNT_MSATS))
            .map(|builder| builder.payer_note(PAYER_NOTE.to_string()))
            .and_then(|builder| builder.build_and_sign())
            .map_err(|e| format!("cannot request an invoice for this offer: {e:?}"))?;
        let Some(offer_path) = offer.paths().first() else {
            return Err("the offer has no blinded paths".into());
        };
        let (reply, answer) = oneshot::channel();
        self.inbox.waiting.lock().unwrap().insert(payment_id, reply);
        let started = Instant::now();
        let sent = self.messenger.send_onion_message(
            OffersMessage::InvoiceRequest(request),
            MessageSendInstructions::WithReplyPath {
                destination: Destination::BlindedPath(offer_path.clone()),
                context: MessageContext::Offers(OffersContext::OutboundPayment {
                    payment_id,
                    nonce,
                }),
            },
        );
        if let Err(e) = sent {
            self.inbox.waiting.lock().unwrap().remove(&payment_id);
            return Err(format!("cannot send the invoice request: {e:?}"));
        }
        self.peers.process_events();
        let outcome = tokio::time::timeout(timeout, answer).await;
        self.inbox.waiting.lock().unwrap().remove(&payment_id);
        match outcome {
            Ok(Ok(Ok(invoice))) => Ok(FetchedInvoice {
                invoice,
                elapsed: started.elapsed(),
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err("payer shut down".into()),
            Err(_) => Err(format!("no static invoice within {timeout:?}")),
        }
    }
}

impl Drop for Payer {
    fn drop(&mut self) {
        self.timer.abort();
        self.peers.disconnect_all_peers();
    }
}

/// Checks that `invoice` is what a payer of `offer` may pay at `now` (since the Unix epoch):
/// same offer, signed by the offer's signing key, same chain, neither expired, with payment paths.
pub fn check_invoice_for_offer(
    offer: &Offer,
    invoice: &StaticInvoice,
    now: Duration,
) -> Result<(), String> {
    if invoice.offer_id() != offer.id() {
        return Err(format!(
            "invoice is for offer {}, not {}",
            invoice.offer_id(),
            offer.id()
        ));
    }
    if offer.issuer_signing_pubkey() != Some(invoice.signing_pubkey()) {
        return Err("invoice is not signed by the offer's signing key".into());
    }
    if invoice.chain() != offer.chains().first().copied().unwrap_or(invoice.chain()) {
        return Err("invoice is for another chain than the offer".into());
    }
    if offer.is_expired_no_std(now) || invoice.is_offer_expired_no_std(now) {
        return Err("the offer has expired".into());
    }
    if invoice.is_expired_no_std(now) {
        return Err("the invoice has expired".into());
    }
    if invoice.payment_paths().is_empty() {
        return Err("the invoice has no payment paths".into());
    }
    Ok(())
}

/// Waiting fetches by payment id; completes them when the server's answer arrives.
#[derive(Default)]
struct Inbox {
    waiting: Mutex<HashMap<PaymentId, oneshot::Sender<Result<StaticInvoice, String>>>>,
}

impl OffersMessageHandler for Inbox {
    fn handle_message(
        &self,
        message: OffersMessage,
        context: Option<OffersContext>,
        _responder: Option<Responder>,
    ) -> Option<(OffersMessage, ResponseInstruction)> {
        let Some(OffersContext::OutboundPayment { payment_id, .. }) = context else {
            log::warn!("payer: ignoring an offers message outside a payment");
            return None;
        };
        let answer = match message {
            OffersMessage::StaticInvoice(invoice) => Ok(invoice),
            OffersMessage::InvoiceError(error) => Err(format!("server answered: {error}")),
            OffersMessage::Invoice(_) => {
                log::info!("payer: the recipient answered online with a BOLT 12 invoice");
                return None;
            }
            OffersMessage::InvoiceRequest(_) => return None,
        };
        if let Some(waiting) = self.waiting.lock().unwrap().remove(&payment_id) {
            let _ = waiting.send(answer);
        }
        None
    }
}

/// Sends everything through the server, resolving compact introduction nodes to it.
struct PayerRouter {
    server: PublicKey,
    network: Network,
    entropy: Arc<KeysManager>,
}

impl MessageRouter for PayerRouter {
    fn find_path(
        &self,
        _sender: PublicKey,
        _peers: Vec<PublicKey>,
        mut destination: Destination,
    ) -> Result<OnionMessagePath, ()> {
        if let Destination::BlindedPath(path) = &destination {
            if let IntroductionNode::DirectedShortChannelId(direction, scid) =
                *path.introduction_node()
            {
                let other = other_endpoint(&self.server);
                let (one, two) = match direction {
                    Direction::NodeOne => (self.server, other),
                    Direction::NodeTwo => (other, self.server),
                };
                destination.resolve(&one_channel_graph(self.network, scid, one, two).read_only());
            }
        }
        let starts_at_server = match &destination {
            Destination::Node(node) => *node == self.server,
            Destination::BlindedPath(path) => {
                *path.introduction_node() == IntroductionNode::NodeId(self.server)
            }
        };
        Ok(OnionMessagePath {
            intermediate_nodes: if starts_at_server {
                vec![]
            } else {
                vec![self.server]
            },
            destination,
            first_node_addresses: vec![],
        })
    }

    fn create_blinded_paths<T: secp256k1::Signing + secp256k1::Verification>(
        &self,
        recipient: PublicKey,
        local_node_receive_key: ReceiveAuthKey,
        context: MessageContext,
        _peers: Vec<MessageForwardNode>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedMessagePath>, ()> {
        let server = MessageForwardNode {
            node_id: self.server,
            short_channel_id: None,
        };
        Ok(vec![BlindedMessagePath::new(
            &[server],
            recipient,
            local_node_receive_key,
            context,
            &*self.entropy,
            secp_ctx,
        )])
    }
}
