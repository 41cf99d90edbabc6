//! What handed-out offers cost a phone's data plan: every byte between the client and the
//! reference server (its own process on 127.0.0.1) counted by a proxy, over a simulated week
//! on a manual clock, for a client that runs all the time and for one that only wakes for a
//! background `sync` every 6 hours; and the bytes and CPU of one check.
//!
//! `cargo run --release --example data_use -- [--json] [--offers N[,N...]] [--days D]
//! [--check-hours H]` (default 10,1000 offers over 7 days). Each count is measured with the
//! defaults of before the offer checks (invoices refreshed every 2 h, no checks) and with
//! today's, their check interval set to H hours if given.

#[path = "../benches/support/cpu.rs"]
mod cpu;
#[allow(dead_code)] // Shared with the crash soak and the bench, which use more of it.
#[path = "../benches/support/server_process.rs"]
mod server_process;
use cpu::cpu_ms;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_offers::testing::link::{Bytes, CountingProxy};
use async_offers::{AsyncOffersClient, Config, ManualClock};
use lightning::bitcoin::Network;
use serde_json::{json, Value};
use server_process::ServerProcess;

type Failure = Box<dyn std::error::Error>;

const SEED: [u8; 32] = [0x5b; 32];
const WAIT: Duration = Duration::from_secs(120);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// How often the simulated running client's clock moves on.
const STEP: Duration = HOUR;
/// How often the simulated phone wakes for a background sync.
const SYNC_EVERY: Duration = Duration::from_secs(6 * 3600);
/// The most Ready offers kept: enough to hand out from quickly, out of the way of the figures
/// (they are never replaced during the measurement).
const MAX_READY: u16 = 100;

/// The defaults measured.
#[derive(Clone, Copy, Debug)]
enum Defaults {
    /// Before the offer checks: every handed-out offer's invoice rebuilt and sent every 2 h.
    Before,
    /// Today's `Config::new`, with this check interval if given.
    Now(Option<Duration>),
}

