//! Builds offers, static invoices and their blinded paths from the server's paths and the
//! wallet's channel hints. Pure CPU work with LDK's builders; it never touches the cache.

use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    AsyncPaymentsContext, BlindedMessagePath, MessageContext, MessageForwardNode, OffersContext,
};
use lightning::blinded_path::payment::{
    AsyncBolt12OfferContext, BlindedPaymentPath, ForwardTlvs, PaymentConstraints, PaymentContext,
    PaymentForwardNode, PaymentRelay, UnauthenticatedReceiveTlvs,
};
use lightning::ln::channelmanager::MIN_FINAL_CLTV_EXPIRY_DELTA;
use lightning::offers::flow::MAX_STATIC_INVOICE_SIZE_BYTES;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::{Offer, OfferBuilder};
use lightning::offers::parse::Bolt12SemanticError;
use lightning::offers::static_invoice::{StaticInvoice, StaticInvoiceBuilder};
use lightning::sign::ReceiveAuthKey;
use lightning::types::features::BlindedHopFeatures;
use lightning::util::ser::Writeable;

use crate::config::{ChannelHint, InvoiceRequestTarget};
use crate::keys::{WalletKeys, EXPIRY_GRACE_SECS};

/// At most this many payment paths and held-HTLC paths per invoice, as LDK's router does.
const MAX_PATHS: usize = 3;
/// Blinded message paths that payers see are padded to this many hops, like LDK pads them,
/// so a payer cannot tell how far the wallet is from the introduction node.
const PADDED_PATH_LENGTH: usize = 4;
/// LDK assumes fast blocks when turning an expiry in seconds into blocks.
const SECONDS_PER_BLOCK: u64 = 9 * 60;
/// LDK's `CLTV_FAR_FAR_AWAY`: the minimum CLTV horizon of a receive path.
const MIN_RECEIVE_CLTV_HORIZON: u32 = 14 * 24 * 6;
/// LDK's `LATENCY_GRACE_PERIOD_BLOCKS`.
const LATENCY_GRACE_PERIOD_BLOCKS: u32 = 3;

/// Mainnet's halving block, a known (height, time) point to extrapolate the tip from.
const REFERENCE_HEIGHT: u32 = 840_000;
const REFERENCE_TIME_SECS: u64 = 1_713_571_767;

/// A static invoice and the path the server forwards payers' invoice requests over.
#[derive(Clone, Debug)]
pub(crate) struct BuiltInvoice {
    pub invoice: StaticInvoice,
    pub forward_invoice_request_path: BlindedMessagePath,
}

/// Why an offer or its invoice could not be built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BuildError {
    /// LDK refused the offer (no paths, say).
    Offer(Bolt12SemanticError),
    /// None of the channel hints gives a payment path LDK can build.
    NoUsableHint { hints: usize },
    /// LDK could not build the direct payment path to the wallet node.
    DirectPath,
    /// LDK refused to build or sign the static invoice.
    Invoice(Bolt12SemanticError),
    /// The invoice is over the size servers store, even over one channel.
    TooLarge { size: usize },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Offer(e) => write!(f, "offer: {e:?}"),
            Self::NoUsableHint { hints } => {
                write!(f, "none of the {hints} channel hints gives a payment path")
            }
            Self::DirectPath => write!(f, "direct payment path"),
            Self::Invoice(e) => write!(f, "static invoice: {e:?}"),
            Self::TooLarge { size } => write!(
                f,
                "the static invoice would be {size} bytes, over the {MAX_STATIC_INVOICE_SIZE_BYTES} servers store"
            ),
        }
    }
}

/// Where the wallet-node side of the paths (held-HTLC and forward paths) terminate.
#[derive(Clone, Copy)]
pub(crate) struct PathEnd {
    pub node_id: PublicKey,
    pub receive_auth_key: ReceiveAuthKey,
}

/// Builds offers and static invoices for one wallet.
pub(crate) struct OfferFactory {
    keys: Arc<WalletKeys>,
    secp: Secp256k1<secp256k1::All>,
    network: Network,
    /// Where forwarded invoice requests should arrive.
    invoice_request_target: InvoiceRequestTarget,
}

impl OfferFactory {
    pub fn new(
        keys: Arc<WalletKeys>,
        network: Network,
        invoice_request_target: InvoiceRequestTarget,
    ) -> Self {
        Self {
            keys,
            secp: Secp256k1::new(),
            network,
            invoice_request_target,
        }
    }

