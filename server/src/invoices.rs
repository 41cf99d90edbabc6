//! The server's invoice store: one file per (recipient, slot), surviving restarts.

use std::sync::Arc;

use lightning::bitcoin::hex::DisplayHex;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::util::persist::KVStoreSync;
use lightning::util::ser::{Readable, Writeable};
use lightning_persister::fs_store::FilesystemStore;

const NAMESPACE: &str = "static_invoices";

/// Static invoices and forward paths by recipient id and slot.
pub struct InvoiceStore {
    kv: Arc<FilesystemStore>,
}

impl InvoiceStore {
    /// A store in `dir`.
    pub fn new(dir: std::path::PathBuf) -> Self {
        Self {
            kv: Arc::new(FilesystemStore::new(dir)),
        }
    }

    fn key(recipient_id: &[u8], slot: u16) -> String {
        // Keys are limited to 120 characters; long recipient ids are hashed.
        let id = if recipient_id.len() <= 48 {
            recipient_id.as_hex().to_string()
        } else {
            use lightning::bitcoin::hashes::{sha256, Hash};
            sha256::Hash::hash(recipient_id)
                .to_byte_array()
                .as_hex()
                .to_string()
        };
        format!("{id}_{slot}")
    }

    /// Stores (or replaces) the invoice in `slot` of `recipient_id`.
    pub fn save(
        &self,
        recipient_id: &[u8],
        slot: u16,
        invoice: &StaticInvoice,
        forward_path: &BlindedMessagePath,
    ) -> Result<(), lightning::io::Error> {
        let invoice_bytes = invoice.encode();
        let mut value = Vec::with_capacity(invoice_bytes.len() + 512);
        value.extend_from_slice(&(invoice_bytes.len() as u32).to_be_bytes());
        value.extend_from_slice(&invoice_bytes);
        forward_path.write(&mut value)?;
        self.kv
            .write(NAMESPACE, "", &Self::key(recipient_id, slot), value)
    }

    /// The invoice in `slot` of `recipient_id`, if any and readable.
    pub fn load(
        &self,
        recipient_id: &[u8],
        slot: u16,
    ) -> Option<(StaticInvoice, BlindedMessagePath)> {
        let value = self
            .kv
            .read(NAMESPACE, "", &Self::key(recipient_id, slot))
            .ok()?;
        let len = u32::from_be_bytes(value.get(..4)?.try_into().ok()?) as usize;
        let invoice = StaticInvoice::try_from(value.get(4..4 + len)?.to_vec()).ok()?;
        let forward_path = BlindedMessagePath::read(&mut value.get(4 + len..)?).ok()?;
        Some((invoice, forward_path))
    }
}
