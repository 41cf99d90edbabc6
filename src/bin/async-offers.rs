//! `async-offers`: fills a wallet's cache of ready offers from any LDK-compatible static invoice
//! server, prints them, and exits 0 once the requested number is ready.
//!
//! Offers already cached in `--data-dir` are shown before any connection is made; if enough of
//! them are ready, the server is not contacted at all.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::keys::LDK_NODE_SEED_LEN;
use async_offers::{
    AsyncOffersClient, Clock, Config, OfferInfo, OfferState, ServerConfig, SystemClock, WalletSeed,
};
use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::Network;

const USAGE: &str = "usage: async-offers --server-node-id HEX --server-address HOST:PORT \
--server-paths HEX [...] (--seed-hex HEX | --ldk-node-mnemonic WORDS [--ldk-node-passphrase TEXT] | --ldk-node-seed-hex HEX | --ldk-node-seed-file PATH) --data-dir DIR [--network NET] [--offers N] [--take N [--label TEXT]] [--timeout-secs S] [--lock-wait-secs S] [--wall-clock-offset-secs S] [--json]

  --server-node-id   the static invoice server's node id (33 bytes, hex)
  --server-address   where its Lightning (noise) listener is, host:port
  --server-paths     the paths it gave this wallet, LDK's encoding of Vec<BlindedMessagePath>, hex
                     (repeat the three for each further server; the nth of each go together)
  --seed-hex         the 32-byte seed the wallet's LDK node gives KeysManager::new, hex
  --ldk-node-mnemonic  for an ldk-node wallet: its BIP39 mnemonic (one argument, words
                     separated by spaces), with --ldk-node-passphrase if it has one
  --ldk-node-seed-hex  for an ldk-node wallet: its 64 seed bytes (its seed file), hex
  --ldk-node-seed-file  for an ldk-node wallet: its seed file (the 64 bytes), as ldk-node
                     writes it
                     Secrets on the command line show in `ps` and the shell's history: give
                     - instead of a secret to read it from the next line of standard input
                     (one line per - , in the order of the flags), or the seed file.
  --data-dir         where the offers are kept; reused across runs
  --network          bitcoin, testnet, testnet4, signet or regtest (default regtest)
  --offers           how many ready offers to have (default 10)
  --take             then hand out this many offers (never one twice), each printed at once
  --label            label the handed-out offers TEXT-1, TEXT-2, ... (default: no label)
  --timeout-secs     give up after this long (default 60)
  --lock-wait-secs   wait this long for another client (the app, another run) to let go of
                     --data-dir (default 0: fail at once)
  --wall-clock-offset-secs  run as if the wall clock were off by S seconds (negative: behind),
                     as a phone's may be; waits still run on the monotonic clock
  --json             print one JSON object instead of text, with the wallet node's id as node_id

Exit status: 0 when N offers are ready, 1 when they are not in time or the client fails,
2 for a usage error. RUST_LOG=1 logs to stderr.";

const SEED_FLAGS: &str =
    "--seed-hex, --ldk-node-mnemonic, --ldk-node-seed-hex, --ldk-node-seed-file";

