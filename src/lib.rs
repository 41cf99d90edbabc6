//! async-offers: always-ready BOLT 12 offers for often-offline Lightning wallets.
//!
//! The wallet asks its static invoice server (usually its LSP) for offer paths, builds offers
//! and static invoices with the keys of its own LDK node, has the server persist the invoices,
//! and keeps a cache of ready offers fresh. See [`AsyncOffersClient`].
//!
//! Module map (pure logic in the middle, I/O at the edges):
//! - [`keys`]: seed → wallet node and transport identities, LDK-exact payment secrets;
//! - `offer`: offers, static invoices and blinded paths from server paths and channel hints;
//! - `cache`: each server's slots, offer states, how the servers share the target, and every
//!   refresh/retry/expiry decision, time passed in;
//! - `protocol`: the engine turning messages into cache transitions and per-server outboxes
//!   ([`ProtocolHandler`], one per server, runs it over any messenger);
//! - `transport`: one messenger and peer manager over TCP per server, reconnects and timers;
//! - `store`: offer records and offer books behind LDK's `KVStoreSync`;
//! - `responder`: LDK's `Responder` to and from the reply path it holds;
//! - `lock`: one writer per data dir across processes, and reloading what another wrote;
//! - `client`: the public object; `events`: what the app is told, live to listeners and in a
//!   queue kept until the app handles it;
//! - [`ffi`] (feature `ffi`): the UniFFI surface of the Kotlin and Swift SDKs.
#![deny(missing_docs)]

#[cfg(feature = "ffi")]
uniffi::setup_scaffolding!();

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
pub use events::{ClientStatus, Event, EventListener, ImportedOffers, OfferInfo, ServerStatus};
pub use handler::ProtocolHandler;
pub use io::DynStore;
#[cfg(any(feature = "cli", feature = "testing"))]
pub use logging::log_to_stderr;
pub use logging::LdkLogBridge;
pub use net::transport::ServerRouter;
pub use offers::cache::OfferState;
