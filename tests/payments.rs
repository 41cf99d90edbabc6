//! Async offers get paid. Everything but the SDK is LDK's own code: in-memory LDK nodes from
//! `lightning`'s functional test utilities — a payer, the payer's LSP, the wallet's LSP that is
//! also its static invoice server (LDK's built-in server role), and the wallet's node from the
//! SDK's seed — with channels payer → payer's LSP → LSP → wallet. The SDK builds the wallet's
//! offers with the LSP over an in-process onion messenger driving the same protocol handler its
//! TCP transport uses.
//!
//! Why four nodes and not three: the payer asks its next hop to hold the HTLC
//! (`hold_outbound_htlcs_at_next_hop`), and LDK 0.2 refuses to accept an HTLC whose outgoing
//! channel is not live (`ChannelNotReady`), so the holding node cannot be the offline wallet's
//! own LSP. The holding LSP and the wallet's LSP are therefore different nodes, as in LDK's own
//! end-to-end test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::keys::WalletKeys;
use async_offers::{
    AsyncOffersClient, ChannelHint, Config, LdkLogBridge, OfferInfo, ProtocolHandler, ServerConfig,
    ServerRouter,
};
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::bitcoin::Network;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::blinded_path::EmptyNodeIdLookUp;
use lightning::events::Event;
use lightning::events::{EventsProvider, HTLCHandlingFailureType};
use lightning::ln::channelmanager::PaymentId;
use lightning::ln::functional_test_utils::*;
use lightning::ln::msgs::MessageSendEvent;
use lightning::ln::msgs::{BaseMessageHandler, ChannelMessageHandler, Init, OnionMessageHandler};
use lightning::ln::onion_utils::LocalHTLCFailureReason;
use lightning::ln::peer_handler::IgnoringMessageHandler;
use lightning::ln::types::ChannelId;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::messenger::OnionMessenger;
use lightning::sign::KeysManager;
use lightning::util::test_utils::SIGNER_FACTORY;

/// The wallet node's seed, which the SDK is given too.
const WALLET_SEED: [u8; 32] = [0x77; 32];
const PAYER: usize = 0;
const PAYER_LSP: usize = 1;
const LSP: usize = 2;
const WALLET: usize = 3;
/// What the LSP calls the wallet when it hands out its paths.
const WALLET_RECIPIENT_ID: &[u8] = b"wallet";
/// How long to keep pumping messages for something the SDK does on its own threads.
const PATIENCE: Duration = Duration::from_secs(30);

/// LDK's test nodes sign with a `PhantomKeysManager`, whose inbound-payment key is not the one
/// a plain `KeysManager` derives from the same seed. A wallet node is a plain `KeysManager`, so
/// the test nodes are made of those.
mod plain_keys {
    use std::sync::Arc;
    use std::time::Duration;

