//! Message routing for the server: it introduces its own paths and talks to direct peers.

use std::sync::Arc;

use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{BlindedMessagePath, MessageContext, MessageForwardNode};
use lightning::ln::msgs::UnsignedChannelUpdate;
use lightning::onion_message::messenger::{Destination, MessageRouter, OnionMessagePath};
use lightning::routing::gossip::{NetworkGraph, NodeId};
use lightning::sign::{KeysManager, ReceiveAuthKey};
use lightning::types::features::ChannelFeatures;

use crate::Log;

/// Paths payers see are padded to this length, as LDK pads them.
const PADDED_PATH_LENGTH: usize = 4;

/// Builds paths with the server as introduction node, optionally in the compact form
/// (introduction named by a directed short channel id) real public LDK nodes use.
pub struct ServerRouter {
    node_id: PublicKey,
    entropy: Arc<KeysManager>,
    /// A graph holding only the server's announced channel, when compact paths are on.
    compact_graph: Option<NetworkGraph<Arc<Log>>>,
}

impl ServerRouter {
    /// A router for the server `node_id`; with `compact_scid`, paths name the server by that
    /// (pretend public) channel instead of its node id.
    pub fn new(
        node_id: PublicKey,
        entropy: Arc<KeysManager>,
        network: Network,
        compact_scid: Option<u64>,
    ) -> Self {
        let compact_graph = compact_scid.map(|scid| {
            let peer = other_endpoint(&node_id);
            let (one, two) = if node_id < peer {
                (node_id, peer)
            } else {
                (peer, node_id)
            };
            one_channel_graph(network, scid, one, two)
        });
        Self {
            node_id,
            entropy,
            compact_graph,
        }
    }
}

/// Any valid key other than `node`, to stand at the far end of a one-channel graph.
pub(crate) fn other_endpoint(node: &PublicKey) -> PublicKey {
    let secp = Secp256k1::signing_only();
    let key = |byte| {
        let secret = SecretKey::from_slice(&[byte; 32]).expect("valid key");
        PublicKey::from_secret_key(&secp, &secret)
    };
    if key(1) != *node {
        key(1)
    } else {
        key(2)
    }
}

/// A graph holding one usable channel `scid` between `one` and `two` (in key order): enough
/// for LDK to resolve a compact introduction node, or to build one.
pub(crate) fn one_channel_graph(
    network: Network,
    scid: u64,
    one: PublicKey,
    two: PublicKey,
) -> NetworkGraph<Arc<Log>> {
    let graph = NetworkGraph::new(network, Arc::new(Log));
    if let Err(e) = graph.add_channel_from_partial_announcement(
        scid,
        None,
        0,
        ChannelFeatures::empty(),
        NodeId::from_pubkey(&one),
        NodeId::from_pubkey(&two),
    ) {
        log::error!("one-channel graph: {}", e.err);
    }
    for channel_flags in [0u8, 1] {
        let update = UnsignedChannelUpdate {
            chain_hash: ChainHash::using_genesis_block(network),
            short_channel_id: scid,
            // Fresh, or the graph discards it as stale gossip.
            timestamp: crate::unix_now().as_secs() as u32,
            message_flags: 1,
            channel_flags,
            cltv_expiry_delta: 72,
            htlc_minimum_msat: 1,
            htlc_maximum_msat: 1_000_000_000,
            fee_base_msat: 0,
            fee_proportional_millionths: 0,
            excess_data: Vec::new(),
        };
        if let Err(e) = graph.update_channel_unsigned(&update) {
            log::error!("one-channel graph update: {}", e.err);
        }
    }
    graph
}

impl MessageRouter for ServerRouter {
    fn find_path(
        &self,
        _sender: PublicKey,
        _peers: Vec<PublicKey>,
        mut destination: Destination,
    ) -> Result<OnionMessagePath, ()> {
        if let Some(graph) = &self.compact_graph {
            destination.resolve(&graph.read_only());
        }
        Ok(OnionMessagePath {
            intermediate_nodes: vec![],
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
        // Padding hides how far the recipient is from the introduction node. The recipient's
        // own paths (to request offer paths, to store invoices) go only to a wallet that is
        // connected to this server and knows it is the end; padding them would only cost each
        // message three more hops to build and peel on both sides.
        let dummy_hops = match context {
            MessageContext::AsyncPayments(_) => 0,
            _ => PADDED_PATH_LENGTH - 1,
        };
        let mut path = BlindedMessagePath::new_with_dummy_hops(
            &[],
            recipient,
            dummy_hops,
            local_node_receive_key,
            context,
            &*self.entropy,
            secp_ctx,
        );
        if let (Some(graph), true) = (&self.compact_graph, recipient == self.node_id) {
            path.use_compact_introduction_node(&graph.read_only());
        }
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightning::blinded_path::message::{AsyncPaymentsContext, OffersContext};
    use std::time::Duration;

    fn paths_for(context: MessageContext) -> Vec<BlindedMessagePath> {
        let keys = Arc::new(KeysManager::new(&[7; 32], 1, 2, true));
        let secp = Secp256k1::new();
        let node_id = PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[3; 32]).unwrap());
        let router = ServerRouter::new(node_id, keys, Network::Regtest, None);
        router
            .create_blinded_paths(node_id, ReceiveAuthKey([9; 32]), context, vec![], &secp)
            .unwrap()
    }

    #[test]
    fn paths_payers_see_are_padded_and_the_recipients_own_paths_are_not() {
        let offer_paths = paths_for(MessageContext::Offers(
            OffersContext::StaticInvoiceRequested {
                recipient_id: b"wallet".to_vec(),
                invoice_slot: 0,
                path_absolute_expiry: Duration::MAX,
            },
        ));
        assert_eq!(offer_paths[0].blinded_hops().len(), PADDED_PATH_LENGTH);

        let recipient_paths = paths_for(MessageContext::AsyncPayments(
            AsyncPaymentsContext::OfferPathsRequest {
                recipient_id: b"wallet".to_vec(),
                path_absolute_expiry: None,
            },
        ));
        assert_eq!(recipient_paths[0].blinded_hops().len(), 1);
    }
}
