//! The SDK's `log` records, handed to a writer the app implements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, RwLock};

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

/// The app's log writer, called on the SDK's log thread, one record at a time in order, never
/// with any lock of the SDK held: it may call the client. It never receives keys or seeds.
#[uniffi::export(with_foreign)]
pub trait LogWriter: Send + Sync {
    /// Writes one record. What it throws is ignored: there is nowhere left to report it.
    fn log(&self, record: LogRecord) -> Result<(), super::CallbackError>;
}

/// Records waiting for the app's writer. Past this many (a writer far slower than the SDK
/// logs), new records are dropped and counted rather than piling up in memory or making the
/// SDK wait.
const QUEUED_RECORDS: usize = 4096;

/// The installed writer's queue.
struct Queue {
    sender: mpsc::SyncSender<LogRecord>,
    dropped: Arc<AtomicUsize>,
}

static QUEUE: RwLock<Option<Queue>> = RwLock::new(None);

/// Forwards the `log` facade to the installed writer's queue.
struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let queue = QUEUE.read().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else {
            return;
        };
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let record = LogRecord {
            level,
            target: record.target().to_string(),
            message: record.args().to_string(),
        };
        if queue.sender.try_send(record).is_err() {
            queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static FORWARDER: Forwarder = Forwarder;

/// Hands queued records to `writer` until the queue is replaced, first saying how many were
/// dropped since the last one written.
fn write_records(
    writer: Arc<dyn LogWriter>,
    records: mpsc::Receiver<LogRecord>,
    dropped: Arc<AtomicUsize>,
) {
    for record in records {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writer.log(LogRecord {
                level: LogLevel::Warn,
                target: "async_offers::ffi".into(),
                message: format!("{lost} log records dropped: the log writer fell behind"),
            });
        }
        let _ = writer.log(record);
    }
}

/// Sends the SDK's log records at `max_level` and above to `writer`, replacing any writer set
/// before. If the process already has another `log` logger, it keeps it and this writer gets
/// nothing.
#[uniffi::export]
pub fn set_log_writer(writer: Arc<dyn LogWriter>, max_level: LogLevel) {
    let (sender, records) = mpsc::sync_channel(QUEUED_RECORDS);
    let dropped = Arc::new(AtomicUsize::new(0));
    let for_thread = dropped.clone();
    let spawned = std::thread::Builder::new()
        .name("async-offers-log".into())
        .spawn(move || write_records(writer, records, for_thread));
    if let Err(e) = spawned {
        // Nowhere to log it: without its thread the writer gets nothing.
        eprintln!("async-offers: could not start the log thread: {e}");
        return;
    }
    // The previous writer's thread ends once its queue is dropped and drained.
    *QUEUE.write().unwrap_or_else(|e| e.into_inner()) = Some(Queue { sender, dropped });
    let _ = log::set_logger(&FORWARDER);
    log::set_max_level(match max_level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
    });
}
