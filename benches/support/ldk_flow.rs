//! LDK's own async-receive client work, to measure the SDK against: `OffersMessageFlow::
//! handle_offer_paths` building an offer and its static invoice over the same server paths,
//! with a router that makes the paths LDK's `DefaultMessageRouter` makes for an unannounced
//! node (message paths padded to four hops through its one peer) and one-hop payment paths,
//! what the SDK builds without channel hints. The router keeps the payment TLVs LDK gave it
//! last, so tests can compare LDK's payment secret with the SDK's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, MessageForwardNode,
};
use lightning::blinded_path::payment::{BlindedPaymentPath, ReceiveTlvs};
use lightning::chain::BestBlock;
use lightning::ln::channel_state::ChannelDetails;
use lightning::offers::flow::OffersMessageFlow;
use lightning::onion_message::async_payments::OfferPaths;
use lightning::onion_message::messenger::{
    Destination, MessageRouter, OnionMessagePath, Responder,
};
use lightning::routing::router::{InFlightHtlcs, Route, RouteParameters, Router};
use lightning::sign::{KeysManager, NodeSigner, ReceiveAuthKey, Recipient};
use lightning::util::logger::{Logger, Record};

/// LDK pads message paths to this many hops.
const PADDED_PATH_LENGTH: usize = 4;

struct NoLog;
impl Logger for NoLog {
    fn log(&self, _record: Record) {}
}

struct BaselineRouter {
    keys: Arc<KeysManager>,
    /// The receive TLVs of the last payment path asked for.
    last_payment_tlvs: Mutex<Option<ReceiveTlvs>>,
}

impl BaselineRouter {
    fn new(keys: Arc<KeysManager>) -> Self {
        Self {
            keys,
            last_payment_tlvs: Mutex::new(None),
        }
    }
}

impl Router for BaselineRouter {
    fn find_route(
        &self,
        _: &PublicKey,
        _: &RouteParameters,
        _: Option<&[&ChannelDetails]>,
        _: InFlightHtlcs,
    ) -> Result<Route, &'static str> {
        Err("not routing")
    }

    fn create_blinded_payment_paths<T: secp256k1::Signing + secp256k1::Verification>(
        &self,
        recipient: PublicKey,
        _: Vec<ChannelDetails>,
        tlvs: ReceiveTlvs,
        _: Option<u64>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedPaymentPath>, ()> {
        *self.last_payment_tlvs.lock().unwrap() = Some(tlvs.clone());
        BlindedPaymentPath::one_hop(recipient, tlvs, 18, &*self.keys, secp_ctx).map(|p| vec![p])
    }
}

impl MessageRouter for BaselineRouter {
    fn find_path(
        &self,
        _: PublicKey,
        _: Vec<PublicKey>,
        _: Destination,
    ) -> Result<OnionMessagePath, ()> {
        Err(())
    }

    fn create_blinded_paths<T: secp256k1::Signing + secp256k1::Verification>(
        &self,
        recipient: PublicKey,
        key: ReceiveAuthKey,
        context: MessageContext,
        peers: Vec<MessageForwardNode>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedMessagePath>, ()> {
        Ok(vec![BlindedMessagePath::new_with_dummy_hops(
            &peers[..peers.len().min(1)],
            recipient,
            PADDED_PATH_LENGTH - 2,
            key,
            context,
            &*self.keys,
            secp_ctx,
        )])
    }
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// A static invoice server's keys, minting paths as it would for `OfferPaths`.
pub struct ServerPaths {
    keys: KeysManager,
    secp: Secp256k1<secp256k1::All>,
}

impl ServerPaths {
    pub fn new() -> Self {
        Self {
            keys: KeysManager::new(&[0xee; 32], 1, 1, true),
            secp: Secp256k1::new(),
        }
    }

    pub fn node_id(&self) -> PublicKey {
        self.keys.get_node_id(Recipient::Node).unwrap()
    }

    /// A fresh one-hop path to the server (each call differs, as each slot's paths do).
    pub fn path(&self) -> BlindedMessagePath {
        let context = MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
            recipient_id: vec![1],
            path_absolute_expiry: None,
        });
        BlindedMessagePath::one_hop(
            self.node_id(),
            self.keys.get_receive_auth_key(),
            context,
            &self.keys,
            &self.secp,
        )
    }
}

/// LDK's client for the wallet with `seed`. Its cache has ten slots; [`Self::build`] uses the
/// next one, so make a new flow every ten builds.
pub struct LdkFlow {
    keys: Arc<KeysManager>,
    router: BaselineRouter,
    flow: OffersMessageFlow<Arc<BaselineRouter>, Arc<NoLog>>,
    server: PublicKey,
    next_slot: u16,
}

impl LdkFlow {
    pub const SLOTS: u16 = 10;

    pub fn new(seed: [u8; 32], server: &ServerPaths) -> Self {
        let keys = Arc::new(KeysManager::new(&seed, 42, 42, true));
        let node_id = keys.get_node_id(Recipient::Node).unwrap();
        let flow = OffersMessageFlow::new(
            ChainHash::using_genesis_block(Network::Regtest),
            BestBlock::from_network(Network::Regtest),
            node_id,
            now().as_secs() as u32,
            keys.get_expanded_key(),
            keys.get_receive_auth_key(),
            Secp256k1::new(),
            Arc::new(BaselineRouter::new(keys.clone())),
            Arc::new(NoLog),
        );
        flow.set_paths_to_static_invoice_server(vec![server.path()], vec![])
            .unwrap();
        Self {
            router: BaselineRouter::new(keys.clone()),
            keys,
            flow,
            server: server.node_id(),
            next_slot: 0,
        }
    }

    /// A reply path from the server, as `OfferPaths` arrives with (built outside any timing).
    pub fn responder(server: &ServerPaths) -> Responder {
        async_offers::testing::bench::responder_for(&server.path())
    }

    /// The receive TLVs (with the payment secret) of the last invoice LDK built.
    pub fn last_payment_tlvs(&self) -> Option<ReceiveTlvs> {
        self.router.last_payment_tlvs.lock().unwrap().clone()
    }

    /// LDK builds one offer over `paths` and its static invoice; true if it did.
    pub fn build(
        &mut self,
        paths: Vec<BlindedMessagePath>,
        expiry: Duration,
        reply: Responder,
    ) -> bool {
        let slot = self.next_slot;
        self.next_slot += 1;
        let message = OfferPaths {
            paths,
            paths_absolute_expiry: Some(expiry.as_secs()),
        };
        let context = AsyncPaymentsContext::OfferPaths {
            invoice_slot: slot,
            path_absolute_expiry: now() + Duration::from_secs(3600),
        };
        let peers = vec![MessageForwardNode {
            node_id: self.server,
            short_channel_id: None,
        }];
        self.flow
            .handle_offer_paths(
                message,
                context,
                reply,
                peers,
                vec![],
                &*self.keys,
                &self.router,
            )
            .is_some()
    }
}
