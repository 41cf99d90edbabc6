//! async-offers: always-ready BOLT 12 offers for often-offline Lightning wallets.
//!
//! The wallet asks its static invoice server (usually its LSP) for offer paths, builds offers
//! and static invoices with the keys of its own LDK node, has the server persist the invoices,
//! and keeps a cache of ready offers fresh. See [`AsyncOffersClient`].
//!
//! Module map (pure logic in the middle, I/O at the edges; `docs/DESIGN.md` has the whole):
//! - [`keys`]: seed → wallet node and transport identities, LDK-exact payment secrets;
//! - `offers`: the pure middle: offers, static invoices and paths (`builder`), each server's
//!   slots, offer states and every refresh/retry/expiry decision, time passed in (`cache`);
//! - `flow`: the engine: what gets sent, when, and what gets written, split by what starts it
//!   (`inbound`, `hand_out`, `maintenance`) and what may leave now (`outbox`);
//! - `handler`: [`ProtocolHandler`], LDK's onion-message handlers over the engine, one per
//!   server, for any messenger;
//! - `net`: one messenger and peer manager over TCP per server, reconnects and timers;
//! - `io`: record formats and their migrations, the store behind LDK's `KVStoreSync`, one
//!   writer per data dir across processes;
//! - `client`: the public object; `events`: what the app is told, live to listeners and in a
//!   queue kept until the app handles it; [`config`], [`clock`]; `cancel`: calls the app gave
//!   up on;
//! - [`ffi`] (feature `ffi`): the UniFFI surface of the Kotlin and Swift SDKs;
//! - `testing` (feature `testing`): entry points for the fuzz targets, benchmarks and tests.
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!();

mod cancel;
mod client;
pub mod clock;
pub mod config;
mod error;
mod events;
#[cfg(feature = "ffi")]
pub mod ffi;
mod flow;
mod handler;
mod io;
pub mod keys;
mod logging;
mod net;
mod offers;
#[cfg(test)]
mod test_utils;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use client::{AsyncOffersClient, ClientBuilder};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ChannelHint, Config, InvoiceRequestTarget, ServerConfig};
pub use error::Error;
pub use events::{
    CheckReport, ClientStatus, Event, EventListener, ImportedOffers, ListenerId, OfferCheckStatus,
    OfferInfo, QueuedEvent, ServerStatus, SyncReport, Unfinished,
};
pub use handler::ProtocolHandler;
pub use io::DynStore;
pub use keys::WalletSeed;
#[cfg(any(feature = "cli", feature = "testing"))]
pub use logging::log_to_stderr;
pub use logging::LdkLogBridge;
pub use net::router::ServerRouter;
pub use offers::cache::OfferState;