    use lightning::bitcoin::secp256k1::ecdh::SharedSecret;
    use lightning::bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature};
    use lightning::bitcoin::secp256k1::{schnorr, All, PublicKey, Scalar, Secp256k1};
    use lightning::bitcoin::{locktime::absolute::LockTime, ScriptBuf, Transaction, TxOut};
    use lightning::ln::inbound_payment::ExpandedKey;
    use lightning::ln::msgs::UnsignedGossipMessage;
    use lightning::ln::script::ShutdownScript;
    use lightning::offers::invoice::UnsignedBolt12Invoice;
    use lightning::sign::{
        EntropySource, KeysManager, NodeSigner, OutputSpender, PeerStorageKey, ReceiveAuthKey,
        Recipient, SignerProvider, SpendableOutputDescriptor,
    };
    use lightning::util::dyn_signer::{DynKeysInterfaceTrait, DynSigner};
    use lightning::util::test_utils::TestSignerFactory;

    pub struct PlainKeys(KeysManager);

    impl NodeSigner for PlainKeys {
        fn get_expanded_key(&self) -> ExpandedKey {
            self.0.get_expanded_key()
        }
        fn get_peer_storage_key(&self) -> PeerStorageKey {
            self.0.get_peer_storage_key()
        }
        fn get_receive_auth_key(&self) -> ReceiveAuthKey {
            self.0.get_receive_auth_key()
        }
        fn get_node_id(&self, recipient: Recipient) -> Result<PublicKey, ()> {
            self.0.get_node_id(recipient)
        }
        fn ecdh(
            &self,
            recipient: Recipient,
            other_key: &PublicKey,
            tweak: Option<&Scalar>,
        ) -> Result<SharedSecret, ()> {
            self.0.ecdh(recipient, other_key, tweak)
        }
        fn sign_invoice(
            &self,
            invoice: &lightning::bolt11_invoice::RawBolt11Invoice,
            recipient: Recipient,
        ) -> Result<RecoverableSignature, ()> {
            self.0.sign_invoice(invoice, recipient)
        }
        fn sign_bolt12_invoice(
            &self,
            invoice: &UnsignedBolt12Invoice,
        ) -> Result<schnorr::Signature, ()> {
            self.0.sign_bolt12_invoice(invoice)
        }
        fn sign_gossip_message(&self, msg: UnsignedGossipMessage) -> Result<Signature, ()> {
            self.0.sign_gossip_message(msg)
        }
        fn sign_message(&self, msg: &[u8]) -> Result<String, ()> {
            self.0.sign_message(msg)
        }
    }

    impl SignerProvider for PlainKeys {
        type EcdsaSigner = DynSigner;
        fn generate_channel_keys_id(&self, inbound: bool, user_channel_id: u128) -> [u8; 32] {
            self.0.generate_channel_keys_id(inbound, user_channel_id)
        }
        fn derive_channel_signer(&self, channel_keys_id: [u8; 32]) -> DynSigner {
            DynSigner::new(self.0.derive_channel_signer(channel_keys_id))
        }
        fn get_destination_script(&self, channel_keys_id: [u8; 32]) -> Result<ScriptBuf, ()> {
            self.0.get_destination_script(channel_keys_id)
        }
        fn get_shutdown_scriptpubkey(&self) -> Result<ShutdownScript, ()> {
            self.0.get_shutdown_scriptpubkey()
        }
    }

    impl EntropySource for PlainKeys {
        fn get_secure_random_bytes(&self) -> [u8; 32] {
            self.0.get_secure_random_bytes()
        }
    }

    impl OutputSpender for PlainKeys {
        fn spend_spendable_outputs(
            &self,
            descriptors: &[&SpendableOutputDescriptor],
            outputs: Vec<TxOut>,
            change_destination_script: ScriptBuf,
            feerate_sat_per_1000_weight: u32,
            locktime: Option<LockTime>,
            secp_ctx: &Secp256k1<All>,
        ) -> Result<Transaction, ()> {
            self.0.spend_spendable_outputs(
                descriptors,
                outputs,
                change_destination_script,
                feerate_sat_per_1000_weight,
                locktime,
                secp_ctx,
            )
        }
    }

    impl DynKeysInterfaceTrait for PlainKeys {}

    struct PlainKeysFactory;

    impl TestSignerFactory for PlainKeysFactory {
        fn make_signer(
            &self,
            seed: &[u8; 32],
            now: Duration,
            v2_remote_key_derivation: bool,
        ) -> Box<dyn DynKeysInterfaceTrait<EcdsaSigner = DynSigner>> {
            Box::new(PlainKeys(KeysManager::new(
                seed,
                now.as_secs(),
                now.subsec_nanos(),
                v2_remote_key_derivation,
            )))
        }
    }

    /// Makes every test node from here on a plain `KeysManager`.
    pub fn install() {
        SIGNER_FACTORY_SET.call_once(|| {
            super::SIGNER_FACTORY.set(Arc::new(PlainKeysFactory));
        });
    }

    static SIGNER_FACTORY_SET: std::sync::Once = std::sync::Once::new();
}

type SdkMessenger = OnionMessenger<
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

/// The SDK, its protocol handler on an in-process messenger, and the LSP's invoice store.
struct Sdk {
    client: AsyncOffersClient,
    handler: Arc<ProtocolHandler>,
    messenger: SdkMessenger,
    node_id: PublicKey,
    _dir: tempfile::TempDir,
}

impl Sdk {
    /// An SDK for `seed`, whose server is `lsp`, with the wallet's channels as hints.
    fn new(seed: [u8; 32], lsp: &Node, wallet: &Node, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lsp_id = lsp.node.get_our_node_id();
        let server = ServerConfig {
            node_id: lsp_id,
            address: "unused:0".into(),
            paths: server_paths(lsp),
        };
        let mut config = Config::new(Network::Testnet, dir.path(), server);
        config.ready_offer_target = 2;
        config.channel_hints = channel_hints(wallet);
        config.best_block_height = Some(wallet.best_block_info().1);
        tweak(&mut config);
        let client = AsyncOffersClient::new(config, seed).unwrap();
        let handler = Arc::new(client.protocol_handler(lsp_id).unwrap());
        let keys = WalletKeys::from_seed(&seed);
        let transport = keys.transport_keys_manager().clone();
        let messenger = OnionMessenger::new(
            transport.clone(),
            transport.clone(),
            Arc::new(LdkLogBridge),
            Arc::new(EmptyNodeIdLookUp {}),
            Arc::new(ServerRouter::new(lsp_id, Network::Testnet, transport)),
            handler.clone(),
            handler.clone(),
            IgnoringMessageHandler {},
            IgnoringMessageHandler {},
        );
        let sdk = Self {
            client,
            handler,
            messenger,
            node_id: keys.transport_node_id(),
            _dir: dir,
        };
        let init = |features| Init {
            features,
            networks: None,
            remote_network_address: None,
        };
        sdk.messenger
            .peer_connected(
                lsp_id,
                &init(lsp.onion_messenger.provided_init_features(sdk.node_id)),
                false,
            )
            .unwrap();
        lsp.onion_messenger
            .peer_connected(
                sdk.node_id,
                &init(sdk.messenger.provided_init_features(lsp_id)),
                true,
            )
            .unwrap();
        sdk.handler.server_connected();
        sdk
    }

