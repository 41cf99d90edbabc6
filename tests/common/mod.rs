//! Shared setup for integration tests: a reference server on 127.0.0.1 and clients of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use async_offers::{AsyncOffersClient, Config, ServerConfig};
use async_offers_server::{RunningServer, ServerOptions};
use lightning::bitcoin::Network;

pub const SEED: [u8; 32] = [0x11; 32];
pub const WAIT: Duration = Duration::from_secs(30);

pub async fn start_server(data_dir: &Path) -> RunningServer {
    start_server_at(data_dir, "127.0.0.1:0", None).await
}

pub async fn start_server_at(
    data_dir: &Path,
    listen: &str,
    compact_scid: Option<u64>,
) -> RunningServer {
    let options = ServerOptions {
        listen: listen.parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        network: Network::Regtest,
        compact_scid,
    };
    async_offers_server::start(options)
        .await
        .expect("server starts")
}

pub fn config_for(server: &RunningServer, recipient: &[u8], data_dir: &Path) -> Config {
    let paths = server.identity().mint_paths(recipient, None).unwrap();
    let server_config = ServerConfig {
        node_id: server.identity().node_id(),
        address: server.local_addr().to_string(),
        paths,
    };
    let mut config = Config::new(Network::Regtest, data_dir, server_config);
    config.tick_interval = Duration::from_millis(200);
    config
}

/// With `RUST_LOG` set, the test's log records go to stderr with a timestamp (`cargo test --
/// --nocapture` to see them).
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
    if std::env::var_os("RUST_LOG").is_some() {
        let logger = LOGGER.get_or_init(|| Stderr(std::time::Instant::now()));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    }
}

pub fn client(config: Config) -> AsyncOffersClient {
    log_to_stderr();
    AsyncOffersClient::builder(config, SEED)
        .runtime(tokio::runtime::Handle::current())
        .build()
        .expect("client builds")
}
