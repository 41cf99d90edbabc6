//! The SDK's one public error type.

use std::fmt;

/// Everything that can go wrong in a call to the SDK. The Kotlin and Swift SDKs get it as
/// `OffersError` (`OffersException` in Kotlin), each kind with this type's message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "ffi",
    derive(uniffi::Error),
    uniffi(name = "OffersError", flat_error)
)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable; the message names it.
    InvalidConfig(String),
    /// An argument of a call is out of range: a negative count or timeout (the Kotlin and
    /// Swift SDKs' own checks; Rust's types make them unneeded here), or bytes of the wrong
    /// length where the FFI takes a seed.
    InvalidArgument(String),
    /// The server's paths are not LDK's encoding of `Vec<BlindedMessagePath>`.
    InvalidServerPaths(String),
    /// No Ready offer is available right now; more are being prepared.
    NoReadyOffer,
    /// The client is already running.
    AlreadyStarted,
    /// Reading or writing the offer store failed.
    Storage(String),
    /// A stored record could not be decoded. It is left untouched for inspection.
    CorruptStore {
        /// The store key of the record.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Another client, in this process or another, holds the data dir: it is running there,
    /// or did not let go within the wait the app chose
    /// ([`ClientBuilder::data_dir_lock_wait`](crate::ClientBuilder::data_dir_lock_wait)).
    DataDirInUse(String),
    /// The bytes given to import are not an offer book this release can read, or the book is
    /// another wallet's; the message says which.
    InvalidOfferBook(String),
    /// A wait ran out of time.
    Timeout,
    /// The app cancelled the call (a Swift task; the Swift SDK throws `CancellationError`
    /// for it). What it had already written stays.
    Cancelled,
    /// The async runtime could not be created or has shut down.
    Runtime(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::InvalidServerPaths(why) => write!(f, "invalid server paths: {why}"),
            Error::NoReadyOffer => write!(f, "no ready offer available yet"),
            Error::AlreadyStarted => write!(f, "client already started"),
            Error::Storage(why) => write!(f, "storage error: {why}"),
            Error::CorruptStore { key, reason } => {
                write!(
                    f,
                    "stored record '{key}' is corrupt ({reason}); it was left untouched"
                )
            }
            Error::DataDirInUse(why) => write!(f, "data dir in use: {why}"),
            Error::InvalidOfferBook(why) => write!(f, "invalid offer book: {why}"),
            Error::Timeout => write!(f, "timed out"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::Runtime(why) => write!(f, "runtime error: {why}"),
        }
    }
}

impl std::error::Error for Error {}
