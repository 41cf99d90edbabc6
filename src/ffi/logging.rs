//! The SDK's `log` records, handed to a writer the app implements.

use std::sync::{Arc, RwLock};

/// How important a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Everything, LDK's own detail included, which prints whole messages (payers' notes
    /// among them): for debugging, not for a shipped app. From `Debug` up, records name
    /// offers and servers by id, never by label or note.
    Trace,
    /// Protocol steps.
    Debug,
    /// Connections and ready offers.
    Info,
    /// Rejected messages, retries.
    Warn,
    /// Failures.
    Error,
}

/// One log record.
#[derive(Clone, Debug, uniffi::Record)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// The module it comes from (`ldk` for LDK's records).
    pub target: String,
    /// The message.
    pub message: String,
}

/// The app's log writer, called on whichever thread logs. It never receives keys or seeds.
#[uniffi::export(with_foreign)]
pub trait LogWriter: Send + Sync {
    /// Writes one record. What it throws is ignored: there is nowhere left to report it.
    fn log(&self, record: LogRecord) -> Result<(), super::CallbackError>;
}

static WRITER: RwLock<Option<Arc<dyn LogWriter>>> = RwLock::new(None);

/// Forwards the `log` facade to the installed writer.
struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let writer = WRITER.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(writer) = writer {
            let level = match record.level() {
                log::Level::Trace => LogLevel::Trace,
                log::Level::Debug => LogLevel::Debug,
                log::Level::Info => LogLevel::Info,
                log::Level::Warn => LogLevel::Warn,
                log::Level::Error => LogLevel::Error,
            };
            let _ = writer.log(LogRecord {
                level,
                target: record.target().to_string(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

static FORWARDER: Forwarder = Forwarder;

/// Sends the SDK's log records at `max_level` and above to `writer`, replacing any writer set
/// before. If the process already has another `log` logger, it keeps it and this writer gets
/// nothing.
#[uniffi::export]
pub fn set_log_writer(writer: Arc<dyn LogWriter>, max_level: LogLevel) {
    *WRITER.write().unwrap_or_else(|e| e.into_inner()) = Some(writer);
    let _ = log::set_logger(&FORWARDER);
    log::set_max_level(match max_level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    });
}
