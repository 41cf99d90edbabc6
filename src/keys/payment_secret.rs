//! Payment secrets for async offers, derived bit-for-bit like LDK's
//! `inbound_payment::create_for_spontaneous_payment`.
//!
//! LDK 0.2 keeps that function `pub(crate)`, yet the wallet's `ChannelManager` verifies every
//! incoming async payment against it: the secret's IV is an HMAC of the payment metadata, the
//! metadata (method bits, amount, expiry) is ChaCha20-encrypted with a key from the node's
//! inbound-payment key. Any deviation and the wallet fails the HTLC, so the equality is tested
//! against LDK itself (`tests/payment_secret.rs`).

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use lightning::bitcoin::hashes::hmac::{Hmac, HmacEngine};
use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::{Hash, HashEngine};
use lightning::types::payment::PaymentSecret;

/// LDK's `Method::SpontaneousPayment`, stored in the top three bits of the metadata.
const METHOD_SPONTANEOUS: u8 = 4;
const METHOD_TYPE_OFFSET: u8 = 5;
/// LDK adds two hours to every payment's expiry to tolerate block-timestamp skew; so do the
/// paths the offers' invoices carry.
pub(crate) const EXPIRY_GRACE_SECS: u64 = 7200;

/// The two HKDF outputs of LDK's `ExpandedKey` that async-offer payment secrets use.
#[derive(Clone)]
pub(crate) struct InboundPaymentKeys {
    metadata_key: [u8; 32],
    spontaneous_pmt_key: [u8; 32],
}

impl InboundPaymentKeys {
    /// Expands the node's inbound payment key material exactly as `ExpandedKey::new` does
    /// (HKDF-SHA256, salt "LDK Inbound Payment Key Expansion", six outputs; we keep #1 and #6).
    pub(crate) fn new(key_material: &[u8; 32]) -> Self {
        let mut hmac = HmacEngine::<Sha256>::new(b"LDK Inbound Payment Key Expansion");
        hmac.input(key_material);
        let prk = Hmac::from_engine(hmac).to_byte_array();
        let mut outputs = [[0u8; 32]; 6];
        for i in 0..outputs.len() {
            let mut hmac = HmacEngine::<Sha256>::new(&prk);
            if i > 0 {
                hmac.input(&outputs[i - 1]);
            }
            hmac.input(&[i as u8 + 1]);
            outputs[i] = Hmac::from_engine(hmac).to_byte_array();
        }
        Self {
            metadata_key: outputs[0],
            spontaneous_pmt_key: outputs[5],
        }
    }

    /// The payment secret for an amount-less async offer whose invoice expires
    /// `expiry_delta_secs` after `now_secs`.
    pub(crate) fn spontaneous_payment_secret(
        &self,
        expiry_delta_secs: u32,
        now_secs: u64,
    ) -> PaymentSecret {
        let mut metadata = [0u8; 16];
        metadata[0] = METHOD_SPONTANEOUS << METHOD_TYPE_OFFSET;
        let expiry = now_secs
            .saturating_add(expiry_delta_secs as u64)
            .saturating_add(EXPIRY_GRACE_SECS);
        metadata[8..].copy_from_slice(&expiry.to_be_bytes());

        let mut hmac = HmacEngine::<Sha256>::new(&self.spontaneous_pmt_key);
        hmac.input(&metadata);
        let iv_source = Hmac::from_engine(hmac).to_byte_array();
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&iv_source[..16]);

        let keystream = chacha20_block(&self.metadata_key, &iv);
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(&iv);
        for i in 0..16 {
            secret[16 + i] = metadata[i] ^ keystream[i];
        }
        PaymentSecret(secret)
    }
}

/// One ChaCha20 block (RFC 8439) where the 16-byte `nonce` fills the whole fourth state row,
/// as LDK's `ChaCha20::get_single_block` does: its first four bytes are the block counter
/// (little-endian), the other twelve the IETF nonce.
fn chacha20_block(key: &[u8; 32], nonce: &[u8; 16]) -> [u8; 64] {
    let counter = u32::from_le_bytes(nonce[..4].try_into().expect("4 bytes"));
    let mut cipher = ChaCha20::new(key.into(), nonce[4..].into());
    cipher.seek(u64::from(counter) * 64);
    let mut block = [0u8; 64];
    cipher.apply_keystream(&mut block);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_matches_rfc8439_block_vector() {
        // RFC 8439 §2.3.2: counter 1, nonce 000000090000004a00000000.
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let mut nonce = [0u8; 16];
        nonce[0] = 1;
        nonce[4..16].copy_from_slice(&[0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0]);
        let block = chacha20_block(&key, &nonce);
        assert_eq!(
            &block[..8],
            &[0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15]
        );
        assert_eq!(
            &block[56..],
            &[0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e]
        );
    }
}