    /// Where forwarded invoice requests should arrive: the wallet node, or this client.
    fn invoice_request_end(&self) -> PathEnd {
        match self.invoice_request_target {
            InvoiceRequestTarget::WalletNode => PathEnd {
                node_id: self.keys.wallet_node_id(),
                receive_auth_key: self.keys.wallet_receive_auth_key(),
            },
            InvoiceRequestTarget::Client => PathEnd {
                node_id: self.keys.transport_node_id(),
                receive_auth_key: self.keys.transport_receive_auth_key(),
            },
        }
    }

    /// An amount-less offer over the server's `paths`, expiring with them, with a signing key
    /// derived from a fresh nonce. Errors only if `paths` is empty.
    pub fn build_offer(
        &self,
        paths: Vec<BlindedMessagePath>,
        paths_absolute_expiry: Option<Duration>,
    ) -> Result<(Offer, Nonce), BuildError> {
        let nonce = Nonce::from_entropy_source(&**self.keys.wallet_keys_manager());
        let offer = self.offer_with_nonce(paths, paths_absolute_expiry, nonce)?;
        Ok((offer, nonce))
    }

    /// Whether `offer` is one this wallet built with `nonce` on this network: its signing key
    /// is derived from the seed's keys and the nonce, so building it again over its own paths
    /// and expiry gives the very same offer. An offer of another seed or network does not.
    pub fn built_here(&self, offer: &Offer, nonce: Nonce) -> bool {
        self.offer_with_nonce(offer.paths().to_vec(), offer.absolute_expiry(), nonce)
            .is_ok_and(|rebuilt| rebuilt == *offer)
    }

    fn offer_with_nonce(
        &self,
        paths: Vec<BlindedMessagePath>,
        paths_absolute_expiry: Option<Duration>,
        nonce: Nonce,
    ) -> Result<Offer, BuildError> {
        let expanded_key = self.keys.expanded_key();
        let mut builder = OfferBuilder::deriving_signing_pubkey(
            self.keys.wallet_node_id(),
            &expanded_key,
            nonce,
            &self.secp,
        )
        .chain(self.network);
        for path in paths {
            builder = builder.path(path);
        }
        if let Some(expiry) = paths_absolute_expiry {
            builder = builder.absolute_expiry(expiry);
        }
        builder.build().map_err(BuildError::Offer)
    }