fn main() {
    let mut json_out = false;
    let mut counts = vec![10usize, 1_000];
    let mut days = 7u32;
    let mut check_interval = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json_out = true,
            "--offers" => {
                counts = args
                    .next()
                    .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect())
                    .filter(|counts: &Vec<usize>| !counts.is_empty() && !counts.contains(&0))
                    .unwrap_or_else(|| usage())
            }
            "--days" => {
                days = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage())
            }
            "--check-hours" => {
                check_interval = Some(
                    args.next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .map(|hours| Duration::from_secs(hours * 3600))
                        .unwrap_or_else(|| usage()),
                )
            }
            _ => usage(),
        }
    }
    match measure(&counts, days, check_interval) {
        Ok(report) if json_out => println!("{report}"),
        Ok(report) => println!("{}", serde_json::to_string_pretty(&report).unwrap()),
        Err(e) => {
            eprintln!("data_use failed: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: data_use [--json] [--offers N[,N...]] [--days D] [--check-hours H]");
    std::process::exit(2);
}

fn measure(
    counts: &[usize],
    days: u32,
    check_interval: Option<Duration>,
) -> Result<Value, Failure> {
    let binary = server_process::release_server_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = serde_json::Map::new();
    report.insert("days".into(), days.into());
    report.insert("check".into(), one_check(&runtime, &binary)?);
    for &offers in counts {
        let mut of_count = serde_json::Map::new();
        for (name, defaults) in [
            ("before", Defaults::Before),
            ("now", Defaults::Now(check_interval)),
        ] {
            of_count.insert(
                name.into(),
                week(&runtime, &binary, offers, defaults, days)?,
            );
        }
        if let Some(interval) = check_interval {
            of_count.insert("now_check_hours".into(), (interval.as_secs() / 3600).into());
        }
        report.insert(format!("{offers}_handed_out"), of_count.into());
    }
    Ok(report.into())
}

/// A reference server, a counting proxy to it, and a client of it through the proxy on a
/// manual clock, with `defaults` and `ready` offers wanted.
struct Setup {
    server: ServerProcess,
    proxy: CountingProxy,
    clock: Arc<ManualClock>,
    client: AsyncOffersClient,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(
        runtime: &tokio::runtime::Runtime,
        binary: &Path,
        defaults: Defaults,
        ready: u16,
    ) -> Result<Self, Failure> {
        let server = ServerProcess::spawn(binary, "data", &[])?;
        let proxy = runtime.block_on(CountingProxy::start(&server.config.address))?;
        let dir = tempfile::tempdir()?;
        let clock = Arc::new(ManualClock::starting_now());
        let mut through_proxy = server.config.clone();
        through_proxy.address = proxy.address.clone();
        let mut config = Config::new(Network::Regtest, dir.path(), through_proxy);
        config.ready_offer_target = ready;
        // Ready offers are not what is measured: none is replaced meanwhile.
        config.ready_offer_max_age = 365 * DAY;
        config.tick_interval = Duration::from_millis(20);
        config.max_messages_per_minute = u32::MAX;
        match defaults {
            Defaults::Before => {
                config.invoice_refresh_interval = 2 * HOUR;
                config.offer_check_interval = Duration::ZERO;
            }
            Defaults::Now(Some(interval)) => config.offer_check_interval = interval,
            Defaults::Now(None) => {}
        }
        let client = AsyncOffersClient::builder(config, SEED)
            .runtime(runtime.handle().clone())
            .clock(clock.clone())
            .build()?;
        Ok(Self {
            server,
            proxy,
            clock,
            client,
            _dir: dir,
        })
    }

    /// Starts the client and hands out `offers` offers, one per label, `ready` at a time as
    /// they come Ready; returns once the Ready ones are back and all is quiet.
    fn hand_out(
        &self,
        runtime: &tokio::runtime::Runtime,
        offers: usize,
        ready: u16,
    ) -> Result<(), Failure> {
        self.client.start()?;
        let mut handed_out = 0;
        while handed_out < offers {
            runtime.block_on(self.client.wait_for_ready_offers(usize::from(ready), WAIT))?;
            let batch = usize::from(ready).min(offers - handed_out);
            for _ in 0..batch {
                self.client.offer_for(&format!("contact {handed_out}"))?;
                handed_out += 1;
            }
        }
        runtime.block_on(self.client.wait_for_ready_offers(usize::from(ready), WAIT))?;
        settle(&self.proxy);
        Ok(())
    }
}

/// Waits until nothing has moved through `proxy` for a while: the client's work for the
/// clock's last step is done.
fn settle(proxy: &CountingProxy) {
    let quiet = Duration::from_millis(300);
    let deadline = Instant::now() + WAIT;
    let mut last = proxy.bytes();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = proxy.bytes();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// `offers` handed out, then `days` of a running client and `days` of background syncs.
fn week(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    offers: usize,
    defaults: Defaults,
    days: u32,
) -> Result<Value, Failure> {
    let ready = (offers as u16).min(MAX_READY);
    let setup = Setup::new(runtime, binary, defaults, ready)?;
    setup.hand_out(runtime, offers, ready)?;
    let Setup {
        proxy,
        clock,
        client,
        ..
    } = &setup;

    // Running: the clock moves on an hour at a time, and the client does what comes due.
    let before = proxy.bytes();
    let steps = (days * 24) as usize;
    for _ in 0..steps {
        clock.advance(STEP);
        settle(proxy);
    }
    let running = proxy.bytes() - before;
    client.stop();
    settle(proxy);

    // Background only: a sync every 6 hours.
    let before = proxy.bytes();
    let syncs = (days as usize * 24) / (SYNC_EVERY.as_secs() as usize / 3600);
    let mut incomplete = 0;
    for _ in 0..syncs {
        clock.advance(SYNC_EVERY);
        let report = runtime.block_on(client.sync(WAIT))?;
        incomplete += usize::from(!report.complete);
    }
    let syncing = proxy.bytes() - before;
    let per_day = |bytes: Bytes| {
        let days = f64::from(days);
        json!({
            "sent_kib_per_offer": kib(bytes.sent as f64 / days / offers as f64),
            "received_kib_per_offer": kib(bytes.received as f64 / days / offers as f64),
            "total_kib_per_offer": kib((bytes.sent + bytes.received) as f64 / days / offers as f64),
            "total_mib": mib((bytes.sent + bytes.received) as f64 / days),
        })
    };
    Ok(json!({
        "running_per_day": per_day(running),
        "syncing_per_day": per_day(syncing),
        "per_sync_kib": kib((syncing.sent + syncing.received) as f64 / syncs as f64),
        "syncs_incomplete": incomplete,
    }))
}

/// One check of a handed-out offer: the bytes each way and the CPU each process spent,
/// averaged over 20 checks.
fn one_check(runtime: &tokio::runtime::Runtime, binary: &Path) -> Result<Value, Failure> {
    const CHECKS: usize = 20;
    let setup = Setup::new(runtime, binary, Defaults::Now(None), CHECKS as u16)?;
    setup.hand_out(runtime, CHECKS, CHECKS as u16)?;
    let Setup {
        server,
        proxy,
        client,
        ..
    } = &setup;
    let server_pid = server.pid().to_string();
    let (bytes, client_cpu, server_cpu) = (proxy.bytes(), cpu_ms("self"), cpu_ms(&server_pid));
    let report = runtime.block_on(client.check_offers(WAIT))?;
    if report.verified as usize != CHECKS {
        return Err(format!("checks not all verified: {report:?}").into());
    }
    settle(proxy);
    let spent = proxy.bytes() - bytes;
    let per_check = |before: Option<f64>, after: Option<f64>| {
        Some(((after? - before?) / CHECKS as f64 * 100.0).round() / 100.0)
    };
    client.stop();
    Ok(json!({
        "sent_bytes": spent.sent / CHECKS as u64,
        "received_bytes": spent.received / CHECKS as u64,
        "client_cpu_ms": per_check(client_cpu, cpu_ms("self")),
        "server_cpu_ms": per_check(server_cpu, cpu_ms(&server_pid)),
    }))
}

fn kib(bytes: f64) -> f64 {
    (bytes / 1024.0 * 10.0).round() / 10.0
}

fn mib(bytes: f64) -> f64 {
    (bytes / (1024.0 * 1024.0) * 100.0).round() / 100.0
}
