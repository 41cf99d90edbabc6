//! async-offers: always-ready BOLT 12 offers for often-offline Lightning wallets.
#![deny(missing_docs)]

mod cache;
pub mod clock;
pub mod config;
mod error;
pub mod keys;
mod store;
mod offer;
#[cfg(test)]
mod test_utils;

pub use cache::OfferState;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ChannelHint, Config, InvoiceRequestTarget, ServerConfig};
pub use error::Error;
