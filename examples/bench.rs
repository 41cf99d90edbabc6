//! End-to-end benchmark: the reference server as its own process on 127.0.0.1, fresh clients
//! filling 1, 10 and 50 offers, a cold start from disk, a payer fetching invoices, the CPU the
//! SDK spends per offer beside LDK's own client doing the same work, and the client's memory.
//!
//! `cargo run --release --example bench -- [--json] [--runs N] [--fill-only OFFERS[,OFFERS…]
//! [--rtt-ms MS] | --sync-only | --cold-start-only]` (N ≥ 1, default 15). `--fill-only` times
//! only fills of those many offers, for profiling, over a link with a round trip of `MS`
//! (a proxy delaying each way by half) if given; `--sync-only` only the background window's
//! `sync` of a fill and of refreshes; `--cold-start-only` only the cold start.

#[path = "../benches/support/cpu.rs"]
mod cpu;
#[path = "../benches/support/heap.rs"]
mod heap;
#[allow(dead_code)] // Shared with the payment-secret test, which uses more of it.
#[path = "../benches/support/ldk_flow.rs"]
mod ldk_flow;
#[allow(dead_code)] // Shared with the crash soak, which uses more of it.
#[path = "../benches/support/server_process.rs"]
mod server_process;
use cpu::cpu_ms;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_offers::testing::bench::OfferWork;
use async_offers::testing::link::CountingProxy;
use async_offers::{AsyncOffersClient, Config};
use async_offers_server::Payer;
use ldk_flow::{LdkFlow, ServerPaths};
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;
use serde_json::{json, Value};
use server_process::ServerProcess;

const SEED: [u8; 32] = [0x5a; 32];
const WAIT: Duration = Duration::from_secs(60);
/// Offers built per CPU measurement, for the SDK and for LDK alike.
const CPU_SAMPLES: usize = 300;
const CYCLES: usize = 1_000;
/// Offers live this long in the churn phase, so handed-out offers expire and are dropped.
const CHURN_OFFER_SECS: u64 = 5;
/// Cycles of the churn phase, with memory read at each of these counts.
const CHURN_CHECKPOINTS: [usize; 4] = [500, 1_000, 2_000, 3_000];

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

/// Bytes live on this process's heap, MiB to one decimal.
fn heap_mb() -> f64 {
    (heap::live_bytes() as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

type Failure = Box<dyn std::error::Error>;

fn main() {
    let mut json_out = false;
    let mut runs = 15usize;
    let mut fill_only: Option<Vec<usize>> = None;
    let mut rtt = None;
    let mut sync_only = false;
    let mut cold_start_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json_out = true,
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage())
            }
            "--fill-only" => {
                let counts: Option<Vec<usize>> = args
                    .next()
                    .and_then(|list| list.split(',').map(|n| n.parse().ok()).collect());
                fill_only = Some(
                    counts
                        .filter(|counts| counts.iter().all(|n| *n > 0))
                        .unwrap_or_else(|| usage()),
                )
            }
            "--rtt-ms" => {
                rtt = Some(Duration::from_millis(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| usage()),
                ))
            }
            "--sync-only" => sync_only = true,
            "--cold-start-only" => cold_start_only = true,
            _ => usage(),
        }
    }
    let report = match (fill_only, sync_only, cold_start_only) {
        (Some(counts), false, false) => fills(runs, &counts, rtt),
        (None, true, false) if rtt.is_none() => syncs(runs),
        (None, false, true) if rtt.is_none() => cold_starts(runs),
        (None, false, false) if rtt.is_none() => run(runs),
        _ => usage(),
    };
    match report {
        Ok(report) if json_out => println!("{report}"),
        Ok(report) => println!("{}", serde_json::to_string_pretty(&report).unwrap()),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bench [--json] [--runs N] [--fill-only OFFERS[,OFFERS...] [--rtt-ms MS] | --sync-only | --cold-start-only]"
    );
    std::process::exit(2);
}

