//! The SDK's async-offer payment secret must equal the one LDK itself derives, or the wallet's
//! `ChannelManager` rejects every payment. LDK keeps its derivation `pub(crate)`, so we obtain
//! LDK's secret through its public client flow: `OffersMessageFlow::handle_offer_paths` builds a
//! static invoice and hands the payment TLVs to our `Router` (the benchmarks' LDK harness),
//! which records them.

#[allow(dead_code)] // Shared with the benchmarks, which use more of it.
#[path = "../benches/support/ldk_flow.rs"]
mod ldk_flow;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_offers::keys::WalletKeys;
use ldk_flow::{LdkFlow, ServerPaths};
use lightning::types::payment::PaymentSecret;

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Runs LDK's own client flow for `seed` and returns the payment secret it derived, with the
/// offer's absolute expiry and the time window during which LDK read the clock.
fn ldk_payment_secret(seed: [u8; 32]) -> (PaymentSecret, u64, (u64, u64)) {
    let server = ServerPaths::new();
    let mut flow = LdkFlow::new(seed, &server);
    let paths_absolute_expiry = now().as_secs() + 365 * 24 * 3600;
    let before = now().as_secs();
    let built = flow.build(
        vec![server.path()],
        Duration::from_secs(paths_absolute_expiry),
        LdkFlow::responder(&server),
    );
    let after = now().as_secs();
    assert!(built, "LDK built an offer and a static invoice");
    let tlvs = flow
        .last_payment_tlvs()
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
