//! One offer, its static invoice and their paths, built by the SDK and by LDK's own client
//! (`OffersMessageFlow::handle_offer_paths`) side by side, over the same server paths and the
//! same channel hints (none: both build one-hop payment paths to the wallet node).
//!
//! `cargo bench --bench build`

#[allow(dead_code)] // Shared with the end-to-end bench and the payment-secret test.
#[path = "support/ldk_flow.rs"]
mod ldk_flow;

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::bench::OfferWork;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ldk_flow::{LdkFlow, ServerPaths};
use lightning::bitcoin::Network;

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

criterion_group!(benches, offer_and_invoice);
criterion_main!(benches);