struct Args {
    servers: Vec<ServerConfig>,
    seed: WalletSeed,
    data_dir: std::path::PathBuf,
    network: Network,
    offers: u16,
    take: usize,
    label: Option<String>,
    timeout: Duration,
    lock_wait: Duration,
    wall_clock_offset: i64,
    json: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut node_ids, mut addresses, mut paths) = (Vec::new(), Vec::new(), Vec::new());
    let (mut seed, mut data_dir) = (None, None);
    let (mut mnemonic, mut passphrase, mut ldk_node_seed) = (None, None, None);
    let mut ldk_node_seed_file = None;
    let mut stdin = std::io::stdin().lines();
    // `-`: the secret is the next line of standard input.
    let mut secret = |flag: &str, value: String| match value.as_str() {
        "-" => match stdin.next() {
            Some(Ok(line)) => Ok(line),
            Some(Err(e)) => Err(format!("{flag}: reading standard input: {e}")),
            None => Err(format!("{flag} -: standard input ended before it")),
        },
        _ => Ok(value),
    };
    let mut network = Network::Regtest;
    let mut offers = 10u16;
    let mut take = 0usize;
    let mut label = None;
    let mut timeout = Duration::from_secs(60);
    let mut lock_wait = Duration::ZERO;
    let mut wall_clock_offset = 0i64;
    let mut json = false;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server-node-id" => node_ids.push(value()?),
            "--server-address" => addresses.push(value()?),
            "--server-paths" => paths.push(value()?),
            "--seed-hex" => seed = Some(secret(&flag, value()?)?),
            "--ldk-node-mnemonic" => mnemonic = Some(secret(&flag, value()?)?),
            "--ldk-node-passphrase" => passphrase = Some(secret(&flag, value()?)?),
            "--ldk-node-seed-hex" => ldk_node_seed = Some(secret(&flag, value()?)?),
            "--ldk-node-seed-file" => ldk_node_seed_file = Some(value()?),
            "--data-dir" => data_dir = Some(value()?),
            "--network" => network = value()?.parse().map_err(|e| format!("--network: {e}"))?,
            "--offers" => {
                offers = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--offers needs a number from 1 to 65535")?
            }
            "--take" => take = value()?.parse().map_err(|e| format!("--take: {e}"))?,
            "--label" => label = Some(value()?),
            "--timeout-secs" => {
                timeout = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--timeout-secs: {e}"))?,
                )
            }
            "--lock-wait-secs" => {
                lock_wait = Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--lock-wait-secs: {e}"))?,
                )
            }
            "--wall-clock-offset-secs" => {
                wall_clock_offset = value()?
                    .parse()
                    .map_err(|e| format!("--wall-clock-offset-secs: {e}"))?
            }
            "--json" => json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let required = |value: Option<String>, flag: &str| value.ok_or(format!("{flag} is required"));
    if node_ids.is_empty() || node_ids.len() != addresses.len() || node_ids.len() != paths.len() {
        return Err(
            "each server needs one --server-node-id, --server-address and --server-paths".into(),
        );
    }
    let servers = node_ids
        .iter()
        .zip(&addresses)
        .zip(&paths)
        .map(|((node_id, address), paths)| ServerConfig::from_hex(node_id, address, paths))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if passphrase.is_some() && mnemonic.is_none() {
        return Err("--ldk-node-passphrase goes with --ldk-node-mnemonic".into());
    }
    let hex_bytes = |hex: &str| Vec::<u8>::from_hex(hex.trim()).ok();
    let seed = match (seed, mnemonic, ldk_node_seed, ldk_node_seed_file) {
        (Some(hex), None, None, None) => hex_bytes(&hex)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(WalletSeed::from_keys_manager_seed)
            .ok_or("--seed-hex needs 32 bytes of hex")?,
        (None, Some(words), None, None) => {
            WalletSeed::from_ldk_node_mnemonic(&words, passphrase.as_deref())
                .map_err(|e| format!("--ldk-node-mnemonic: {e}"))?
        }
        (None, None, Some(hex), None) => hex_bytes(&hex)
            .and_then(|bytes| <[u8; LDK_NODE_SEED_LEN]>::try_from(bytes).ok())
            .map(|bytes| WalletSeed::from_ldk_node_seed_bytes(&bytes))
            .ok_or("--ldk-node-seed-hex needs 64 bytes of hex")?,
        (None, None, None, Some(path)) => WalletSeed::from_ldk_node_seed_file(path.as_ref())
            .map_err(|e| format!("--ldk-node-seed-file: {e}"))?,
        (None, None, None, None) => {
            return Err(format!("one of {SEED_FLAGS} is required"));
        }
        _ => return Err(format!("give only one of {SEED_FLAGS}")),
    };

    Ok(Args {
        servers,
        seed,
        data_dir: required(data_dir, "--data-dir")?.into(),
        network,
        offers,
        take,
        label,
        timeout,
        lock_wait,
        wall_clock_offset,
        json,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("async-offers: {why}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    async_offers::log_to_stderr();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("async-offers: {why}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let started = Instant::now();
    let mut servers = args.servers.clone().into_iter();
    let first = servers.next().ok_or("no server")?;
    let mut config = Config::new(args.network, &args.data_dir, first);
    config.servers.extend(servers);
    config.ready_offer_target = args.offers;
    let wanted = usize::from(args.offers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = AsyncOffersClient::builder(config, args.seed.keys_manager_seed())
        .runtime(runtime.handle().clone())
        .data_dir_lock_wait(args.lock_wait)
        .clock(Arc::new(OffsetClock(args.wall_clock_offset)))
        .build()
        .map_err(|e| e.to_string())?;

    let cached = client.offers();
    let cached_ready = cached
        .iter()
        .filter(|o| o.state == OfferState::Ready)
        .count();
    if !args.json {
        println!(
            "{} offers cached in {} ({cached_ready} ready), before any network:",
            cached.len(),
            args.data_dir.display()
        );
        for offer in &cached {
            print_offer(offer);
        }
    }
    let mut time_to_first = Duration::ZERO;
    let mut ready = client.ready_offers();
    if ready.len() < wanted {
        if !args.json {
            println!("filling {} more offers…", wanted - ready.len());
        }
        client.start().map_err(|e| e.to_string())?;
        let deadline = started + args.timeout;
        let mut shown: HashSet<String> = ready.iter().map(|o| o.offer_id.clone()).collect();
        // Wait for one more at a time, printing each new offer from this one thread.
        for count in ready.len() + 1..=wanted {
            let remaining = deadline.saturating_duration_since(Instant::now());
            ready = runtime
                .block_on(client.wait_for_ready_offers(count, remaining))
                .map_err(|e| {
                    format!(
                        "only {} of {wanted} offers ready within {:?}: {e}{}",
                        client.ready_offers().len(),
                        args.timeout,
                        last_problems(&client)
                    )
                })?;
            if count == 1 {
                time_to_first = started.elapsed();
            }
            for offer in ready.iter().filter(|o| shown.insert(o.offer_id.clone())) {
                if !args.json {
                    print!("[{:>8.1} ms]", started.elapsed().as_secs_f64() * 1e3);
                    print_offer(offer);
                }
            }
        }
    }
    let time_to_all = if cached_ready >= wanted {
        Duration::ZERO
    } else {
        started.elapsed()
    };
    let taken = take_offers(&client, &runtime, &args, started)?;
    client.stop();

    if args.json {
        let offers: Vec<_> = ready.iter().map(offer_json).collect();
        println!(
            "{}",
            serde_json::json!({
                "node_id": client.node_id().to_string(),
                "offers": offers,
                "from_cache": cached_ready.min(wanted),
                "taken": taken.iter().map(offer_json).collect::<Vec<_>>(),
                "time_to_first_ready_ms": time_to_first.as_secs_f64() * 1e3,
                "time_to_all_ready_ms": time_to_all.as_secs_f64() * 1e3,
            })
        );
    } else {
        println!(
            "{} offers ready ({} from the cache); first after {:.1} ms, all after {:.1} ms",
            ready.len(),
            cached_ready.min(wanted),
            time_to_first.as_secs_f64() * 1e3,
            time_to_all.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Hands out `--take` offers, printing each the moment it is handed out (as a JSON line of its
/// own with `--json`), and waiting for a refill when none is ready.
fn take_offers(
    client: &AsyncOffersClient,
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    started: Instant,
) -> Result<Vec<OfferInfo>, String> {
    let mut taken = Vec::with_capacity(args.take);
    if args.take > 0 {
        // Refills (and refreshes of what is handed out) need the connection.
        match client.start() {
            Ok(()) | Err(async_offers::Error::AlreadyStarted) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    for n in 1..=args.take {
        let label = args.label.as_ref().map(|label| format!("{label}-{n}"));
        let offer = loop {
            match client.take_offer(label.clone()) {
                Ok(offer) => break offer,
                Err(async_offers::Error::NoReadyOffer) => {
                    let remaining =
                        (started + args.timeout).saturating_duration_since(Instant::now());
                    runtime
                        .block_on(client.wait_for_ready_offers(1, remaining))
                        .map_err(|e| {
                            format!(
                                "no offer to hand out within {:?}: {e}{}",
                                args.timeout,
                                last_problems(client)
                            )
                        })?;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        if args.json {
            println!("{}", serde_json::json!({ "taken": offer_json(&offer) }));
        } else {
            print!("handed out");
            print_offer(&offer);
        }
        // A soak test may kill us at any moment: what was handed out is already on screen.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        taken.push(offer);
    }
    Ok(taken)
}

/// What last went wrong with each server, to say why a wait ran out (empty: nothing known).
fn last_problems(client: &AsyncOffersClient) -> String {
    client
        .status()
        .servers
        .into_iter()
        .filter_map(|server| {
            let problem = server.last_problem?;
            Some(format!("\n  server {}: {problem}", server.server_node_id))
        })
        .collect()
}

/// The system's clocks, with the wall clock off by this many seconds.
struct OffsetClock(i64);

impl Clock for OffsetClock {
    fn now(&self) -> Duration {
        let now = SystemClock.now();
        let by = Duration::from_secs(self.0.unsigned_abs());
        match self.0 < 0 {
            true => now.saturating_sub(by),
            false => now.saturating_add(by),
        }
    }

    fn monotonic(&self) -> Duration {
        SystemClock.monotonic()
    }
}

fn offer_json(offer: &OfferInfo) -> serde_json::Value {
    serde_json::json!({
        "server_node_id": offer.server_node_id,
        "slot": offer.slot,
        "state": format!("{:?}", offer.state),
        "offer": offer.offer,
        "offer_id": offer.offer_id,
        "label": offer.label,
        "created_at": offer.created_at.as_secs(),
        "expires_at": offer.expires_at.map(|e| e.as_secs()),
    })
}

fn print_offer(offer: &OfferInfo) {
    println!(
        "  slot {:>3} {:<7} {}{}",
        offer.slot,
        format!("{:?}", offer.state),
        offer.offer,
        offer
            .label
            .as_deref()
            .map(|label| format!(" ({label})"))
            .unwrap_or_default()
    );
}
