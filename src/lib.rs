//! async-offers: always-ready BOLT 12 offers for often-offline Lightning wallets.
#![deny(missing_docs)]

pub mod keys;