    /// Moves onion messages between the SDK and the LSP, and has the LSP persist what the SDK
    /// asks it to, until `done` holds.
    fn run_until(&self, lsp: &Node, store: &InvoiceStore, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "the SDK did not get there in time"
            );
            self.exchange(lsp, store);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.exchange(lsp, store);
    }

    fn exchange(&self, lsp: &Node, store: &InvoiceStore) {
        let lsp_id = lsp.node.get_our_node_id();
        loop {
            let mut moved = false;
            while let Some(message) = self.messenger.next_onion_message_for_peer(lsp_id) {
                lsp.onion_messenger
                    .handle_onion_message(self.node_id, &message);
                moved = true;
            }
            store.serve(lsp);
            while let Some(message) = lsp
                .onion_messenger
                .next_onion_message_for_peer(self.node_id)
            {
                self.messenger.handle_onion_message(lsp_id, &message);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn ready(&self) -> Vec<OfferInfo> {
        self.client.ready_offers()
    }
}

/// The LSP's paths for this wallet, as it would hand them out.
fn server_paths(lsp: &Node) -> Vec<BlindedMessagePath> {
    lsp.node
        .blinded_paths_for_async_recipient(WALLET_RECIPIENT_ID.to_vec(), None)
        .unwrap()
}

/// The wallet node's channels as the SDK's hints.
fn channel_hints(wallet: &Node) -> Vec<ChannelHint> {
    wallet
        .node
        .list_channels()
        .iter()
        .filter_map(ChannelHint::from_channel_details)
        .collect()
}

/// The hints an ldk-node wallet makes of `node.list_channels()`: the README's mapping, field
/// by field, of ldk-node 0.7's `ChannelDetails` (which flattens LDK's counterparty fields).
fn hint_from_ldk_node_channel(channel: &ldk_node::ChannelDetails) -> Option<ChannelHint> {
    if !channel.is_channel_ready {
        return None;
    }
    Some(ChannelHint {
        lsp_node_id: channel.counterparty_node_id,
        // What payers must name to reach us over it: its alias, else its real id.
        short_channel_id: channel.inbound_scid_alias.or(channel.short_channel_id)?,
        fee_base_msat: channel.counterparty_forwarding_info_fee_base_msat?,
        fee_proportional_millionths: channel
            .counterparty_forwarding_info_fee_proportional_millionths?,
        cltv_expiry_delta: channel.counterparty_forwarding_info_cltv_expiry_delta?,
        htlc_minimum_msat: channel.inbound_htlc_minimum_msat.max(1),
        htlc_maximum_msat: channel
            .inbound_htlc_maximum_msat
            .unwrap_or(channel.inbound_capacity_msat),
    })
}

/// The LSP's side of the static invoice server role: LDK raises the events; the invoices go
/// to the reference server's file-backed store and are answered from it.
struct InvoiceStore {
    store: async_offers_server::InvoiceStore,
    _dir: tempfile::TempDir,
}

impl InvoiceStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: async_offers_server::InvoiceStore::new(dir.path().to_path_buf()),
            _dir: dir,
        }
    }

    /// The invoice the LSP holds for the wallet's `slot`.
    fn invoice(&self, slot: u16) -> Option<StaticInvoice> {
        self.store
            .load(WALLET_RECIPIENT_ID, slot)
            .map(|(invoice, _)| invoice)
    }

    /// Handles the LSP's pending server events; any other event is a test failure.
    fn serve(&self, lsp: &Node) {
        for event in lsp.node.get_and_clear_pending_events() {
            match event {
                Event::PersistStaticInvoice {
                    invoice,
                    invoice_request_path,
                    invoice_slot,
                    recipient_id,
                    invoice_persisted_path,
                } => {
                    self.store
                        .save(&recipient_id, invoice_slot, &invoice, &invoice_request_path)
                        .unwrap();
                    lsp.node.static_invoice_persisted(invoice_persisted_path);
                }
                Event::StaticInvoiceRequested {
                    recipient_id,
                    invoice_slot,
                    reply_path,
                    invoice_request,
                } => {
                    let (invoice, forward_path) = self
                        .store
                        .load(&recipient_id, invoice_slot)
                        .expect("a stored invoice for the requested slot");
                    lsp.node
                        .respond_to_static_invoice_request(
                            invoice,
                            reply_path,
                            invoice_request,
                            forward_path,
                        )
                        .unwrap();
                }
                other => panic!("unexpected event at the LSP: {other:?}"),
            }
        }
    }
}

