//! One offer, its static invoice and their paths, built by the SDK and by LDK's own client
//! (`OffersMessageFlow::handle_offer_paths`) side by side, over the same server paths and the
//! same channel hints (none: both build one-hop payment paths to the wallet node).
//!
//! Beside them, what one hop of an LDK blinded path costs and the elliptic-curve operations it
//! is made of, the bulk of both builds (see `blinded_path_hops`).
//!
//! `cargo bench --bench build`

#[allow(dead_code)] // Shared with the end-to-end bench and the payment-secret test.
#[path = "support/ldk_flow.rs"]
mod ldk_flow;

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::testing::bench::OfferWork;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ldk_flow::{LdkFlow, ServerPaths};
use lightning::bitcoin::secp256k1::ecdh::SharedSecret;
use lightning::bitcoin::secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{
    BlindedMessagePath, MessageContext, MessageForwardNode, OffersContext,
};
use lightning::offers::nonce::Nonce;
use lightning::sign::{KeysManager, ReceiveAuthKey};

const SEED: [u8; 32] = [0x5a; 32];

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn offer_and_invoice(c: &mut Criterion) {
    let server = ServerPaths::new();
    let expiry = now() + Duration::from_secs(365 * 24 * 3600);
    let mut group = c.benchmark_group("offer_and_static_invoice");

    let sdk = OfferWork::new(&SEED, Network::Regtest);
    group.bench_function("sdk", |b| {
        b.iter_batched(
            || vec![server.path()],
            |paths| {
                sdk.build(paths, Some(expiry), server.node_id(), &[], now())
                    .expect("the SDK builds an offer")
            },
            BatchSize::PerIteration,
        )
    });

    // LDK's cache has ten slots: a new flow (outside the timing) every ten offers, which
    // needs the setup to run before each build.
    let flow = RefCell::new((LdkFlow::new(SEED, &server), 0u16));
    group.bench_function("ldk", |b| {
        b.iter_batched(
            || {
                let (flow, built) = &mut *flow.borrow_mut();
                if *built == LdkFlow::SLOTS {
                    *flow = LdkFlow::new(SEED, &server);
                    *built = 0;
                }
                *built += 1;
                (vec![server.path()], LdkFlow::responder(&server))
            },
            |(paths, reply)| {
                let built = flow.borrow_mut().0.build(paths, expiry, reply);
                assert!(built, "LDK builds an offer")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// LDK's blinded message paths by length, and the secp256k1 operations each hop is made of.
/// Each hop needs an ECDH, a point tweak and a generator multiplication; LDK's
/// `construct_keys_for_blinded_path` also computes an onion-packet ECDH and public key per hop,
/// which path building discards. An offer and its invoice take nine such hops in the SDK.
fn blinded_path_hops(c: &mut Criterion) {
    let secp = Secp256k1::new();
    let keys = KeysManager::new(&SEED, 1, 2, true);
    let secret = SecretKey::from_slice(&[7; 32]).expect("valid key");
    let node =
        PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&[9; 32]).expect("valid key"));
    let tweak = Scalar::from_be_bytes([3; 32]).expect("valid scalar");

    let mut group = c.benchmark_group("secp256k1");
    group.bench_function("ecdh", |b| b.iter(|| SharedSecret::new(&node, &secret)));
    group.bench_function("generator_mul", |b| {
        b.iter(|| PublicKey::from_secret_key(&secp, &secret))
    });
    group.bench_function("point_tweak", |b| {
        b.iter(|| node.mul_tweak(&secp, &tweak).expect("valid tweak"))
    });
    group.finish();

    let mut group = c.benchmark_group("ldk_blinded_message_path");
    for hops in [1usize, 2, 4] {
        group.bench_function(format!("{hops}_hops"), |b| {
            b.iter(|| {
                let context = MessageContext::Offers(OffersContext::InvoiceRequest {
                    nonce: Nonce::from_entropy_source(&keys),
                });
                let (intermediate, dummies) = match hops {
                    1 => (Vec::new(), 0),
                    _ => (
                        vec![MessageForwardNode {
                            node_id: node,
                            short_channel_id: None,
                        }],
                        hops - 2,
                    ),
                };
                BlindedMessagePath::new_with_dummy_hops(
                    &intermediate,
                    node,
                    dummies,
                    ReceiveAuthKey([1; 32]),
                    context,
                    &keys,
                    &secp,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, offer_and_invoice, blinded_path_hops);
criterion_main!(benches);
