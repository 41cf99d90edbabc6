//! async-offers: always-ready BOLT 12 offers for often-offline Lightning wallets.
#![deny(missing_docs)]

pub mod clock;
pub mod config;
mod error;
pub mod keys;
mod offer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ChannelHint, Config, InvoiceRequestTarget, ServerConfig};
pub use error::Error;
