//! What is kept on disk, behind LDK's `KVStoreSync`: offer records and their formats, the events
//! waiting for the app, this install's slot key, and the data dir's lock across processes.
//!
//! Where each thing lives (namespaces as `lightning-persister` lays them out on disk):
//! - `async_offers/offers/<server id hex>_<slot, 5 digits>`: one record per offer
//!   ([`records`]; earlier formats in [`legacy`]);
//! - `async_offers/events/<sequence, 16 hex digits>`: one record per event waiting for the app;
//! - `async_offers/install_key`: the key this install picks its slots by;
//! - `async-offers.lock`, at the top of the data dir: the lock ([`lock`]).

use lightning::util::persist::KVStoreSync;

pub(crate) mod legacy;
pub(crate) mod lock;
pub(crate) mod private_fs;
pub(crate) mod records;
pub(crate) mod seal;
pub(crate) mod store;
pub(crate) mod stored_offer;

/// Why a record (or an offer book) could not be read. A corrupt offer record stops the client
/// with [`crate::Error::CorruptStore`], whose reason is this error's message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecordError {
    /// Shorter than any record of its kind (named).
    TooShort(&'static str),
    /// Not a format this release reads (the kind named).
    UnknownFormat(&'static str),
    /// Its checksum does not match: a torn or corrupted write.
    Checksum,
    /// It ends inside the field named.
    Truncated(&'static str),
    /// The field named holds what it cannot.
    Invalid { field: &'static str, why: String },
    /// Bytes after the last field (of the part named).
    TrailingBytes(&'static str),
    /// Its invoice is another offer's.
    InvoiceOfAnotherOffer,
    /// Decoding it panicked.
    Panicked,
    /// An offer of an offer book (numbered from 0) could not be read.
    InBook { index: u32, why: Box<RecordError> },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort(what) => write!(f, "not {what} (too short)"),
            Self::UnknownFormat(what) => write!(f, "not {what} (bad magic or format version)"),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Truncated(field) => write!(f, "truncated at {field}"),
            Self::Invalid { field, why } => write!(f, "bad {field}: {why}"),
            Self::TrailingBytes(what) => write!(f, "trailing bytes in {what}"),
            Self::InvoiceOfAnotherOffer => f.write_str("invoice belongs to another offer"),
            Self::Panicked => f.write_str("decoding panicked"),
            Self::InBook { index, why } => write!(f, "offer {index}: {why}"),
        }
    }
}

impl RecordError {
    /// `field` is invalid for the reason `why` gives (LDK's errors print as `Debug`).
    pub(crate) fn invalid(field: &'static str, why: impl std::fmt::Debug) -> Self {
        Self::Invalid {
            field,
            why: format!("{why:?}"),
        }
    }
}

/// A `KVStoreSync` the client can share across threads.
pub type DynStore = dyn KVStoreSync + Send + Sync;

pub(crate) const PRIMARY_NAMESPACE: &str = "async_offers";
pub(crate) const OFFERS_NAMESPACE: &str = "offers";
pub(crate) const EVENTS_NAMESPACE: &str = "events";
pub(crate) const INSTALL_KEY: &str = "install_key";
pub(crate) const LOCK_FILE: &str = "async-offers.lock";