    /// A static invoice for `offer`, created at `now`, expiring with the offer, with payment
    /// paths through each hinted LSP channel (or a direct path when there are none), and the
    /// path `server` (the one that will hold the invoice) forwards invoice requests over.
    ///
    /// A hint LDK cannot turn into a payment path is left out, with a warning; if none is left,
    /// it fails. An invoice over the [`MAX_STATIC_INVOICE_SIZE_BYTES`] servers store is built
    /// again over fewer channels until it fits (a server would drop it silently).
    pub fn build_invoice(
        &self,
        offer: &Offer,
        nonce: Nonce,
        server: PublicKey,
        hints: &[ChannelHint],
        now: Duration,
        best_block_height: Option<u32>,
    ) -> Result<BuiltInvoice, BuildError> {
        let relative_expiry_secs = offer
            .absolute_expiry()
            .map(|expiry| expiry.saturating_sub(now).as_secs())
            .map(|secs| u32::try_from(secs).unwrap_or(u32::MAX))
            .unwrap_or(u32::MAX);
        let payment_secret = self
            .keys
            .async_payment_secret(relative_expiry_secs, now.as_secs());

        let tip = best_block_height.unwrap_or_else(|| estimated_tip_upper_bound(self.network, now));
        let horizon_blocks = (relative_expiry_secs as u64 / SECONDS_PER_BLOCK) as u32;
        let max_cltv_expiry = horizon_blocks
            .max(MIN_RECEIVE_CLTV_HORIZON)
            .saturating_add(LATENCY_GRACE_PERIOD_BLOCKS)
            .saturating_add(tip);
        let payee_tlvs = UnauthenticatedReceiveTlvs {
            payment_secret,
            payment_constraints: PaymentConstraints {
                max_cltv_expiry,
                htlc_minimum_msat: 1,
            },
            payment_context: PaymentContext::AsyncBolt12Offer(AsyncBolt12OfferContext {
                offer_nonce: nonce,
            }),
        };
        let entropy = &**self.keys.wallet_keys_manager();
        let expanded_key = self.keys.expanded_key();
        let payee_tlvs =
            payee_tlvs.authenticate(Nonce::from_entropy_source(entropy), &expanded_key);
        let wallet = self.keys.wallet_node_id();

        // Each usable hint with its payment path, at most MAX_PATHS of them.
        let mut routes: Vec<(&ChannelHint, BlindedPaymentPath)> = Vec::new();
        for hint in hints {
            if routes.len() == MAX_PATHS {
                break;
            }
            let forward = PaymentForwardNode {
                tlvs: ForwardTlvs {
                    short_channel_id: hint.short_channel_id,
                    payment_relay: PaymentRelay {
                        cltv_expiry_delta: hint.cltv_expiry_delta,
                        fee_proportional_millionths: hint.fee_proportional_millionths,
                        fee_base_msat: hint.fee_base_msat,
                    },
                    payment_constraints: PaymentConstraints {
                        max_cltv_expiry: max_cltv_expiry
                            .saturating_add(hint.cltv_expiry_delta as u32),
                        htlc_minimum_msat: hint.htlc_minimum_msat,
                    },
                    features: BlindedHopFeatures::empty(),
                    next_blinding_override: None,
                },
                node_id: hint.lsp_node_id,
                htlc_maximum_msat: hint.htlc_maximum_msat,
            };
            match BlindedPaymentPath::new(
                &[forward],
                wallet,
                payee_tlvs.clone(),
                u64::MAX,
                MIN_FINAL_CLTV_EXPIRY_DELTA,
                entropy,
                &self.secp,
            ) {
                Ok(path) => routes.push((hint, path)),
                Err(()) => log::warn!(
                    "channel {} is left out of the invoice: LDK cannot build a payment path over it (fees, limits or CLTV delta)",
                    hint.short_channel_id
                ),
            }
        }
        if routes.is_empty() && !hints.is_empty() {
            return Err(BuildError::NoUsableHint { hints: hints.len() });
        }
        let direct = match routes.is_empty() {
            true => Some(
                BlindedPaymentPath::one_hop(
                    wallet,
                    payee_tlvs,
                    MIN_FINAL_CLTV_EXPIRY_DELTA,
                    entropy,
                    &self.secp,
                )
                .map_err(|()| BuildError::DirectPath)?,
            ),
            false => None,
        };

        // Payers send `held_htlc_available` to the wallet node through its LSPs (or the server).
        let held_htlc_context =
            MessageContext::AsyncPayments(AsyncPaymentsContext::InboundPayment {
                path_absolute_expiry: Duration::from_secs(
                    now.as_secs()
                        .saturating_add(relative_expiry_secs as u64)
                        .saturating_add(EXPIRY_GRACE_SECS),
                ),
            });
        let wallet_end = PathEnd {
            node_id: wallet,
            receive_auth_key: self.keys.wallet_receive_auth_key(),
        };
        // All the usable channels, then fewer until the invoice fits what servers store.
        let mut channels = routes.len();
        loop {
            let used_hints: Vec<ChannelHint> = routes[..channels]
                .iter()
                .map(|(hint, _)| (*hint).clone())
                .collect();
            let payment_paths: Vec<BlindedPaymentPath> = match &direct {
                Some(path) => vec![path.clone()],
                None => routes[..channels]
                    .iter()
                    .map(|(_, path)| path.clone())
                    .collect(),
            };
            let built = self.assemble_invoice(
                offer,
                nonce,
                server,
                &used_hints,
                payment_paths,
                &held_htlc_context,
                wallet_end,
                now,
                relative_expiry_secs,
            )?;
            let size = built.invoice.serialized_length();
            if size <= MAX_STATIC_INVOICE_SIZE_BYTES {
                if channels < routes.len() {
                    log::warn!(
                        "the invoice carries {channels} of {} usable channels: with more it would be over the {MAX_STATIC_INVOICE_SIZE_BYTES} bytes servers store",
                        routes.len()
                    );
                }
                return Ok(built);
            }
            if channels <= 1 {
                return Err(BuildError::TooLarge { size });
            }
            channels -= 1;
        }
    }