/// Sets up the payer → payer's LSP → LSP → wallet network, the wallet node from
/// [`WALLET_SEED`], plus nodes from `extra_seeds` with channels to nobody.
macro_rules! network {
    ($nodes:ident, $extra_seeds:expr) => {
        plain_keys::install();
        let extra_seeds: &[[u8; 32]] = &$extra_seeds;
        let count = 4 + extra_seeds.len();
        let mut chanmon_cfgs = create_chanmon_cfgs(count);
        let seeds = std::iter::once(WALLET_SEED).chain(extra_seeds.iter().copied());
        for (index, seed) in (WALLET..count).zip(seeds) {
            chanmon_cfgs[index].keys_manager =
                lightning::util::test_utils::TestKeysInterface::new(&seed, Network::Testnet);
        }
        let node_cfgs = create_node_cfgs(count, &chanmon_cfgs);
        let mut configs = vec![None; count];
        configs[PAYER] = Some(payer_config());
        configs[PAYER_LSP] = Some(payer_lsp_config());
        configs[LSP] = Some(lsp_config());
        configs[WALLET] = Some(phone_config());
        let node_chanmgrs = create_node_chanmgrs(count, &node_cfgs, &configs);
        let $nodes = create_network(count, &node_cfgs, &node_chanmgrs);
        // Roomy upstream channels: a payment can outgrow the wallet's first channel.
        create_unannounced_chan_between_nodes_with_value(&$nodes, PAYER, PAYER_LSP, 5_000_000, 0);
        create_announced_chan_between_nodes_with_value(&$nodes, PAYER_LSP, LSP, 16_000_000, 0);
        create_unannounced_chan_between_nodes_with_value(&$nodes, LSP, WALLET, 1_000_000, 0);
        same_height(&$nodes);
    };
}

/// A phone: private channels only.
fn phone_config() -> lightning::util::config::UserConfig {
    let mut config = test_default_channel_config();
    config.channel_handshake_config.announce_for_forwarding = false;
    config
        .channel_handshake_limits
        .force_announced_channel_preference = true;
    config
}

/// A phone that pays: its LSP holds the HTLC until the recipient is back.
fn payer_config() -> lightning::util::config::UserConfig {
    let mut config = phone_config();
    config.hold_outbound_htlcs_at_next_hop = true;
    config
}

/// Holds HTLCs its clients ask it to.
fn payer_lsp_config() -> lightning::util::config::UserConfig {
    let mut config = test_default_channel_config();
    config.enable_htlc_hold = true;
    config
}

/// Forwards to its clients' private channels.
fn lsp_config() -> lightning::util::config::UserConfig {
    let mut config = test_default_channel_config();
    config.accept_forwards_to_priv_channels = true;
    config
}

fn same_height(nodes: &[Node]) {
    let top = nodes
        .iter()
        .map(|node| node.best_block_info().1)
        .max()
        .unwrap();
    for node in nodes {
        let behind = top - node.best_block_info().1;
        if behind > 0 {
            connect_blocks(node, behind);
        }
    }
}

/// Delivers every onion message `from` has for `to`.
fn deliver(from: &Node, to: &Node) -> usize {
    let (from_id, to_id) = (from.node.get_our_node_id(), to.node.get_our_node_id());
    let mut count = 0;
    while let Some(message) = from.onion_messenger.next_onion_message_for_peer(to_id) {
        to.onion_messenger.handle_onion_message(from_id, &message);
        count += 1;
    }
    count
}

/// The wallet node drops off the network.
fn go_offline(wallet: &Node, peers: &[&Node]) {
    let wallet_id = wallet.node.get_our_node_id();
    for peer in peers {
        let peer_id = peer.node.get_our_node_id();
        wallet.node.peer_disconnected(peer_id);
        wallet.onion_messenger.peer_disconnected(peer_id);
        peer.node.peer_disconnected(wallet_id);
        peer.onion_messenger.peer_disconnected(wallet_id);
    }
}

/// Connects two nodes' onion messengers (not their channels).
fn connect_messengers(a: &Node, b: &Node) {
    let init = |from: &Node, to: &Node| Init {
        features: from
            .onion_messenger
            .provided_init_features(to.node.get_our_node_id()),
        networks: None,
        remote_network_address: None,
    };
    a.onion_messenger
        .peer_connected(b.node.get_our_node_id(), &init(b, a), true)
        .unwrap();
    b.onion_messenger
        .peer_connected(a.node.get_our_node_id(), &init(a, b), false)
        .unwrap();
}

