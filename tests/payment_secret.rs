//! The SDK's async-offer payment secret must equal the one LDK itself derives, or the wallet's
//! `ChannelManager` rejects every payment. LDK keeps its derivation `pub(crate)`, so we obtain
//! LDK's secret through its public client flow: `OffersMessageFlow::handle_offer_paths` builds a
//! static invoice and hands the payment TLVs to our `Router`, which records them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::keys::WalletKeys;
use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
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
use lightning::types::payment::PaymentSecret;
use lightning::util::logger::{Logger, Record};
use lightning::util::ser::{BigSize, Readable, Writeable};

struct NoLog;
impl Logger for NoLog {
    fn log(&self, _record: Record) {}
}

/// Builds one-hop paths and records the receive TLVs LDK asks it to embed.
struct RecordingRouter {
    keys: Arc<KeysManager>,
    recorded: Mutex<Vec<ReceiveTlvs>>,
}

impl Router for RecordingRouter {
    fn find_route(
        &self,
        _: &PublicKey,
        _: &RouteParameters,
        _: Option<&[&ChannelDetails]>,
        _: InFlightHtlcs,
    ) -> Result<Route, &'static str> {
        Err("not routing")
    }
    fn create_blinded_payment_paths<
        T: lightning::bitcoin::secp256k1::Signing + lightning::bitcoin::secp256k1::Verification,
    >(
        &self,
        recipient: PublicKey,
        _: Vec<ChannelDetails>,
        tlvs: ReceiveTlvs,
        _: Option<u64>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedPaymentPath>, ()> {
        self.recorded.lock().unwrap().push(tlvs.clone());
        BlindedPaymentPath::one_hop(recipient, tlvs, 18, &*self.keys, secp_ctx).map(|p| vec![p])
    }
}

impl MessageRouter for RecordingRouter {
    fn find_path(
        &self,
        _: PublicKey,
        _: Vec<PublicKey>,
        _: Destination,
    ) -> Result<OnionMessagePath, ()> {
        Err(())
    }
    fn create_blinded_paths<
        T: lightning::bitcoin::secp256k1::Signing + lightning::bitcoin::secp256k1::Verification,
    >(
        &self,
        recipient: PublicKey,
        key: ReceiveAuthKey,
        context: MessageContext,
        _: Vec<MessageForwardNode>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedMessagePath>, ()> {
        Ok(vec![BlindedMessagePath::one_hop(
            recipient,
            key,
            context,
            &*self.keys,
            secp_ctx,
        )])
    }
}

/// `Responder` has no public constructor; it is `Readable` from its TLV encoding.
fn responder_for(path: BlindedMessagePath) -> Responder {
    // A length-prefixed TLV stream holding one record: type 0, the reply path.
    let path_bytes = path.encode();
    let mut record = Vec::new();
    BigSize(0).write(&mut record).unwrap();
    BigSize(path_bytes.len() as u64).write(&mut record).unwrap();
    record.extend_from_slice(&path_bytes);
    let mut stream = Vec::new();
    BigSize(record.len() as u64).write(&mut stream).unwrap();
    stream.extend_from_slice(&record);
    Responder::read(&mut &stream[..]).expect("valid responder encoding")
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Runs LDK's own client flow for `seed` and returns the payment secret it derived, with the
/// offer's absolute expiry and the time window during which LDK read the clock.
fn ldk_payment_secret(seed: [u8; 32]) -> (PaymentSecret, u64, (u64, u64)) {
    let keys = Arc::new(KeysManager::new(&seed, 42, 42, true));
    let router = Arc::new(RecordingRouter {
        keys: keys.clone(),
        recorded: Mutex::new(Vec::new()),
    });
    let node_id = keys.get_node_id(Recipient::Node).unwrap();
    let flow = OffersMessageFlow::new(
        ChainHash::using_genesis_block(Network::Regtest),
        BestBlock::from_network(Network::Regtest),
        node_id,
        now().as_secs() as u32,
        keys.get_expanded_key(),
        keys.get_receive_auth_key(),
        Secp256k1::new(),
        router.clone(),
        Arc::new(NoLog),
    );
    let server = KeysManager::new(&[0xee; 32], 1, 1, true);
    let server_id = server.get_node_id(Recipient::Node).unwrap();
    let server_path = |context| {
        BlindedMessagePath::one_hop(
            server_id,
            server.get_receive_auth_key(),
            context,
            &server,
            &Secp256k1::new(),
        )
    };
    let request_context = MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
        recipient_id: vec![1],
        path_absolute_expiry: None,
    });
    flow.set_paths_to_static_invoice_server(vec![server_path(request_context.clone())], vec![])
        .unwrap();

    let paths_absolute_expiry = now().as_secs() + 365 * 24 * 3600;
    let message = OfferPaths {
        paths: vec![server_path(request_context.clone())],
        paths_absolute_expiry: Some(paths_absolute_expiry),
    };
    let context = AsyncPaymentsContext::OfferPaths {
        invoice_slot: 0,
        path_absolute_expiry: now() + Duration::from_secs(3600),
    };
    let before = now().as_secs();
    let reply = flow.handle_offer_paths(
        message,
        context,
        responder_for(server_path(request_context)),
        vec![],
        vec![],
        &*keys,
        &*router,
    );
    let after = now().as_secs();
    assert!(reply.is_some(), "LDK built an offer and a static invoice");
    let tlvs = router
        .recorded
        .lock()
        .unwrap()
        .pop()
        .expect("LDK asked the router for payment paths");
    (
        tlvs.tlvs().payment_secret,
        paths_absolute_expiry,
        (before, after),
    )
}

/// Every (now, expiry delta) LDK may have used within the window: it truncates the offer's
/// remaining lifetime to whole seconds, so the delta is one of two values per second.
fn sdk_secrets(
    keys: &WalletKeys,
    paths_absolute_expiry: u64,
    (before, after): (u64, u64),
) -> Vec<PaymentSecret> {
    (before..=after)
        .flat_map(|now| {
            [0, 1].map(move |truncation| (now, paths_absolute_expiry - now - truncation))
        })
        .map(|(now, delta)| keys.async_payment_secret(delta as u32, now))
        .collect()
}

#[test]
fn sdk_payment_secret_equals_ldks_own_for_the_same_seed() {
    let seed = [0x42; 32];
    let (ldk_secret, expiry, window) = ldk_payment_secret(seed);
    let sdk = WalletKeys::from_seed(&seed);
    assert!(
        sdk_secrets(&sdk, expiry, window).contains(&ldk_secret),
        "SDK derives LDK's exact secret"
    );
}

#[test]
fn a_different_seed_gives_a_different_payment_secret() {
    let (ldk_secret, expiry, window) = ldk_payment_secret([0x42; 32]);
    let other = WalletKeys::from_seed(&[0x43; 32]);
    assert!(!sdk_secrets(&other, expiry, window).contains(&ldk_secret));
}

#[test]
fn secret_depends_on_the_expiry_only_not_on_entropy() {
    let sdk = WalletKeys::from_seed(&[9; 32]);
    assert_eq!(
        sdk.async_payment_secret(1000, 1_700_000_000),
        sdk.async_payment_secret(1000, 1_700_000_000)
    );
    assert_ne!(
        sdk.async_payment_secret(1000, 1_700_000_000),
        sdk.async_payment_secret(1001, 1_700_000_000)
    );
}