fn config(server: &ServerProcess, dir: &Path, offers: usize) -> Config {
    let mut config = Config::new(Network::Regtest, dir, server.config.clone());
    config.ready_offer_target = offers as u16;
    // Speed is measured here, not the politeness budget (which would pace the cycles below).
    config.max_messages_per_minute = u32::MAX;
    config
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Median and 90th percentile, in the unit given.
fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&samples, q);
    json!({ "median": at(0.5), "p90": at(0.9), "runs": samples.len() })
}

/// The `q` quantile of sorted, non-empty `samples`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    quantile(&samples, 0.5)
}

/// One fill from nothing, timed from building the client.
struct Fill {
    first_ready: Duration,
    all_ready: Duration,
    /// CPU both processes spent meanwhile: with both on this machine's cores, their sum over
    /// the number of cores is the least `all_ready` can be.
    client_cpu_ms: Option<f64>,
    server_cpu_ms: Option<f64>,
}

/// One fill of `offers` from nothing, over a link with a round trip of `rtt` if given.
fn fill_once(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    offers: usize,
    rtt: Option<Duration>,
) -> Result<Fill, Failure> {
    let server = ServerProcess::spawn(binary, "bench", &[])?;
    let server_pid = server.pid().to_string();
    let dir = tempfile::tempdir()?;
    let mut config = config(&server, dir.path(), offers);
    let _link = match rtt {
        Some(rtt) => {
            let link = runtime.block_on(CountingProxy::start_with_latency(
                &server.config.address,
                rtt / 2,
            ))?;
            config.servers[0].address = link.address.clone();
            Some(link)
        }
        None => None,
    };
    let cpu_before = (cpu_ms("self"), cpu_ms(&server_pid));
    let started = Instant::now();
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(runtime.handle().clone())
        .build()?;
    client.start()?;
    runtime.block_on(client.wait_for_ready_offers(1, WAIT))?;
    let first_ready = started.elapsed();
    runtime.block_on(client.wait_for_ready_offers(offers, WAIT))?;
    let all_ready = started.elapsed();
    let spent = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let fill = Fill {
        first_ready,
        all_ready,
        client_cpu_ms: spent(cpu_before.0, cpu_ms("self")),
        server_cpu_ms: spent(cpu_before.1, cpu_ms(&server_pid)),
    };
    client.stop();
    Ok(fill)
}