    /// Signs the invoice over `payment_paths`, with held-HTLC and forward paths through the
    /// LSPs of `hints` (or the server).
    #[allow(clippy::too_many_arguments)]
    fn assemble_invoice(
        &self,
        offer: &Offer,
        nonce: Nonce,
        server: PublicKey,
        hints: &[ChannelHint],
        payment_paths: Vec<BlindedPaymentPath>,
        held_htlc_context: &MessageContext,
        wallet_end: PathEnd,
        now: Duration,
        relative_expiry_secs: u32,
    ) -> Result<BuiltInvoice, BuildError> {
        let expanded_key = self.keys.expanded_key();
        let held_htlc_paths = wallet_introduction_nodes(hints, server)
            .into_iter()
            .map(|intro| self.padded_path(intro, wallet_end, held_htlc_context.clone()))
            .collect();

        let invoice = StaticInvoiceBuilder::for_offer_using_derived_keys(
            offer,
            payment_paths,
            held_htlc_paths,
            now,
            &expanded_key,
            nonce,
            &self.secp,
        )
        .and_then(|builder| {
            builder
                .allow_mpp()
                .relative_expiry(relative_expiry_secs)
                .build_and_sign(&self.secp)
        })
        .map_err(BuildError::Invoice)?;

        let invoice_request_end = self.invoice_request_end();
        let forward_intro = match invoice_request_end.node_id == wallet_end.node_id {
            true => wallet_introduction_nodes(hints, server)[0],
            false => server,
        };
        // Not padded, unlike the paths payers see: only the server ever gets this one, and its
        // introduction node is the server itself or an LSP the stored invoice names anyway.
        let forward_invoice_request_path = BlindedMessagePath::new(
            &[MessageForwardNode {
                node_id: forward_intro,
                short_channel_id: None,
            }],
            invoice_request_end.node_id,
            invoice_request_end.receive_auth_key,
            MessageContext::Offers(OffersContext::InvoiceRequest { nonce }),
            &**self.keys.wallet_keys_manager(),
            &self.secp,
        );
        Ok(BuiltInvoice {
            invoice,
            forward_invoice_request_path,
        })
    }

    fn padded_path(
        &self,
        intro: PublicKey,
        end: PathEnd,
        context: MessageContext,
    ) -> BlindedMessagePath {
        BlindedMessagePath::new_with_dummy_hops(
            &[MessageForwardNode {
                node_id: intro,
                short_channel_id: None,
            }],
            end.node_id,
            PADDED_PATH_LENGTH - 2,
            end.receive_auth_key,
            context,
            &**self.keys.wallet_keys_manager(),
            &self.secp,
        )
    }

    /// The network offers are built for.
    pub fn network(&self) -> Network {
        self.network
    }

    pub fn secp(&self) -> &Secp256k1<secp256k1::All> {
        &self.secp
    }
}

/// The wallet node's peers that can introduce messages to it: its LSPs, else the server.
fn wallet_introduction_nodes(hints: &[ChannelHint], server: PublicKey) -> Vec<PublicKey> {
    let mut lsps: Vec<PublicKey> = Vec::new();
    for hint in hints {
        if !lsps.contains(&hint.lsp_node_id) && lsps.len() < MAX_PATHS {
            lsps.push(hint.lsp_node_id);
        }
    }
    if lsps.is_empty() {
        lsps.push(server);
    }
    lsps
}