/// Onion messages the LSP held for the offline wallet, and whether the wallet is back.
fn intercepted_for(lsp: &Node, wallet: &Node) -> (Vec<lightning::ln::msgs::OnionMessage>, bool) {
    let wallet_id = wallet.node.get_our_node_id();
    let events = std::cell::RefCell::new(Vec::new());
    lsp.onion_messenger.process_pending_events(&|event| {
        events.borrow_mut().push(event);
        Ok(())
    });
    let mut held = Vec::new();
    let mut reconnected = false;
    for event in events.into_inner() {
        match event {
            Event::OnionMessageIntercepted {
                peer_node_id,
                message,
            } if peer_node_id == wallet_id => held.push(message),
            Event::OnionMessagePeerConnected { peer_node_id } => {
                reconnected |= peer_node_id == wallet_id
            }
            other => panic!("unexpected messenger event at the LSP: {other:?}"),
        }
    }
    (held, reconnected)
}

/// Delivers onion messages both ways over `links` (connected peers), serving the LSP's invoice
/// requests from `store`, until nothing moves.
fn settle(links: &[(&Node, &Node)], lsp: &Node, store: &InvoiceStore) {
    loop {
        let mut moved = 0;
        for (a, b) in links {
            moved += deliver(a, b) + deliver(b, a);
        }
        store.serve(lsp);
        if moved == 0 {
            return;
        }
    }
}

/// The payer, having received a static invoice, locks in an HTLC its own LSP must hold.
fn lock_in_held_htlc(payer: &Node, payer_lsp: &Node) -> lightning::ln::msgs::UpdateAddHTLC {
    check_added_monitors(payer, 1);
    let update = get_htlc_update_msgs(payer, &payer_lsp.node.get_our_node_id());
    let add = update.update_add_htlcs[0].clone();
    assert!(
        add.hold_htlc.is_some(),
        "the payer asks for the HTLC to be held"
    );
    payer_lsp
        .node
        .handle_update_add_htlc(payer.node.get_our_node_id(), &add);
    do_commitment_signed_dance(payer_lsp, payer, &update.commitment_signed, false, true);
    add
}

/// What a completed payment went through.
struct Paid {
    /// The static invoice the payer paid.
    invoice: StaticInvoice,
    /// The wallet's channel the HTLC arrived on.
    channel: ChannelId,
}

/// Whether the wallet node is reachable when the payer pays.
#[derive(Clone, Copy, PartialEq)]
enum Wallet {
    Online,
    Offline,
}

/// The payer pays `offer` with the SDK's static invoice, which the LSP serves; the payer's LSP
/// holds the HTLC until the wallet releases it, and the wallet claims. An offline wallet does
/// so when it comes back; an online one at once, its own answer to the forwarded invoice
/// request arriving after the static invoice and being ignored.
fn pay_static_invoice<'a, 'b, 'c>(
    nodes: &[Node<'a, 'b, 'c>],
    store: &InvoiceStore,
    offer: &OfferInfo,
    amount_msats: u64,
    state: Wallet,
) -> Paid {
    let (payer, payer_lsp, lsp, wallet) = (
        &nodes[PAYER],
        &nodes[PAYER_LSP],
        &nodes[LSP],
        &nodes[WALLET],
    );
    let id = |node: &Node| node.node.get_our_node_id();
    let with_wallet = [
        (payer, payer_lsp),
        (payer, lsp),
        (payer_lsp, lsp),
        (lsp, wallet),
        (payer_lsp, wallet),
        (payer, wallet),
    ];
    let links = match state {
        Wallet::Online => &with_wallet[..],
        Wallet::Offline => {
            let others: Vec<_> = nodes.iter().filter(|n| id(n) != id(wallet)).collect();
            go_offline(wallet, &others);
            &with_wallet[..3]
        }
    };

    let offer: Offer = offer.offer.parse().unwrap();
    payer
        .node
        .pay_for_offer(
            &offer,
            Some(amount_msats),
            PaymentId([0x42; 32]),
            Default::default(),
        )
        .unwrap();
    // invoice_request → the LSP, which answers with the wallet's static invoice.
    settle(links, lsp, store);

    let add = lock_in_held_htlc(payer, payer_lsp);
    payer_lsp.node.process_pending_htlc_forwards();
    let pending = payer_lsp.node.get_and_clear_pending_msg_events();
    assert!(pending.is_empty(), "held, not forwarded: {pending:?}");

    // held_htlc_available goes out over the invoice's paths.
    settle(links, lsp, store);
    if state == Wallet::Offline {
        // The LSP keeps it for the wallet, which comes back and gets it.
        let (held, _) = intercepted_for(lsp, wallet);
        assert!(
            !held.is_empty(),
            "the LSP holds messages for the offline wallet"
        );
        let mut reconnect = ReconnectArgs::new(lsp, wallet);
        reconnect.send_channel_ready = (true, true);
        reconnect_nodes(reconnect);
        // Its messenger may reach any announced node directly, as a real node would connect.
        connect_messengers(wallet, payer_lsp);
        connect_messengers(wallet, payer);
        let (_, reconnected) = intercepted_for(lsp, wallet);
        assert!(reconnected);
        for message in &held {
            wallet
                .onion_messenger
                .handle_onion_message(id(lsp), message);
        }
        // It answers release_held_htlc.
        settle(&with_wallet, lsp, store);
    }

    // The payer's LSP forwards the released HTLC; the wallet claims it.
    payer_lsp.node.process_pending_htlc_forwards();
    let mut events = payer_lsp.node.get_and_clear_pending_msg_events();
    let forward = remove_first_msg_event_to_node(&id(lsp), &mut events);
    check_added_monitors(payer_lsp, 1);
    let claimable = do_pass_along_path(PassAlongPathArgs::new(
        payer_lsp,
        &[lsp, wallet],
        amount_msats,
        add.payment_hash,
        forward,
    ))
    .expect("the wallet can claim");
    let (preimage, channel) = match claimable {
        Event::PaymentClaimable {
            purpose,
            receiving_channel_ids,
            ..
        } => (purpose.preimage().unwrap(), receiving_channel_ids[0].0),
        other => panic!("not claimable: {other:?}"),
    };
    let route: &[&[&Node]] = &[&[payer_lsp, lsp, wallet]];
    let (paid, _) = claim_payment_along_route(ClaimAlongRouteArgs::new(payer, route, preimage));
    match paid {
        Some(lightning::events::PaidBolt12Invoice::StaticInvoice(invoice)) => {
            Paid { invoice, channel }
        }
        other => panic!("paid something else than a static invoice: {other:?}"),
    }
}

