//! Routes LDK's log records into the `log` facade, where the app installs its writer.

use lightning::util::logger::{Level, Logger, Record};

/// LDK `Logger` that forwards to `log` under the target `ldk`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LdkLogBridge;

impl Logger for LdkLogBridge {
    fn log(&self, record: Record) {
        let level = match record.level {
            Level::Gossip | Level::Trace => log::Level::Trace,
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
            Level::Error => log::Level::Error,
        };
        log::log!(target: "ldk", level, "{} ({}:{})", record.args, record.module_path, record.line);
    }
}

/// With `RUST_LOG` set, the process's log records go to stderr, each with the seconds since
/// the first (`trace` for LDK's detail too, anything else debug and up); unset, nothing. For
/// the command line, the examples and the tests, which have no app to write logs for them.
#[cfg(any(feature = "cli", feature = "testing"))]
#[doc(hidden)]
pub fn log_to_stderr() {
    struct Stderr(std::time::Instant);
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            eprintln!(
                "[{:>9.3} s] {:<5} {}: {}",
                self.0.elapsed().as_secs_f64(),
                record.level(),
                record.target(),
                record.args()
            );
        }
        fn flush(&self) {}
    }
    static LOGGER: std::sync::OnceLock<Stderr> = std::sync::OnceLock::new();
    let Some(level) = std::env::var_os("RUST_LOG") else {
        return;
    };
    let logger = LOGGER.get_or_init(|| Stderr(std::time::Instant::now()));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(match level.to_str() {
            Some("trace") => log::LevelFilter::Trace,
            _ => log::LevelFilter::Debug,
        });
    }
}