/// An upper bound of the chain tip at `now`, extrapolated from a known mainnet block with fast
/// (9-minute) blocks. Over-estimating only loosens the payment's CLTV cap; under-estimating
/// would make payments fail, so test networks with taller chains get a large floor.
pub(crate) fn estimated_tip_upper_bound(network: Network, now: Duration) -> u32 {
    let elapsed_blocks = now.as_secs().saturating_sub(REFERENCE_TIME_SECS) / SECONDS_PER_BLOCK;
    let mainnet =
        REFERENCE_HEIGHT.saturating_add(u32::try_from(elapsed_blocks).unwrap_or(u32::MAX));
    match network {
        // testnet3's chain is several million blocks tall.
        Network::Testnet => mainnet.saturating_add(5_000_000),
        _ => mainnet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightning::bitcoin::secp256k1::SecretKey;

    fn pubkey(byte: u8) -> PublicKey {
        PublicKey::from_secret_key(
            &Secp256k1::new(),
            &SecretKey::from_slice(&[byte; 32]).unwrap(),
        )
    }

    fn factory() -> (OfferFactory, Arc<WalletKeys>) {
        let keys = Arc::new(WalletKeys::from_seed(&[1; 32]));
        (
            OfferFactory::new(
                keys.clone(),
                Network::Regtest,
                InvoiceRequestTarget::WalletNode,
            ),
            keys,
        )
    }

    /// One one-hop server path.
    fn server_paths(factory: &OfferFactory) -> Vec<BlindedMessagePath> {
        long_server_paths(factory, 1, 0)
    }

    fn hint(scid: u64, fee_base_msat: u32) -> ChannelHint {
        ChannelHint {
            lsp_node_id: pubkey(9),
            short_channel_id: scid,
            fee_base_msat,
            fee_proportional_millionths: 100,
            cltv_expiry_delta: 72,
            htlc_minimum_msat: 1,
            htlc_maximum_msat: 1_000_000_000,
        }
    }

    #[test]
    fn an_offer_is_known_as_built_here_only_by_its_own_seed_network_and_nonce() {
        let (factory, _) = factory();
        let expiry = Some(Duration::from_secs(1_900_000_000));
        let (offer, nonce) = factory.build_offer(server_paths(&factory), expiry).unwrap();
        assert!(factory.built_here(&offer, nonce));
        let (_, other_nonce) = factory.build_offer(server_paths(&factory), expiry).unwrap();
        assert!(!factory.built_here(&offer, other_nonce));
        let other_keys = Arc::new(WalletKeys::from_seed(&[2; 32]));
        let other_wallet = OfferFactory::new(
            other_keys,
            Network::Regtest,
            InvoiceRequestTarget::WalletNode,
        );
        assert!(!other_wallet.built_here(&offer, nonce));
        let keys = factory.keys.clone();
        let mainnet = OfferFactory::new(keys, Network::Bitcoin, InvoiceRequestTarget::WalletNode);
        assert!(!mainnet.built_here(&offer, nonce));
    }

    #[test]
    fn invoice_matches_its_offer_and_expires_with_it() {
        let (factory, keys) = factory();
        let now = Duration::from_secs(1_800_000_000);
        let expiry = now + Duration::from_secs(365 * 24 * 3600);
        let (offer, nonce) = factory
            .build_offer(server_paths(&factory), Some(expiry))
            .unwrap();
        assert_eq!(offer.absolute_expiry(), Some(expiry));
        assert!(offer.amount().is_none());
        assert_eq!(
            offer.chains(),
            vec![lightning::bitcoin::constants::ChainHash::using_genesis_block(Network::Regtest)]
        );
        let built = factory
            .build_invoice(&offer, nonce, pubkey(9), &[], now, None)
            .unwrap();
        let invoice = &built.invoice;
        assert_eq!(invoice.offer_id(), offer.id());
        assert_eq!(
            Some(invoice.signing_pubkey()),
            offer.issuer_signing_pubkey()
        );
        assert_ne!(
            invoice.signing_pubkey(),
            keys.wallet_node_id(),
            "signing key is derived per offer"
        );
        assert_eq!(invoice.created_at() + invoice.relative_expiry(), expiry);
        assert_eq!(
            invoice.payment_paths().len(),
            1,
            "a direct path without hints"
        );
        assert!(!invoice.message_paths().is_empty());
    }

    #[test]
    fn payment_paths_follow_the_channel_hints() {
        let (factory, _) = factory();
        let now = Duration::from_secs(1_800_000_000);
        let (offer, nonce) = factory.build_offer(server_paths(&factory), None).unwrap();
        let hints = [hint(1, 1000), hint(2, 3000)];
        let invoice = factory
            .build_invoice(&offer, nonce, pubkey(9), &hints, now, Some(900_000))
            .unwrap()
            .invoice;
        let fees: Vec<u32> = invoice
            .payment_paths()
            .iter()
            .map(|p| p.payinfo.fee_base_msat)
            .collect();
        assert_eq!(fees, vec![1000, 3000]);
        assert!(invoice
            .payment_paths()
            .iter()
            .all(|p| p.payinfo.cltv_expiry_delta == 72 + MIN_FINAL_CLTV_EXPIRY_DELTA));
        assert_eq!(
            invoice.relative_expiry(),
            Duration::from_secs(u32::MAX as u64),
            "offer without expiry"
        );
    }

    /// `count` server paths of `hops` hops each: a long offer.
    fn long_server_paths(
        factory: &OfferFactory,
        count: usize,
        hops: u8,
    ) -> Vec<BlindedMessagePath> {
        let entropy = lightning::sign::KeysManager::new(&[2; 32], 1, 1, true);
        let nonce = Nonce::try_from(&[0u8; 16][..]).unwrap();
        (0..count)
            .map(|_| {
                let intermediate: Vec<MessageForwardNode> = (0..hops)
                    .map(|hop| MessageForwardNode {
                        node_id: pubkey(20 + hop),
                        short_channel_id: None,
                    })
                    .collect();
                BlindedMessagePath::new(
                    &intermediate,
                    pubkey(9),
                    ReceiveAuthKey([5; 32]),
                    MessageContext::Offers(OffersContext::InvoiceRequest { nonce }),
                    &entropy,
                    factory.secp(),
                )
            })
            .collect()
    }

    #[test]
    fn a_hint_ldk_cannot_use_is_left_out_and_none_usable_is_an_error() {
        let (factory, _) = factory();
        let now = Duration::from_secs(1_800_000_000);
        let (offer, nonce) = factory.build_offer(server_paths(&factory), None).unwrap();
        // Nothing is left to forward once the base fee is paid.
        let mut unusable = hint(7, 5_000);
        unusable.htlc_maximum_msat = 5_000;
        let invoice = factory
            .build_invoice(
                &offer,
                nonce,
                pubkey(9),
                &[unusable.clone(), hint(2, 3000)],
                now,
                None,
            )
            .unwrap()
            .invoice;
        let fees: Vec<u32> = invoice
            .payment_paths()
            .iter()
            .map(|p| p.payinfo.fee_base_msat)
            .collect();
        assert_eq!(fees, vec![3000], "only the usable channel");
        let error = factory
            .build_invoice(&offer, nonce, pubkey(9), &[unusable], now, None)
            .unwrap_err();
        assert_eq!(error, BuildError::NoUsableHint { hints: 1 });
    }

    #[test]
    fn an_invoice_too_large_for_servers_is_built_over_fewer_channels() {
        let (factory, _) = factory();
        let now = Duration::from_secs(1_800_000_000);
        let hints: Vec<ChannelHint> = (0..3u8)
            .map(|i| ChannelHint {
                lsp_node_id: pubkey(10 + i),
                ..hint(u64::from(i) + 1, 1000)
            })
            .collect();
        // The longest offer whose invoice still fits over one channel.
        let mut trimmed = None;
        for count in 1..=8 {
            let (offer, nonce) = factory
                .build_offer(long_server_paths(&factory, count, 3), None)
                .unwrap();
            match factory.build_invoice(&offer, nonce, pubkey(9), &hints, now, None) {
                Ok(built) => trimmed = Some(built.invoice),
                Err(why) => {
                    assert!(
                        matches!(why, BuildError::TooLarge { size } if size > 5120),
                        "{why}"
                    );
                    break;
                }
            }
        }
        let invoice = trimmed.expect("a short offer fits");
        assert!(invoice.serialized_length() <= MAX_STATIC_INVOICE_SIZE_BYTES);
        assert!(
            invoice.payment_paths().len() < hints.len(),
            "the longest offer that fits only does so over fewer channels: {} paths",
            invoice.payment_paths().len()
        );
    }

    #[test]
    fn each_offer_has_its_own_nonce_and_id() {
        let (factory, _) = factory();
        let a = factory.build_offer(server_paths(&factory), None).unwrap();
        let b = factory.build_offer(server_paths(&factory), None).unwrap();
        assert_ne!(a.0.id(), b.0.id());
        assert_ne!(a.0.issuer_signing_pubkey(), b.0.issuer_signing_pubkey());
    }

    #[test]
    fn tip_estimate_is_an_upper_bound_of_real_heights() {
        // Mainnet block 870,000 was mined on 2024-11-08 (timestamp 1731047045).
        assert!(
            estimated_tip_upper_bound(Network::Bitcoin, Duration::from_secs(1_731_047_045))
                >= 870_000
        );
        assert!(
            estimated_tip_upper_bound(Network::Testnet, Duration::from_secs(1_731_047_045))
                >= 4_000_000
        );
    }
}
