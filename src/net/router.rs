//! How the client's messages find their way: everything goes through the server it is
//! connected to, its only peer, and compact paths (introduction node named by a directed short
//! channel id, as LDK servers with public channels build them) are resolved to that server.

use std::sync::Arc;

use lightning::bitcoin::secp256k1::{self, PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{BlindedMessagePath, MessageContext, MessageForwardNode};
use lightning::blinded_path::IntroductionNode;
use lightning::onion_message::messenger::{Destination, MessageRouter, OnionMessagePath};
use lightning::routing::gossip::{NetworkGraph, NodeId};
use lightning::sign::{KeysManager, ReceiveAuthKey};
use lightning::types::features::ChannelFeatures;

use crate::logging::LdkLogBridge;

/// Routes every message through the server, the client's only peer: what the client's own
/// messenger uses, public for running the client over another messenger (see
/// [`ProtocolHandler`](crate::ProtocolHandler)).
pub struct ServerRouter {
    server: PublicKey,
    network: Network,
    entropy: Arc<KeysManager>,
}

impl ServerRouter {
    /// A router for a client whose server is `server`, on `network`, drawing path randomness
    /// from `entropy` (the transport keys).
    pub fn new(server: PublicKey, network: Network, entropy: Arc<KeysManager>) -> Self {
        Self {
            server,
            network,
            entropy,
        }
    }

    /// Rewrites a compact introduction node (directed short channel id) to the server, using a
    /// one-channel graph in which the server sits on the side the direction names.
    fn resolve_compact_introduction(&self, destination: &mut Destination) {
        let Destination::BlindedPath(path) = destination else {
            return;
        };
        let IntroductionNode::DirectedShortChannelId(direction, scid) = *path.introduction_node()
        else {
            return;
        };
        let other = other_endpoint(&self.server);
        let (one, two) = match direction {
            lightning::blinded_path::Direction::NodeOne => (self.server, other),
            lightning::blinded_path::Direction::NodeTwo => (other, self.server),
        };
        let graph = NetworkGraph::new(self.network, Arc::new(LdkLogBridge));
        let added = graph.add_channel_from_partial_announcement(
            scid,
            None,
            0,
            ChannelFeatures::empty(),
            NodeId::from_pubkey(&one),
            NodeId::from_pubkey(&two),
        );
        if added.is_ok() {
            destination.resolve(&graph.read_only());
        }
    }
}

/// Any valid key other than `server`, to stand at the far end of the resolving channel.
fn other_endpoint(server: &PublicKey) -> PublicKey {
    let secp = Secp256k1::signing_only();
    let candidate = |byte| {
        PublicKey::from_secret_key(
            &secp,
            &SecretKey::from_slice(&[byte; 32]).expect("valid key"),
        )
    };
    let first = candidate(1);
    if first != *server {
        first
    } else {
        candidate(2)
    }
}

impl MessageRouter for ServerRouter {
    fn find_path(
        &self,
        _sender: PublicKey,
        _peers: Vec<PublicKey>,
        mut destination: Destination,
    ) -> Result<OnionMessagePath, ()> {
        self.resolve_compact_introduction(&mut destination);
        let first_hop = match &destination {
            Destination::Node(node) => Some(*node),
            Destination::BlindedPath(path) => match path.introduction_node() {
                IntroductionNode::NodeId(node) => Some(*node),
                IntroductionNode::DirectedShortChannelId(..) => None,
            },
        };
        // Anything not starting at the server is reached through it.
        let intermediate_nodes = match first_hop {
            Some(node) if node == self.server => vec![],
            _ => vec![self.server],
        };
        Ok(OnionMessagePath {
            intermediate_nodes,
            destination,
            first_node_addresses: vec![],
        })
    }

    /// Reply paths for our own requests. The server is our direct peer and already knows
    /// this transport identity (it is not the wallet node's), so the path starts at us: one
    /// hop less to build, encrypt and peel for every reply, and nothing revealed.
    fn create_blinded_paths<T: secp256k1::Signing + secp256k1::Verification>(
        &self,
        recipient: PublicKey,
        local_node_receive_key: ReceiveAuthKey,
        context: MessageContext,
        _peers: Vec<MessageForwardNode>,
        secp_ctx: &Secp256k1<T>,
    ) -> Result<Vec<BlindedMessagePath>, ()> {
        Ok(vec![BlindedMessagePath::new(
            &[],
            recipient,
            local_node_receive_key,
            context,
            &*self.entropy,
            secp_ctx,
        )])
    }
}