/// Resident memory of this process (the client; the server is its own process), MiB.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Per-offer CPU time of the SDK and of LDK's client, medians over [`CPU_SAMPLES`] offers each,
/// on this one thread, over fresh server paths for every offer.
fn cpu_per_offer_us() -> Result<(f64, f64), Failure> {
    let server = ServerPaths::new();
    let expiry = now() + Duration::from_secs(365 * 24 * 3600);
    let sdk = OfferWork::new(&SEED, Network::Regtest);
    let mut sdk_samples = Vec::with_capacity(CPU_SAMPLES);
    for _ in 0..CPU_SAMPLES {
        let paths = vec![server.path()];
        let started = Instant::now();
        sdk.build(paths, Some(expiry), server.node_id(), &[], now())?;
        sdk_samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let mut ldk_samples = Vec::with_capacity(CPU_SAMPLES);
    let mut flow = LdkFlow::new(SEED, &server);
    for i in 0..CPU_SAMPLES {
        if i > 0 && i % LdkFlow::SLOTS as usize == 0 {
            flow = LdkFlow::new(SEED, &server);
        }
        let (paths, reply) = (vec![server.path()], LdkFlow::responder(&server));
        let started = Instant::now();
        if !flow.build(paths, expiry, reply) {
            return Err("LDK's flow built no offer".into());
        }
        ldk_samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok((median(sdk_samples), median(ldk_samples)))
}

/// Memory while offers come and go: offers that expire after [`CHURN_OFFER_SECS`], so the ones
/// handed out are dropped and the cache stays the same size; one offer taken and refilled per
/// cycle. Resident memory and offers kept at each checkpoint should stay flat.
fn churn_memory(runtime: &tokio::runtime::Runtime, binary: &Path) -> Result<Value, Failure> {
    let secs = CHURN_OFFER_SECS.to_string();
    let server = ServerProcess::spawn(binary, "bench", &["--offer-paths-secs", &secs])?;
    let dir = tempfile::tempdir()?;
    let mut config = config(&server, dir.path(), 10);
    config.min_offer_paths_lifetime = Duration::from_secs(1);
    config.offer_expiring_notice = Duration::from_millis(500);
    config.tick_interval = Duration::from_millis(100);
    let client = AsyncOffersClient::builder(config, SEED)
        .runtime(runtime.handle().clone())
        .build()?;
    client.start()?;
    runtime.block_on(client.wait_for_ready_offers(10, WAIT))?;
    let mut checkpoints = Vec::new();
    let started = Instant::now();
    for cycle in 1..=CHURN_CHECKPOINTS[CHURN_CHECKPOINTS.len() - 1] {
        // Right after a drop of expired offers there may be none Ready for a moment.
        let _ = client.take_offer(None);
        runtime.block_on(client.wait_for_ready_offers(10, WAIT))?;
        if CHURN_CHECKPOINTS.contains(&cycle) {
            checkpoints.push(json!({
                "cycles": cycle,
                "seconds": started.elapsed().as_secs_f64().round(),
                "client_rss_mb": rss_mb().map(|mb| (mb * 10.0).round() / 10.0),
                "client_heap_mb": heap_mb(),
                "offers_kept": client.offers().len(),
            }));
        }
    }
    client.stop();
    Ok(json!({ "offer_lifetime_secs": CHURN_OFFER_SECS, "checkpoints": checkpoints }))
}

/// How often the invoices of the sync benchmark's handed-out offers come due.
const SYNC_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// A background window's `sync`, `runs` times each: of a client never started filling 10
/// offers from nothing, and of one whose 10 handed-out offers are due for a refresh (the
/// 10 Ready ones are not). Each must complete; its own `elapsed` is the sample.
fn sync_times(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    runs: usize,
) -> Result<(Value, Value), Failure> {
    let mut fill = Vec::with_capacity(runs);
    let mut refresh = Vec::with_capacity(runs);
    for _ in 0..runs {
        let server = ServerProcess::spawn(binary, "bench", &[])?;
        let dir = tempfile::tempdir()?;
        let mut config = config(&server, dir.path(), 10);
        config.invoice_refresh_interval = SYNC_REFRESH_INTERVAL;
        let client = AsyncOffersClient::builder(config, SEED)
            .runtime(runtime.handle().clone())
            .build()?;
        let complete = |report: async_offers::SyncReport| match report.complete {
            true => Ok(report.elapsed),
            false => Err(format!("sync incomplete: {:?}", report.unfinished)),
        };
        fill.push(millis(complete(runtime.block_on(client.sync(WAIT))?)?));
        for _ in 0..10 {
            client.take_offer(None)?;
        }
        complete(runtime.block_on(client.sync(WAIT))?)?;
        std::thread::sleep(SYNC_REFRESH_INTERVAL + Duration::from_millis(100));
        let report = runtime.block_on(client.sync(WAIT))?;
        if report.refreshed != 10 {
            return Err(format!("sync refreshed {} offers, not 10", report.refreshed).into());
        }
        refresh.push(millis(complete(report)?));
    }
    Ok((summary(fill), summary(refresh)))
}

fn bench_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `runs` fills from nothing of each count of offers (over a link with a round trip of `rtt`
/// if given): first-ready and all-ready summaries, and the median CPU each process spent per
/// fill.
fn fill_times(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    runs: usize,
    counts: &[usize],
    rtt: Option<Duration>,
) -> Result<(Value, Value, Value), Failure> {
    let mut first_ready = serde_json::Map::new();
    let mut all_ready = serde_json::Map::new();
    let mut cpu = serde_json::Map::new();
    for &offers in counts {
        let fills = (0..runs)
            .map(|_| fill_once(runtime, binary, offers, rtt))
            .collect::<Result<Vec<_>, _>>()?;
        let times = |pick: fn(&Fill) -> Duration| fills.iter().map(|f| millis(pick(f))).collect();
        first_ready.insert(offers.to_string(), summary(times(|f| f.first_ready)));
        all_ready.insert(offers.to_string(), summary(times(|f| f.all_ready)));
        let median_cpu = |pick: fn(&Fill) -> Option<f64>| {
            let samples: Option<Vec<f64>> = fills.iter().map(pick).collect();
            samples.map(|samples| (median(samples) * 10.0).round() / 10.0)
        };
        cpu.insert(
            offers.to_string(),
            json!({
                "client": median_cpu(|f| f.client_cpu_ms),
                "server": median_cpu(|f| f.server_cpu_ms),
            }),
        );
    }
    Ok((first_ready.into(), all_ready.into(), cpu.into()))
}

fn fills(runs: usize, counts: &[usize], rtt: Option<Duration>) -> Result<Value, Failure> {
    let binary = server_process::release_server_binary()?;
    let (first_ready, all_ready, cpu) = fill_times(&bench_runtime()?, &binary, runs, counts, rtt)?;
    let mut report = json!({
        "time_to_first_ready_ms": first_ready,
        "time_to_all_ready_ms": all_ready,
        "fill_cpu_ms": cpu,
    });
    if let Some(rtt) = rtt {
        // The medians in round trips of the link: what a fill costs over a mobile network.
        let in_round_trips = |times: &Value| -> Value {
            let round_trips = |offers: &String| {
                let median = times[offers]["median"].as_f64().unwrap_or(f64::NAN);
                json!((median / millis(rtt) * 10.0).round() / 10.0)
            };
            let counts = times
                .as_object()
                .into_iter()
                .flat_map(|by_count| by_count.keys());
            counts
                .map(|offers| (offers.clone(), round_trips(offers)))
                .collect()
        };
        report["rtt_ms"] = json!(millis(rtt));
        report["first_ready_round_trips"] = in_round_trips(&report["time_to_first_ready_ms"]);
        report["all_ready_round_trips"] = in_round_trips(&report["time_to_all_ready_ms"]);
    }
    Ok(report)
}

/// A new client on a data dir holding 10 Ready offers lists them, `runs` times: no network.
fn cold_starts(runs: usize) -> Result<Value, Failure> {
    let binary = server_process::release_server_binary()?;
    let runtime = bench_runtime()?;
    let server = ServerProcess::spawn(&binary, "bench", &[])?;
    let dir = tempfile::tempdir()?;
    let client = AsyncOffersClient::builder(config(&server, dir.path(), 10), SEED)
        .runtime(runtime.handle().clone())
        .build()?;
    client.start()?;
    runtime.block_on(client.wait_for_ready_offers(10, WAIT))?;
    client.stop();
    drop(client);
    Ok(json!({ "cold_start_ms": summary(cold_start_times(&server, dir.path(), runs)?) }))
}

/// `runs` cold starts on `dir`, which holds 10 Ready offers: a new client listing them.
fn cold_start_times(server: &ServerProcess, dir: &Path, runs: usize) -> Result<Vec<f64>, Failure> {
    let mut cold = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let client = AsyncOffersClient::new(config(server, dir, 10), SEED)?;
        let listed = client.ready_offers().len();
        cold.push(millis(started.elapsed()));
        if listed != 10 {
            return Err(format!("cold start listed {listed} ready offers, not 10").into());
        }
    }
    Ok(cold)
}

fn syncs(runs: usize) -> Result<Value, Failure> {
    let (fill, refresh) = sync_times(
        &bench_runtime()?,
        &server_process::release_server_binary()?,
        runs,
    )?;
    Ok(json!({ "sync_fill_10_ms": fill, "sync_refresh_10_ms": refresh }))
}

fn run(runs: usize) -> Result<Value, Failure> {
    let binary = server_process::release_server_binary()?;
    let runtime = bench_runtime()?;
    let (first_ready, all_ready, fill_cpu) =
        fill_times(&runtime, &binary, runs, &[1, 10, 50], None)?;

    // One client fills 10 offers and keeps them on disk; the server stays up for the payer.
    let server = ServerProcess::spawn(&binary, "bench", &[])?;
    let dir = tempfile::tempdir()?;
    let rss_before_client = rss_mb();
    let heap_before_client = heap_mb();
    let client = AsyncOffersClient::builder(config(&server, dir.path(), 10), SEED)
        .runtime(runtime.handle().clone())
        .build()?;
    client.start()?;
    let ready = runtime.block_on(client.wait_for_ready_offers(10, WAIT))?;
    let rss_after_fill = rss_mb();
    let heap_after_fill = heap_mb();

    let payer = runtime.block_on(Payer::connect(
        server.config.node_id,
        &server.config.address,
        Network::Regtest,
    ))?;
    let mut fetches = Vec::new();
    for info in &ready {
        let offer: Offer = info
            .offer
            .parse()
            .map_err(|e| format!("offer does not parse: {e:?}"))?;
        let fetched =
            runtime.block_on(payer.fetch_static_invoice(&offer, Duration::from_secs(10)))?;
        fetches.push(millis(fetched.elapsed));
    }

    client.stop();
    drop(client);

    // Cold start: a new client on that data dir lists its 10 ready offers, no network.
    let cold = cold_start_times(&server, dir.path(), runs)?;

    // Memory after many take/refill cycles: handed-out offers are kept until they expire, so
    // growth per offer kept is what to look at, not growth alone.
    let client = AsyncOffersClient::builder(config(&server, dir.path(), 10), SEED)
        .runtime(runtime.handle().clone())
        .build()?;
    client.start()?;
    for _ in 0..CYCLES {
        client.take_offer(None)?;
        runtime.block_on(client.wait_for_ready_offers(10, WAIT))?;
    }
    let rss_after_cycles = rss_mb();
    let heap_after_cycles = heap_mb();
    let kept_offers = client.offers().len();
    client.stop();
    drop(client);

    let (sync_fill, sync_refresh) = sync_times(&runtime, &binary, runs)?;
    let churn = churn_memory(&runtime, &binary)?;
    let (cpu, ldk_cpu) = cpu_per_offer_us()?;
    let mb = |rss: Option<f64>| rss.map(|mb| (mb * 10.0).round() / 10.0);
    Ok(json!({
        "time_to_first_ready_ms": first_ready,
        "time_to_all_ready_ms": all_ready,
        "fill_cpu_ms": fill_cpu,
        "cold_start_ms": summary(cold),
        "cpu_per_offer_us": cpu,
        "ldk_cpu_per_offer_us": ldk_cpu,
        "cpu_ratio_to_ldk": cpu / ldk_cpu,
        "client_rss_mb": mb(rss_after_fill),
        "client_rss_mb_before_client": mb(rss_before_client),
        "client_rss_mb_after_cycles": mb(rss_after_cycles),
        "client_heap_mb_before_client": heap_before_client,
        "client_heap_mb": heap_after_fill,
        "client_heap_mb_after_cycles": heap_after_cycles,
        "cycles": CYCLES,
        "offers_kept_after_cycles": kept_offers,
        "payer_fetch_ms": summary(fetches),
        "sync_fill_10_ms": sync_fill,
        "sync_refresh_10_ms": sync_refresh,
        "churn": churn,
    }))
}
