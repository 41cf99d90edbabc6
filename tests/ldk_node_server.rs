//! ldk-node 0.7.1 as the static invoice server (`AsyncPaymentsRole::Server`), over TCP on
//! 127.0.0.1: it hands out the paths, the SDK fills 10 offers through it, and the reference
//! payer fetches each offer's static invoice from it.
//!
//! ldk-node needs a chain source even with no chain: its Esplora URL points at a stub here
//! answering `/fee-estimates` with `{}` (its start blocks on a first fee-rate update) and
//! anything else with 404. And LDK builds blinded paths into an unannounced node only through
//! a peer, so the node's stored network graph names it in a channel announcement before the
//! node is built.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_offers::{AsyncOffersClient, Config, LdkLogBridge, OfferState, ServerConfig};
use async_offers_server::{check_invoice_for_offer, Payer};
use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::ln::msgs::{SocketAddress, UnsignedChannelAnnouncement};
use lightning::routing::gossip::{NetworkGraph, NodeId};
use lightning::routing::utxo::UtxoLookup;
use lightning::types::features::ChannelFeatures;
use lightning::util::persist::{
    KVStoreSync, NETWORK_GRAPH_PERSISTENCE_KEY, NETWORK_GRAPH_PERSISTENCE_PRIMARY_NAMESPACE,
    NETWORK_GRAPH_PERSISTENCE_SECONDARY_NAMESPACE,
};
use lightning::util::ser::Writeable;
use lightning_persister::fs_store::FilesystemStore;

const SERVER_SEED: [u8; 64] = [0x5e; 64];
const WALLET_SEED: [u8; 32] = [0x77; 32];
const OFFERS: usize = 10;
const WAIT: Duration = Duration::from_secs(60);

/// An Esplora server that knows no chain: `{}` for the fee estimates, 404 for the rest.
/// Answers until dropped.
struct EsploraStub {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EsploraStub {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || Self::answer(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { address, stop }
    }

    fn answer(mut stream: TcpStream) {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let line = String::from_utf8_lossy(&request);
        let answer = if line.starts_with("GET /fee-estimates ") {
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        };
        let _ = stream.write_all(answer.as_bytes());
    }
}

impl Drop for EsploraStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A port free on 127.0.0.1 a moment ago, for ldk-node to listen on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes into ldk-node's store in `storage_dir` a network graph with one channel announced
/// between `node` and another node, so that LDK builds paths into `node` directly.
fn announce_in_stored_graph(storage_dir: &Path, node: PublicKey) {
    let graph = NetworkGraph::new(Network::Regtest, &LdkLogBridge);
    let other = PublicKey::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&[0x42; 32]).unwrap(),
    );
    let (node_id_1, node_id_2) = {
        let (a, b) = (NodeId::from_pubkey(&node), NodeId::from_pubkey(&other));
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    };
    let announcement = UnsignedChannelAnnouncement {
        features: ChannelFeatures::empty(),
        chain_hash: ChainHash::using_genesis_block(Network::Regtest),
        short_channel_id: (100 << 40) | (1 << 16),
        node_id_1,
        node_id_2,
        bitcoin_key_1: node_id_1,
        bitcoin_key_2: node_id_2,
        excess_data: Vec::new(),
    };
    graph
        .update_channel_from_unsigned_announcement(&announcement, &None::<&dyn UtxoLookup>)
        .unwrap();
    FilesystemStore::new(storage_dir.join("fs_store"))
        .write(
            NETWORK_GRAPH_PERSISTENCE_PRIMARY_NAMESPACE,
            NETWORK_GRAPH_PERSISTENCE_SECONDARY_NAMESPACE,
            NETWORK_GRAPH_PERSISTENCE_KEY,
            graph.encode(),
        )
        .unwrap();
}

/// An ldk-node node in the static invoice server role, started, listening on 127.0.0.1.
fn start_ldk_node_server(storage_dir: &Path, esplora: &EsploraStub) -> (ldk_node::Node, String) {
    let node_id = async_offers::keys::WalletKeys::from_seed(
        &async_offers::WalletSeed::from_ldk_node_seed_bytes(&SERVER_SEED).keys_manager_seed(),
    )
    .wallet_node_id();
    announce_in_stored_graph(storage_dir, node_id);
    let port = free_port();
    let mut builder = ldk_node::Builder::new();
    builder.set_network(Network::Regtest);
    builder.set_storage_dir_path(storage_dir.to_str().unwrap().to_string());
    builder.set_entropy_seed_bytes(SERVER_SEED);
    builder.set_chain_source_esplora(format!("http://{}", esplora.address), None);
    builder
        .set_listening_addresses(vec![SocketAddress::TcpIpV4 {
            addr: [127, 0, 0, 1],
            port,
        }])
        .unwrap();
    builder.set_node_alias("async-offers-test".into()).unwrap();
    builder
        .set_async_payments_role(Some(ldk_node::config::AsyncPaymentsRole::Server))
        .unwrap();
    let node = builder.build_with_fs_store().expect("ldk-node builds");
    assert_eq!(node.node_id(), node_id, "the id the graph names");
    node.start().expect("ldk-node starts");
    (node, format!("127.0.0.1:{port}"))
}

#[test]
fn ldk_node_as_the_static_invoice_server_serves_ten_offers_a_payer_fetches() {
    async_offers::log_to_stderr();
    let esplora = EsploraStub::start();
    let server_dir = tempfile::tempdir().unwrap();
    let (node, address) = start_ldk_node_server(server_dir.path(), &esplora);
    let paths = node
        .bolt12_payment()
        .blinded_paths_for_async_recipient(b"wallet".to_vec())
        .expect("ldk-node hands out paths for the wallet");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(
        Network::Regtest,
        client_dir.path(),
        ServerConfig {
            node_id: node.node_id(),
            address: address.clone(),
            paths,
        },
    );
    config.ready_offer_target = OFFERS as u16;
    config.tick_interval = Duration::from_millis(200);
    let client = AsyncOffersClient::builder(config, WALLET_SEED)
        .runtime(runtime.handle().clone())
        .build()
        .unwrap();
    client.start().unwrap();
    // ldk-node takes 5 invoices at once from a recipient, then one per 100 ms, and drops the
    // rest: the SDK's resends must still get all 10 confirmed.
    let ready = runtime
        .block_on(client.wait_for_ready_offers(OFFERS, WAIT))
        .expect("ten offers Ready through ldk-node");
    assert_eq!(ready.len(), OFFERS);
    assert!(ready.iter().all(|offer| offer.state == OfferState::Ready
        && offer.server_node_id == node.node_id().to_string()));

    let payer = runtime
        .block_on(Payer::connect(node.node_id(), &address, Network::Regtest))
        .expect("the payer connects to ldk-node");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    for info in &ready {
        // Under ldk-node's rate of one request per 100 ms for a recipient, once its 5 are spent.
        std::thread::sleep(Duration::from_millis(150));
        let offer: lightning::offers::offer::Offer = info.offer.parse().unwrap();
        let fetched = runtime
            .block_on(payer.fetch_static_invoice(&offer, Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("offer in slot {}: {e}", info.slot));
        check_invoice_for_offer(&offer, &fetched.invoice, now)
            .unwrap_or_else(|e| panic!("offer in slot {}: {e}", info.slot));
    }
    client.stop();
    node.stop().unwrap();
}