#[test]
fn an_offline_wallet_is_paid_through_a_held_htlc_and_claims_when_back() {
    network!(nodes, []);
    let (lsp, wallet) = (&nodes[LSP], &nodes[WALLET]);
    let store = InvoiceStore::new();
    let sdk = Sdk::new(WALLET_SEED, lsp, wallet, |_| {});
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let offer = sdk.client.take_offer(Some("coffee".into())).unwrap();
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);

    let paid = pay_static_invoice(&nodes, &store, &offer, 5_000, Wallet::Offline);
    assert_eq!(paid.invoice.offer_id().to_string(), offer.offer_id);
}

/// An ldk-node wallet's listed channels, mapped as the README shows, give the hints LDK's own
/// channel details give, and an offline wallet is paid over them.
#[test]
fn an_ldk_node_wallets_listed_channels_give_hints_a_payment_takes() {
    network!(nodes, []);
    let (lsp, wallet) = (&nodes[LSP], &nodes[WALLET]);
    let listed: Vec<ldk_node::ChannelDetails> = wallet
        .node
        .list_channels()
        .into_iter()
        .map(ldk_node::ChannelDetails::from)
        .collect();
    let hints: Vec<ChannelHint> = listed
        .iter()
        .filter_map(hint_from_ldk_node_channel)
        .collect();
    assert_eq!(hints.len(), 1, "the wallet's channel with its LSP");
    assert_eq!(hints, channel_hints(wallet));
    let store = InvoiceStore::new();
    let sdk = Sdk::new(WALLET_SEED, lsp, wallet, |config| {
        config.channel_hints = hints.clone();
    });
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let offer = sdk.client.take_offer(Some("from ldk-node".into())).unwrap();
    let paid = pay_static_invoice(&nodes, &store, &offer, 3_000, Wallet::Offline);
    assert_eq!(paid.invoice.offer_id().to_string(), offer.offer_id);
}

#[test]
fn a_used_offer_is_paid_with_its_rotated_invoice() {
    network!(nodes, []);
    let (lsp, wallet) = (&nodes[LSP], &nodes[WALLET]);
    let store = InvoiceStore::new();
    let sdk = Sdk::new(WALLET_SEED, lsp, wallet, |config| {
        config.invoice_refresh_interval = Duration::from_secs(1);
    });
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let offer = sdk.client.take_offer(Some("rent".into())).unwrap();
    let first = store.invoice(offer.slot).unwrap();

    // Invoice times are whole seconds: two of them make the handed-out offer's invoice due.
    std::thread::sleep(Duration::from_secs(2));
    sdk.handler.tick();
    sdk.run_until(lsp, &store, |_| store.invoice(offer.slot).unwrap() != first);
    let rotated = store.invoice(offer.slot).unwrap();
    assert!(rotated.created_at() > first.created_at());

    let paid = pay_static_invoice(&nodes, &store, &offer, 7_000, Wallet::Offline);
    assert!(paid.invoice == rotated, "the payer got the rotated invoice");
}

