//! `async-offers`: the SDK from a shell, against any LDK-compatible static invoice server. Its
//! default command, `fill`, fills a wallet's cache of ready offers, prints them, and exits 0
//! once the requested number is ready; the others hand out, list, report, sync, back up and
//! restore offers, and read the events.
//!
//! Offers already cached in `--data-dir` are shown before any connection is made; if enough of
//! them are ready, the server is not contacted at all.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::keys::LDK_NODE_SEED_LEN;
use async_offers::{
    AsyncOffersClient, Clock, Config, Event, OfferInfo, OfferState, ServerConfig, SystemClock,
    WalletSeed,
};
use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::Network;

const USAGE: &str = "usage: async-offers [COMMAND] --server-node-id HEX --server-address HOST:PORT \
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

Commands (the flags above go with each; `async-offers COMMAND --help` says what it does):
  fill               (the default) have --offers ready, then hand out --take of them
  take               hand out one offer (under --label TEXT), waiting for one if none is ready
  list               the offers in --data-dir, with their states; no network
  status             connect, then each server's connection and what last went wrong with it
  sync               what a background window does, by --timeout-secs; prints its report
  check              check every handed-out offer as a payer sees it; prints the report
  export FILE        write the handed-out offers to FILE, an offer book for a backup
  import FILE        import the offer book in FILE (a restored backup, another device)
  events [--ack]     the events waiting for the app; --ack marks each handled

status, sync, check, export, import and events always print JSON. Exit status: 0 when the
command did its job (fill: N offers ready; sync, check: complete; status: every server
connected), 1 when
not, not in time or the client fails, 2 for a usage error. RUST_LOG=1 logs to stderr.";

/// What each command does, for `COMMAND --help`.
const COMMANDS: [(&str, &str); 9] = [
    (
        "fill",
        "fill: connects if fewer than --offers are ready, prints each offer as it becomes ready, \
then hands out --take of them (labelled --label-1, ...). Exits 0 once --offers are ready.",
    ),
    (
        "take",
        "take: hands out one ready offer under --label and prints it; connects and waits (up \
to --timeout-secs) for one only if none is ready. Never the same offer twice.",
    ),
    (
        "list",
        "list: prints every offer in --data-dir with its state, slot and label, without \
connecting.",
    ),
    (
        "status",
        "status: starts the client (which, as any start, also fills missing offers), waits up \
to --timeout-secs (default 10) until every server is connected, and prints each server's \
connection and last problem. Exits 1 if one is not connected.",
    ),
    (
        "sync",
        "sync: does what a started client does over time in one window of --timeout-secs: \
connects, fills the missing ready offers, refreshes due invoices, waits until each is confirmed \
and written, disconnects. Prints the report; exits 0 if it is complete.",
    ),
    (
        "check",
        "check: connects and fetches each handed-out offer's static invoice from its server \
as a payer does, compares it with the one the server confirmed last, serves again what the \
server lost or rolled back, and marks broken an offer whose slot holds another offer's invoice. \
Prints the report and each offer's finding; exits 0 if every check ended (--timeout-secs, \
default 60).",
    ),
    (
        "export",
        "export FILE: writes the handed-out offers to FILE as an offer book (for a backup); \
no network.",
    ),
    (
        "import",
        "import FILE: imports the offer book in FILE; its offers are refreshed from here on \
and never handed out again. Prints how many were imported; no network.",
    ),
    (
        "events",
        "events [--ack]: prints the events waiting for the app, oldest first (those that \
ask it to act are kept across runs); with --ack, marks each handled once printed.",
    ),
];

/// What the command line was asked to do.
#[derive(Clone, Debug, PartialEq)]
enum Command {
    Fill,
    Take,
    List,
    Status,
    Sync,
    Check,
    Export(std::path::PathBuf),
    Import(std::path::PathBuf),
    Events { ack: bool },
}

const SEED_FLAGS: &str =
    "--seed-hex, --ldk-node-mnemonic, --ldk-node-seed-hex, --ldk-node-seed-file";

