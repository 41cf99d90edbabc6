//! Quickstart: an embedded reference server on 127.0.0.1, a client filling offers from it, and
//! a payer fetching one offer's static invoice from the server.
//!
//! `cargo run --release -p quickstart [-- --offers N --json]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, Config, Event, EventListener, ServerConfig};
use async_offers_server::{check_invoice_for_offer, Payer};
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;

struct PrintReady {
    started: Instant,
    quiet: bool,
}

impl EventListener for PrintReady {
    fn on_event(&self, event: Event) {
        if let (Event::OfferReady { offer }, false) = (&event, self.quiet) {
            println!(
                "[{:>7.1} ms] offer ready in slot {}: {}",
                self.started.elapsed().as_secs_f64() * 1e3,
                offer.slot,
                offer.offer
            );
        }
    }
}

fn main() {
    // With `RUST_LOG` set, the protocol's timeline on stderr, client and server interleaved.
    async_offers::log_to_stderr();
    let mut offers = 10usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--offers" => {
                offers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--json" => json = true,
            _ => usage(),
        }
    }
    if offers == 0 || offers > u16::MAX as usize {
        usage();
    }
    std::process::exit(match run(offers, json) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            1
        }
    });
}

fn usage() -> ! {
    eprintln!("usage: quickstart [--offers N] [--json]");
    std::process::exit(2);
}

fn run(offers: usize, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server_dir = tempfile::tempdir()?;
    let client_dir = tempfile::tempdir()?;
    let server = runtime.block_on(async_offers_server::start(
        async_offers_server::ServerOptions {
            listen: "127.0.0.1:0".parse()?,
            data_dir: server_dir.path().to_path_buf(),
            network: Network::Regtest,
            compact_scid: None,
            replay_replies_after: None,
            ignore_invoice_requests: false,
            offer_paths_lifetime: Default::default(),
        },
    ))?;
    let server_config = ServerConfig {
        node_id: server.identity().node_id(),
        address: server.local_addr().to_string(),
        paths: server.identity().mint_paths(b"quickstart-wallet", None)?,
    };
    if !json {
        println!(
            "static invoice server {} on {}",
            server_config.node_id, server_config.address
        );
    }
    let mut config = Config::new(Network::Regtest, client_dir.path(), server_config);
    config.ready_offer_target = offers as u16;

    let seed = [0x5a; 32];
    let started = Instant::now();
    let client = AsyncOffersClient::builder(config, seed)
        .runtime(runtime.handle().clone())
        .build()?;
    client.add_listener(Arc::new(PrintReady {
        started,
        quiet: json,
    }));
    client.start()?;
    runtime.block_on(client.wait_for_ready_offers(1, Duration::from_secs(30)))?;
    let time_to_first = started.elapsed();
    let all = runtime.block_on(client.wait_for_ready_offers(offers, Duration::from_secs(60)))?;
    let time_to_all = started.elapsed();

    // Now be a payer: ask the server for the first offer's static invoice over its paths.
    let paid_offer = &all[0];
    let offer: Offer = paid_offer
        .offer
        .parse()
        .map_err(|e| format!("offer does not parse: {e:?}"))?;
    let fetched = runtime.block_on(async {
        let payer = Payer::connect(
            server.identity().node_id(),
            &server.local_addr().to_string(),
            Network::Regtest,
        )
        .await?;
        payer
            .fetch_static_invoice(&offer, Duration::from_secs(10))
            .await
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let check = fetched
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|f| check_invoice_for_offer(&offer, &f.invoice, now));
    let fetch_ms = fetched.as_ref().ok().map(|f| f.elapsed.as_secs_f64() * 1e3);

    if json {
        let offers_json: Vec<_> = all
            .iter()
            .map(|o| {
                serde_json::json!({
                    "slot": o.slot,
                    "state": format!("{:?}", o.state),
                    "offer": o.offer,
                    "offer_id": o.offer_id,
                    "label": o.label,
                    "created_at": o.created_at.as_secs(),
                    "expires_at": o.expires_at.map(|e| e.as_secs()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "offers": offers_json,
                "time_to_first_ready_ms": time_to_first.as_secs_f64() * 1e3,
                "time_to_all_ready_ms": time_to_all.as_secs_f64() * 1e3,
                "payer": {
                    "offer_id": paid_offer.offer_id,
                    "fetched": fetched.is_ok(),
                    "matches": check.is_ok(),
                    "fetch_ms": fetch_ms,
                },
            })
        );
    } else {
        println!(
            "{} offers ready: first after {:.1} ms, all after {:.1} ms",
            all.len(),
            time_to_first.as_secs_f64() * 1e3,
            time_to_all.as_secs_f64() * 1e3
        );
        if let (Ok(()), Some(ms)) = (&check, fetch_ms) {
            println!(
                "payer fetched the static invoice of offer {} in {ms:.1} ms: same offer, signing key, chain, not expired",
                paid_offer.offer_id
            );
        }
    }
    client.stop();
    server.stop();
    check.map_err(|e| format!("payer check failed: {e}").into())
}
