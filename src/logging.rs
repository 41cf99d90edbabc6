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
