//! `async-offers-server`: the reference static invoice server.

use std::time::Duration;

use lightning::bitcoin::hex::DisplayHex;
use lightning::bitcoin::Network;

const USAGE: &str = "usage:
  async-offers-server [--listen ADDR] [--data-dir DIR] [--network NET] [--compact-scid SCID]
                      [--offer-paths-days N|never] [--offer-paths-secs N] [--recipient ID]...
      serve; prints one JSON line {node_id, address, paths} per --recipient ID;
      offers last --offer-paths-days (default: 365, as LDK's server role), or
      --offer-paths-secs (short-lived offers, for tests and benchmarks)
  async-offers-server mint --data-dir DIR --address HOST:PORT --recipient ID [--network NET] [--compact-scid SCID] [--expiry-days N]
      print a recipient's JSON line without serving
  async-offers-server fetch --server NODE_ID@HOST:PORT --offer LNO... [--network NET]
      fetch each offer's static invoice from that server as a payer would (which also has
      the server forward the invoice request to the recipient, if it is online), check it
      against its offer, and print one JSON line per offer {offer_id, invoice_created_at,
      payment_paths, elapsed_ms}; exit 1 at the first that fails";

struct Args {
    mint: bool,
    fetch: bool,
    server: Option<String>,
    offers: Vec<String>,
    listen: String,
    address: Option<String>,
    data_dir: std::path::PathBuf,
    network: Network,
    compact_scid: Option<u64>,
    recipients: Vec<String>,
    expiry_days: Option<u64>,
    offer_paths_lifetime: async_offers_server::OfferPathsLifetime,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mint: false,
        fetch: false,
        server: None,
        offers: vec![],
        listen: "127.0.0.1:9735".into(),
        address: None,
        data_dir: "async-offers-server-data".into(),
        network: Network::Regtest,
        compact_scid: None,
        recipients: vec![],
        expiry_days: None,
        offer_paths_lifetime: Default::default(),
    };
    let mut it = std::env::args().skip(1).peekable();
    match it.peek().map(String::as_str) {
        Some("mint") => args.mint = true,
        Some("fetch") => args.fetch = true,
        _ => {}
    }
    if args.mint || args.fetch {
        it.next();
    }
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--address" => args.address = Some(value()?),
            "--data-dir" => args.data_dir = value()?.into(),
            "--network" => {
                args.network = value()?.parse().map_err(|e| format!("--network: {e}"))?
            }
            "--compact-scid" => {
                args.compact_scid = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--compact-scid: {e}"))?,
                )
            }
            "--recipient" => args.recipients.push(value()?),
            "--server" => args.server = Some(value()?),
            "--offer" => args.offers.push(value()?),
            "--expiry-days" => {
                args.expiry_days = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--expiry-days: {e}"))?,
                )
            }
            "--offer-paths-days" => {
                args.offer_paths_lifetime = match value()?.as_str() {
                    "never" => async_offers_server::OfferPathsLifetime::Unlimited,
                    days => async_offers_server::OfferPathsLifetime::Fixed(Duration::from_secs(
                        days.parse::<u64>()
                            .map_err(|e| format!("--offer-paths-days: {e}"))?
                            .saturating_mul(24 * 3600),
                    )),
                }
            }
            "--offer-paths-secs" => {
                args.offer_paths_lifetime =
                    async_offers_server::OfferPathsLifetime::Fixed(Duration::from_secs(
                        value()?
                            .parse()
                            .map_err(|e| format!("--offer-paths-secs: {e}"))?,
                    ))
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        simple_stderr_logger();
    }
    let expiry = args
        .expiry_days
        .map(|days| Duration::from_secs(days * 24 * 3600));
    if args.mint {
        let Some(address) = args.address else {
            eprintln!("mint needs --address\n{USAGE}");
            std::process::exit(2);
        };
        let identity = async_offers_server::ServerIdentity::open(
            &args.data_dir,
            args.network,
            args.compact_scid,
        )
        .unwrap_or_else(|e| fail(&format!("cannot open {}: {e}", args.data_dir.display())));
        for recipient in &args.recipients {
            let paths = identity
                .mint_paths_hex(recipient.as_bytes(), expiry)
                .unwrap_or_else(|e| fail(&e));
            println!(
                "{}",
                serde_json::json!({"node_id": identity.node_id().to_string(), "address": address, "paths": paths})
            );
        }
        return;
    }
    if args.fetch {
        return fetch(&args);
    }
    let listen = args
        .listen
        .parse()
        .unwrap_or_else(|e| fail(&format!("--listen: {e}")));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(&e.to_string()));
    runtime.block_on(async {
        let options = async_offers_server::ServerOptions {
            listen,
            data_dir: args.data_dir.clone(),
            network: args.network,
            compact_scid: args.compact_scid,
            replay_replies_after: None,
            ignore_invoice_requests: false,
            offer_paths_lifetime: args.offer_paths_lifetime,
        };
        let server = async_offers_server::start(options)
            .await
            .unwrap_or_else(|e| fail(&format!("cannot start: {e}")));
        for recipient in &args.recipients {
            println!(
                "{}",
                server
                    .recipient_json(recipient.as_bytes())
                    .unwrap_or_else(|e| fail(&e))
            );
        }
        eprintln!(
            "listening on {} as {}",
            server.local_addr(),
            server.identity().node_id()
        );
        let _ = tokio::signal::ctrl_c().await;
        server.stop();
    });
}

/// The `fetch` mode: each offer's invoice as a payer gets it.
fn fetch(args: &Args) {
    let Some((node_id, address)) = args.server.as_deref().and_then(|s| s.split_once('@')) else {
        fail(&format!("fetch needs --server NODE_ID@HOST:PORT\n{USAGE}"));
    };
    let node_id: lightning::bitcoin::secp256k1::PublicKey = node_id
        .parse()
        .unwrap_or_else(|e| fail(&format!("--server: {e}")));
    let offers: Vec<lightning::offers::offer::Offer> = args
        .offers
        .iter()
        .map(|offer| {
            offer
                .parse()
                .unwrap_or_else(|e| fail(&format!("--offer {offer}: {e:?}")))
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| fail(&e.to_string()));
    runtime.block_on(async {
        let payer = async_offers_server::Payer::connect(node_id, address, args.network)
            .await
            .unwrap_or_else(|e| fail(&e));
        for offer in &offers {
            let fetched = payer
                .fetch_static_invoice(offer, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| fail(&format!("offer {}: {e}", offer.id().0.as_hex())));
            async_offers_server::check_invoice_for_offer(
                offer,
                &fetched.invoice,
                async_offers_server::unix_now(),
            )
            .unwrap_or_else(|e| fail(&format!("offer {}: {e}", offer.id().0.as_hex())));
            println!(
                "{}",
                serde_json::json!({
                    "offer_id": offer.id().0.as_hex().to_string(),
                    "invoice_created_at": fetched.invoice.created_at().as_secs(),
                    "payment_paths": fetched.invoice.payment_paths().len(),
                    "elapsed_ms": fetched.elapsed.as_secs_f64() * 1000.0,
                })
            );
        }
    });
}

fn fail(message: &str) -> ! {
    eprintln!("async-offers-server: {message}");
    std::process::exit(1);
}

/// Minimal `log` writer for the binary: `RUST_LOG` set means debug and up to stderr.
fn simple_stderr_logger() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
        fn flush(&self) {}
    }
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