struct Args {
    command: Command,
    servers: Vec<ServerConfig>,
    seed: WalletSeed,
    data_dir: std::path::PathBuf,
    network: Network,
    offers: u16,
    take: usize,
    label: Option<String>,
    timeout: Option<Duration>,
    lock_wait: Duration,
    wall_clock_offset: i64,
    json: bool,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = args.peekable();
    let name = args.next_if(|arg| !arg.starts_with('-'));
    let args: Vec<String> = args.collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        let name = name.as_deref().unwrap_or("fill");
        let help = COMMANDS.iter().find(|(command, _)| *command == name);
        return Err(help.map_or(String::new(), |(_, help)| format!("help:{help}")));
    }
    let mut args = args.into_iter().peekable();
    let mut file = || {
        args.next_if(|arg| !arg.starts_with('-'))
            .map(std::path::PathBuf::from)
    };
    let mut command = match name.as_deref() {
        None | Some("fill") => Command::Fill,
        Some("take") => Command::Take,
        Some("list") => Command::List,
        Some("status") => Command::Status,
        Some("sync") => Command::Sync,
        Some("check") => Command::Check,
        Some("export") => Command::Export(file().ok_or("export needs a FILE")?),
        Some("import") => Command::Import(file().ok_or("import needs a FILE")?),
        Some("events") => Command::Events { ack: false },
        Some(other) => return Err(format!("unknown command {other}")),
    };
    let mut args = args.filter(|arg| match (&mut command, arg.as_str()) {
        (Command::Events { ack }, "--ack") => {
            *ack = true;
            false
        }
        _ => true,
    });
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
    let mut timeout = None;
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
                timeout = Some(Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--timeout-secs: {e}"))?,
                ))
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
        command,
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
            if let Some(help) = why.strip_prefix("help:") {
                println!("{help}\n\n{USAGE}");
                return ExitCode::SUCCESS;
            }
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
    let (runtime, client) = build(&args)?;
    match &args.command {
        Command::Fill => fill(&runtime, &client, &args),
        Command::Take => take(&runtime, &client, &args),
        Command::List => {
            print_offers(&client.offers(), &args);
            Ok(())
        }
        Command::Status => status(&client, &args),
        Command::Sync => sync(&runtime, &client, &args),
        Command::Check => check(&runtime, &client, &args),
        Command::Export(file) => {
            let book = client.export_offers().map_err(|e| e.to_string())?;
            // Written whole, then renamed over the last backup: a failure leaves that intact.
            let partial = file.with_extension("partial");
            std::fs::write(&partial, &book)
                .and_then(|()| std::fs::rename(&partial, file))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let handed_out = client
                .offers()
                .iter()
                .filter(|o| o.state == OfferState::Used)
                .count();
            let exported = serde_json::json!({ "exported": handed_out, "bytes": book.len() });
            println!("{exported}");
            Ok(())
        }
        Command::Import(file) => {
            let book = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let imported = client.import_offers(&book).map_err(|e| e.to_string())?;
            let imported = serde_json::json!({
                "imported": imported.imported,
                "already_here": imported.already_here,
                "conflicting": imported.conflicting,
            });
            println!("{imported}");
            Ok(())
        }
        Command::Events { ack: false } => {
            for queued in client.waiting_events() {
                print_event(&queued);
            }
            Ok(())
        }
        Command::Events { ack: true } => {
            // As an app reads the queue: each event printed, then marked handled.
            while let Some(queued) = client.next_event() {
                print_event(&queued);
                client.event_handled(queued.id).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// The client of `args`, on a runtime of its own.
fn build(args: &Args) -> Result<(tokio::runtime::Runtime, AsyncOffersClient), String> {
    let mut servers = args.servers.clone().into_iter();
    let first = servers.next().ok_or("no server")?;
    let mut config = Config::new(args.network, &args.data_dir, first);
    config.servers.extend(servers);
    config.ready_offer_target = args.offers;
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
    Ok((runtime, client))
}

/// How long the command may take: `--timeout-secs`, else `default`.
fn timeout(args: &Args, default: u64) -> Duration {
    args.timeout.unwrap_or(Duration::from_secs(default))
}

fn fill(
    runtime: &tokio::runtime::Runtime,
    client: &AsyncOffersClient,
    args: &Args,
) -> Result<(), String> {
    let started = Instant::now();
    let wanted = usize::from(args.offers);
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
        let deadline = started + timeout(args, 60);
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
                        timeout(args, 60),
                        last_problems(client)
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
    let label_of = |n| args.label.as_ref().map(|label| format!("{label}-{n}"));
    let taken = take_offers(client, runtime, args, args.take, &label_of, started)?;
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
    count: usize,
    label_of: &dyn Fn(usize) -> Option<String>,
    started: Instant,
) -> Result<Vec<OfferInfo>, String> {
    let mut taken = Vec::with_capacity(count);
    if count > 0 {
        // Refills (and refreshes of what is handed out) need the connection.
        match client.start() {
            Ok(()) | Err(async_offers::Error::AlreadyStarted) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    for n in 1..=count {
        let label = label_of(n);
        let offer = loop {
            match client.take_offer(label.clone()) {
                Ok(offer) => break offer,
                Err(async_offers::Error::NoReadyOffer) => {
                    let remaining =
                        (started + timeout(args, 60)).saturating_duration_since(Instant::now());
                    runtime
                        .block_on(client.wait_for_ready_offers(1, remaining))
                        .map_err(|e| {
                            format!(
                                "no offer to hand out within {:?}: {e}{}",
                                timeout(args, 60),
                                last_problems(client)
                            )
                        })?;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        print_taken(&offer, args);
        // A soak test may kill us at any moment: what was handed out is already on screen.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        taken.push(offer);
    }
    Ok(taken)
}

/// `take`: one offer handed out under `--label` itself, connecting only if none is ready.
fn take(
    runtime: &tokio::runtime::Runtime,
    client: &AsyncOffersClient,
    args: &Args,
) -> Result<(), String> {
    let offer = match client.take_offer(args.label.clone()) {
        Ok(offer) => offer,
        Err(async_offers::Error::NoReadyOffer) => {
            let label = |_| args.label.clone();
            return take_offers(client, runtime, args, 1, &label, Instant::now()).map(drop);
        }
        Err(e) => return Err(e.to_string()),
    };
    print_taken(&offer, args);
    Ok(())
}

/// An offer just handed out, as a JSON line of its own with `--json`.
fn print_taken(offer: &OfferInfo, args: &Args) {
    if args.json {
        println!("{}", serde_json::json!({ "taken": offer_json(offer) }));
    } else {
        print!("handed out");
        print_offer(offer);
    }
}

fn print_event(queued: &async_offers::QueuedEvent) {
    let event = serde_json::json!({ "id": queued.id, "event": event_json(&queued.event) });
    println!("{event}");
}

/// `status`: connected, until each server is connected or has failed (or the timeout).
fn status(client: &AsyncOffersClient, args: &Args) -> Result<(), String> {
    client.start().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout(args, 10);
    // A server's problem may be from a dial retried since: wait for every one to connect.
    let settled =
        |status: &async_offers::ClientStatus| status.servers.iter().all(|server| server.connected);
    let mut status = client.status();
    while !settled(&status) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        status = client.status();
    }
    client.stop();
    let servers: Vec<_> = status
        .servers
        .iter()
        .map(|server| {
            serde_json::json!({
                "server_node_id": server.server_node_id,
                "connected": server.connected,
                "last_problem": server.last_problem,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "node_id": client.node_id().to_string(),
            "ready_offers": status.ready_offers,
            "servers": servers,
        })
    );
    match status.servers.iter().all(|server| server.connected) {
        true => Ok(()),
        false => Err("not every server is connected".into()),
    }
}

/// `sync`: one background window's work, and its report.
fn sync(
    runtime: &tokio::runtime::Runtime,
    client: &AsyncOffersClient,
    args: &Args,
) -> Result<(), String> {
    let report = runtime
        .block_on(client.sync(timeout(args, 25)))
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({
            "complete": report.complete,
            "ready_offers": report.ready_offers,
            "wanted_offers": report.wanted_offers,
            "refreshed": report.refreshed,
            "verified": report.verified,
            "unfinished": unfinished_json(&report.unfinished),
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
        })
    );
    match report.complete {
        true => Ok(()),
        false => Err("the sync did not finish in time".into()),
    }
}

/// `check`: every handed-out offer checked as a payer sees it, and the report.
fn check(
    runtime: &tokio::runtime::Runtime,
    client: &AsyncOffersClient,
    args: &Args,
) -> Result<(), String> {
    let report = runtime
        .block_on(client.check_offers(timeout(args, 60)))
        .map_err(|e| e.to_string())?;
    let offers: Vec<_> = client
        .status()
        .offer_checks
        .iter()
        .map(|check| {
            serde_json::json!({
                "server_node_id": check.server_node_id,
                "offer_id": check.offer_id,
                "verified_at": check.verified_at.map(|at| at.as_secs()),
                "finding": check.finding,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "complete": report.complete,
            "checked": report.checked,
            "verified": report.verified,
            "served_again": report.served_again,
            "broken": report.broken,
            "unfinished": unfinished_json(&report.unfinished),
            "offers": offers,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
        })
    );
    match report.complete {
        true => Ok(()),
        false => Err("not every check ended in time".into()),
    }
}

/// What a report left unfinished, as JSON.
fn unfinished_json(unfinished: &[async_offers::Unfinished]) -> Vec<serde_json::Value> {
    unfinished
        .iter()
        .map(|left| {
            serde_json::json!({
                "server_node_id": left.server_node_id,
                "offer_id": left.offer_id,
                "reason": left.reason,
            })
        })
        .collect()
}

/// The offers, as text or (`--json`) one object.
fn print_offers(offers: &[OfferInfo], args: &Args) {
    if args.json {
        let offers: Vec<_> = offers.iter().map(offer_json).collect();
        println!("{}", serde_json::json!({ "offers": offers }));
    } else {
        for offer in offers {
            print_offer(offer);
        }
    }
}

/// An event as JSON: its kind and what it carries (the app's own labels and payers' notes
/// included: this is the app's view).
fn event_json(event: &Event) -> serde_json::Value {
    match event {
        Event::OfferReady { offer } => {
            serde_json::json!({ "kind": "OfferReady", "offer": offer_json(offer) })
        }
        Event::OfferReplaced {
            old_offer_id,
            new_offer,
        } => serde_json::json!({
            "kind": "OfferReplaced", "old_offer_id": old_offer_id, "new_offer": offer_json(new_offer),
        }),
        Event::OfferExpiring { offer } => {
            serde_json::json!({ "kind": "OfferExpiring", "offer": offer_json(offer) })
        }
        Event::OfferExpired { offer_id } => {
            serde_json::json!({ "kind": "OfferExpired", "offer_id": offer_id })
        }
        Event::InvoiceRefreshed { offer_id } => {
            serde_json::json!({ "kind": "InvoiceRefreshed", "offer_id": offer_id })
        }
        Event::InvoiceRefreshFailed { offer, reason } => serde_json::json!({
            "kind": "InvoiceRefreshFailed", "offer": offer_json(offer), "reason": reason,
        }),
        Event::ServerConnected { server_node_id } => {
            serde_json::json!({ "kind": "ServerConnected", "server_node_id": server_node_id })
        }
        Event::ServerDisconnected { server_node_id } => {
            serde_json::json!({ "kind": "ServerDisconnected", "server_node_id": server_node_id })
        }
        Event::InvoiceRequestForwarded {
            offer_id,
            amount_msats,
            payer_note,
        } => serde_json::json!({
            "kind": "InvoiceRequestForwarded", "offer_id": offer_id, "amount_msats": amount_msats, "payer_note": payer_note,
        }),
        Event::OfferBroken { offer, reason } => serde_json::json!({
            "kind": "OfferBroken", "offer": offer_json(offer), "reason": reason,
        }),
        other => serde_json::json!({ "kind": format!("{other:?}") }),
    }
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
        "verified_at": offer.verified_at.map(|at| at.as_secs()),
        "broken": offer.broken,
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
