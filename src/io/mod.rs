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

/// A `KVStoreSync` the client can share across threads.
pub type DynStore = dyn KVStoreSync + Send + Sync;

pub(crate) const PRIMARY_NAMESPACE: &str = "async_offers";
pub(crate) const OFFERS_NAMESPACE: &str = "offers";
pub(crate) const EVENTS_NAMESPACE: &str = "events";
pub(crate) const INSTALL_KEY: &str = "install_key";
pub(crate) const LOCK_FILE: &str = "async-offers.lock";