#[test]
fn new_channel_hints_are_in_the_next_invoice_and_the_payment_takes_them() {
    network!(nodes, []);
    let (lsp, wallet) = (&nodes[LSP], &nodes[WALLET]);
    let store = InvoiceStore::new();
    let sdk = Sdk::new(WALLET_SEED, lsp, wallet, |_| {});
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let offer = sdk.client.take_offer(None).unwrap();
    let first = store.invoice(offer.slot).unwrap();
    let old_channel = wallet.node.list_channels()[0].channel_id;

    // A second, bigger channel with the LSP; the wallet now hints only that one.
    create_unannounced_chan_between_nodes_with_value(&nodes, LSP, WALLET, 2_000_000, 0);
    same_height(&nodes);
    let new_channel = wallet
        .node
        .list_channels()
        .into_iter()
        .find(|channel| channel.channel_id != old_channel)
        .unwrap();
    let hint = ChannelHint::from_channel_details(&new_channel).expect("a usable hint");
    // Stopped (as an app going to the background is told to), then driven by its messenger
    // again: its first tick takes up the refresh the stop held back.
    sdk.client.stop();
    sdk.client.update_channels(vec![hint]).unwrap();
    sdk.handler.tick();
    sdk.run_until(lsp, &store, |_| store.invoice(offer.slot).unwrap() != first);
    let rotated = store.invoice(offer.slot).unwrap();
    let most = |invoice: &StaticInvoice| invoice.payment_paths()[0].payinfo.htlc_maximum_msat;
    assert!(
        most(&rotated) > most(&first),
        "the new invoice's path is over the bigger, new channel"
    );

    // More than the first channel can carry: only the new hint makes this payable.
    let amount_msats = 150_000_000;
    assert!(most(&first) < amount_msats && amount_msats <= most(&rotated));
    let paid = pay_static_invoice(&nodes, &store, &offer, amount_msats, Wallet::Offline);
    assert!(paid.invoice == rotated);
    assert_eq!(paid.channel, new_channel.channel_id);
}

/// The payment hash of the HTLC an update carries.
fn added_htlc_hash(event: &MessageSendEvent) -> lightning::types::payment::PaymentHash {
    match event {
        MessageSendEvent::UpdateHTLCs { updates, .. } => updates.update_add_htlcs[0].payment_hash,
        other => panic!("not an HTLC update: {other:?}"),
    }
}

#[test]
fn an_online_wallet_is_paid_once_whichever_invoice_reaches_the_payer_first() {
    network!(nodes, []);
    let (payer, payer_lsp, lsp, wallet) = (
        &nodes[PAYER],
        &nodes[PAYER_LSP],
        &nodes[LSP],
        &nodes[WALLET],
    );
    let id = |node: &Node| node.node.get_our_node_id();
    let store = InvoiceStore::new();
    let sdk = Sdk::new(WALLET_SEED, lsp, wallet, |_| {});
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let info = sdk.client.take_offer(Some("tip jar".into())).unwrap();
    let offer: Offer = info.offer.parse().unwrap();

    let amount_msats = 12_000;
    payer
        .node
        .pay_for_offer(
            &offer,
            Some(amount_msats),
            PaymentId([0x44; 32]),
            Default::default(),
        )
        .unwrap();
    assert!(deliver(payer, lsp) > 0, "the payer asks the LSP");
    store.serve(lsp);
    // The LSP answered with the static invoice and forwarded the request to the wallet. Let
    // the wallet's answer reach the payer first: the wallet must have verified the request,
    // since only the offer's own derived key can sign an invoice the payer accepts.
    assert!(
        deliver(lsp, wallet) > 0,
        "the request is forwarded to the wallet"
    );
    assert!(
        deliver(wallet, payer_lsp) > 0,
        "the wallet answers with an invoice"
    );
    assert!(deliver(payer_lsp, payer) > 0);
    check_added_monitors(payer, 1);
    let mut events = payer.node.get_and_clear_pending_msg_events();
    let first_hop = remove_first_msg_event_to_node(&id(payer_lsp), &mut events);
    let payment_hash = added_htlc_hash(&first_hop);

    // The static invoice arrives late and is ignored: one payment only.
    settle(
        &[(payer, payer_lsp), (payer, lsp), (payer_lsp, lsp)],
        lsp,
        &store,
    );
    check_added_monitors(payer, 0);
    assert!(payer.node.get_and_clear_pending_msg_events().is_empty());

    let path = [payer_lsp, lsp, wallet];
    let claimable = do_pass_along_path(PassAlongPathArgs::new(
        payer,
        &path,
        amount_msats,
        payment_hash,
        first_hop,
    ))
    .expect("the wallet can claim");
    let preimage = match claimable {
        Event::PaymentClaimable { purpose, .. } => purpose.preimage().unwrap(),
        other => panic!("not claimable: {other:?}"),
    };
    let (paid, _) = claim_payment_along_route(ClaimAlongRouteArgs::new(payer, &[&path], preimage));
    match paid {
        Some(lightning::events::PaidBolt12Invoice::Bolt12Invoice(invoice)) => {
            assert_eq!(
                Some(invoice.signing_pubkey()),
                offer.issuer_signing_pubkey(),
                "signed with the SDK offer's key"
            );
        }
        other => panic!("expected the wallet's own invoice to be paid: {other:?}"),
    }

    // When the static invoice comes first instead, the online wallet releases the held HTLC
    // at once and its own invoice, arriving second, is ignored.
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let second = sdk.client.take_offer(None).unwrap();
    let paid = pay_static_invoice(&nodes, &store, &second, 6_000, Wallet::Online);
    assert_eq!(paid.invoice.offer_id().to_string(), second.offer_id);
}

#[test]
fn an_invoice_from_a_different_seed_is_rejected_by_the_wallet() {
    const OTHER_SEED: [u8; 32] = [0x99; 32];
    const OTHER: usize = 4;
    network!(nodes, [OTHER_SEED]);
    let (payer, payer_lsp, lsp, wallet, other) = (
        &nodes[PAYER],
        &nodes[PAYER_LSP],
        &nodes[LSP],
        &nodes[WALLET],
        &nodes[OTHER],
    );
    let id = |node: &Node| node.node.get_our_node_id();
    let store = InvoiceStore::new();
    // Control: with the right seed, the same network pays.
    let right = Sdk::new(WALLET_SEED, lsp, wallet, |_| {});
    right.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let offer = right.client.take_offer(None).unwrap();
    pay_static_invoice(&nodes, &store, &offer, 8_000, Wallet::Online);

    // The app passed the wrong seed: offers and invoices are made with another node's keys,
    // over the wallet's real channel. That other node exists, so the held HTLC is released
    // and reaches the wallet. Forwarded requests go to the client, out of the way.
    let sdk = Sdk::new(OTHER_SEED, lsp, wallet, |config| {
        config.servers[0].paths = lsp
            .node
            .blinded_paths_for_async_recipient(b"wrong seed".to_vec(), None)
            .unwrap();
        config.invoice_request_target = async_offers::InvoiceRequestTarget::Client;
    });
    sdk.run_until(lsp, &store, |sdk| sdk.ready().len() == 2);
    let info = sdk.client.take_offer(None).unwrap();
    let offer: Offer = info.offer.parse().unwrap();

    let amount_msats = 8_000;
    payer
        .node
        .pay_for_offer(
            &offer,
            Some(amount_msats),
            PaymentId([0x45; 32]),
            Default::default(),
        )
        .unwrap();
    let links = [
        (payer, payer_lsp),
        (payer, lsp),
        (payer_lsp, lsp),
        (lsp, other),
        (payer_lsp, other),
        (payer, other),
    ];
    settle(&links, lsp, &store);
    let add = lock_in_held_htlc(payer, payer_lsp);
    // held_htlc_available reaches the other node, which releases the HTLC.
    settle(&links, lsp, &store);
    payer_lsp.node.process_pending_htlc_forwards();
    let mut events = payer_lsp.node.get_and_clear_pending_msg_events();
    let forward = remove_first_msg_event_to_node(&id(lsp), &mut events);
    check_added_monitors(payer_lsp, 1);

    // The wallet cannot open the last hop, which was made for another key: it fails the HTLC.
    do_pass_along_path(
        PassAlongPathArgs::new(
            payer_lsp,
            &[lsp, wallet],
            amount_msats,
            add.payment_hash,
            forward,
        )
        .without_claimable_event()
        .expect_failure(HTLCHandlingFailureType::InvalidOnion),
    );
    let from_wallet = get_htlc_update_msgs(wallet, &id(lsp));
    let malformed = &from_wallet.update_fail_malformed_htlcs[0];
    // BOLT 4 `invalid_onion_blinding`: BADONION | PERM | 24.
    assert_eq!(malformed.failure_code, 0x8000 | 0x4000 | 24);
    lsp.node
        .handle_update_fail_malformed_htlc(id(wallet), malformed);
    do_commitment_signed_dance(lsp, wallet, &from_wallet.commitment_signed, true, false);
    let from_lsp = get_htlc_update_msgs(lsp, &id(payer_lsp));
    payer_lsp
        .node
        .handle_update_fail_htlc(id(lsp), &from_lsp.update_fail_htlcs[0]);
    do_commitment_signed_dance(payer_lsp, lsp, &from_lsp.commitment_signed, true, false);
    let from_payer_lsp = get_htlc_update_msgs(payer_lsp, &id(payer));
    payer
        .node
        .handle_update_fail_htlc(id(payer_lsp), &from_payer_lsp.update_fail_htlcs[0]);
    do_commitment_signed_dance(
        payer,
        payer_lsp,
        &from_payer_lsp.commitment_signed,
        false,
        false,
    );
    expect_payment_failed_conditions(
        payer,
        add.payment_hash,
        false,
        PaymentFailedConditions::new()
            .expected_htlc_error_data(LocalHTLCFailureReason::InvalidOnionBlinding, &[0; 32]),
    );
    assert!(
        wallet.node.get_and_clear_pending_events().is_empty(),
        "nothing claimable, nothing claimed"
    );
}
