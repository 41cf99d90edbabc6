//! Crash soak: the `async-offers` command line filling and handing out offers against the
//! reference server, SIGKILLed at random moments (while filling, right after handing out an
//! offer, or not at all) and restarted on the same data dir. Every fifth round two command
//! lines contend for the dir at once (one waits for the other's lock, either may be killed);
//! every fifth, offset by two, one runs with its wall clock 400 days ahead (every handed-out
//! offer looks expired) or a day behind. After every round the data dir is opened again,
//! offline, and checked:
//!
//! - it loads (no record left corrupt by a kill);
//! - the server serves each Ready or handed-out offer's own invoice (a payer fetches it over
//!   the offer's paths): no slot of a live offer was given to another offer;
//! - every offer ever handed out is still there, Used, with its label (none expire here);
//! - no offer is handed out twice, and none handed out is Ready again.
//!
//! At the end a last run must fill every slot, and a payer must get from the server the
//! static invoice of every Ready or Used offer (the server's invoices agree with the cache).
//! Prints one JSON line; exits 1 on any violation.
//!
//! `scripts/crash-soak.sh --iterations N [--seed S]`

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[allow(dead_code)] // Shared with the bench, which uses more of it.
#[path = "../benches/support/server_process.rs"]
mod server_process;

use async_offers::{AsyncOffersClient, Config, OfferInfo, OfferState};
use async_offers_server::{check_invoice_for_offer, Payer};
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;
use serde_json::{json, Value};
use server_process::ServerProcess;

const SEED: [u8; 32] = [0x42; 32];
const OFFERS: u16 = 6;
/// Longest a round may take before it counts as hung.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

type Failure = Box<dyn std::error::Error>;

fn main() {
    let mut iterations = 200usize;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |now| now.as_nanos() as u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || {
            args.next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| usage())
        };
        match arg.as_str() {
            "--iterations" => iterations = number() as usize,
            "--seed" => seed = number(),
            _ => usage(),
        }
    }
    match Soak::run(iterations, seed) {
        Ok(summary) => {
            println!("{summary}");
            let clean = ["violations", "lost_offers", "duplicate_handouts"]
                .iter()
                .all(|field| summary[field] == 0);
            std::process::exit(if clean { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("crash soak failed to run: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: crash_soak [--iterations N] [--seed S]");
    std::process::exit(2);
}

/// xorshift64*: reproducible kill moments from `--seed`.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// One run of the command line in a round.
#[derive(Clone, Copy, Debug)]
struct Run {
    kill: Kill,
    /// How many offers it hands out.
    take: u64,
    /// How far its wall clock is off, in seconds.
    wall_clock_offset: i64,
    timeout: Duration,
    /// Whether it may fail without being killed (no offer can be filled with the clock so
    /// far ahead that every server's paths look too short-lived).
    may_fail: bool,
}

/// 400 days: offers of LDK's servers, valid a year, look expired.
const FAR_AHEAD: i64 = 400 * 24 * 3600;
const A_DAY_BEHIND: i64 = -24 * 3600;

/// When a round's command line is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// After this long: in the middle of connecting, filling or handing out.
    After(Duration),
    /// The moment it prints the first offer it handed out.
    AfterFirstHandout,
    /// Not at all: the round completes.
    Never,
}

/// A binary of this workspace, built next to this example.
fn binary(name: &str) -> Result<PathBuf, Failure> {
    let path = server_process::sibling_binary(name)?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not built (scripts/crash-soak.sh builds it)",
            path.display()
        )
        .into())
    }
}

/// An offer the command line handed out.
struct HandedOut {
    offer: String,
    label: Option<String>,
    round: usize,
}

struct Soak {
    cli: PathBuf,
    server: ServerProcess,
    wallet_dir: tempfile::TempDir,
    random: Random,
    /// Every offer handed out so far, by offer id.
    handed_out: HashMap<String, HandedOut>,
    violations: Vec<String>,
    lost_offers: usize,
    duplicate_handouts: usize,
    kills: usize,
    contended_rounds: usize,
    clock_moved_rounds: usize,
}

impl Soak {
    fn run(iterations: usize, seed: u64) -> Result<Value, Failure> {
        let mut soak = Soak {
            cli: binary("async-offers")?,
            server: ServerProcess::spawn(&binary("async-offers-server")?, "soak", &[])?,
            wallet_dir: tempfile::tempdir()?,
            random: Random(seed | 1),
            handed_out: HashMap::new(),
            violations: Vec::new(),
            lost_offers: 0,
            duplicate_handouts: 0,
            kills: 0,
            contended_rounds: 0,
            clock_moved_rounds: 0,
        };
        // How long a whole round takes here (debug builds are slower), to spread kills over.
        let started = Instant::now();
        let first = soak.run_of(Kill::Never, 0);
        soak.round(0, &[first])?;
        let round_time = started.elapsed();
        for round in 1..=iterations {
            let mut kill = || match soak.random.below(10) {
                0..=5 => Kill::After(Duration::from_micros(
                    soak.random.below(round_time.as_micros() as u64 * 3 / 2),
                )),
                6..=8 => Kill::AfterFirstHandout,
                _ => Kill::Never,
            };
            let (first, second) = (kill(), kill());
            let runs = match round % 5 {
                0 => {
                    soak.contended_rounds += 1;
                    vec![soak.run_of(first, 0), soak.run_of(second, 0)]
                }
                2 => {
                    soak.clock_moved_rounds += 1;
                    match soak.random.below(2) {
                        0 => vec![Run {
                            take: 0,
                            timeout: Duration::from_secs(2),
                            may_fail: true,
                            ..soak.run_of(Kill::Never, FAR_AHEAD)
                        }],
                        _ => vec![soak.run_of(first, A_DAY_BEHIND)],
                    }
                }
                _ => vec![soak.run_of(first, 0)],
            };
            soak.round(round, &runs)?;
        }
        soak.final_checks(iterations + 1)?;
        for violation in &soak.violations {
            eprintln!("violation: {violation}");
        }
        Ok(json!({
            "iterations": iterations,
            "seed": seed,
            "violations": soak.violations.len(),
            "lost_offers": soak.lost_offers,
            "duplicate_handouts": soak.duplicate_handouts,
            "kills": soak.kills,
            "handed_out": soak.handed_out.len(),
            "contended_rounds": soak.contended_rounds,
            "clock_moved_rounds": soak.clock_moved_rounds,
        }))
    }

    /// A run handing out one to three offers with its wall clock `wall_clock_offset` off.
    fn run_of(&mut self, kill: Kill, wall_clock_offset: i64) -> Run {
        Run {
            kill,
            take: 1 + self.random.below(3),
            wall_clock_offset,
            timeout: ROUND_TIMEOUT,
            may_fail: false,
        }
    }

    /// The runs of a round at once, each killed as it says, then the data dir checked.
    fn round(&mut self, round: usize, runs: &[Run]) -> Result<(), Failure> {
        let (lines_tx, lines) = mpsc::channel::<(usize, Option<String>)>();
        let mut children = Vec::with_capacity(runs.len());
        let mut readers = Vec::with_capacity(runs.len());
        for (index, run) in runs.iter().enumerate() {
            let label = format!("round{round}-{index}");
            let mut child = self.cli_command(OFFERS, run, &label)?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let lines_tx = lines_tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if lines_tx.send((index, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = lines_tx.send((index, None));
            }));
            children.push((child, false));
        }
        drop(lines_tx);
        let started = Instant::now();
        let deadline = started + ROUND_TIMEOUT;
        let mut open = runs.len();
        while open > 0 {
            for ((child, killed), run) in children.iter_mut().zip(runs) {
                if let Kill::After(delay) = run.kill {
                    if !*killed && started.elapsed() >= delay {
                        *killed = child.kill().is_ok();
                    }
                }
            }
            match lines.recv_timeout(Duration::from_micros(200)) {
                Ok((_, None)) => open -= 1,
                Ok((index, Some(line))) => {
                    let printed_handout = self.record_line(&line, round);
                    let (child, killed) = &mut children[index];
                    if printed_handout
                        && matches!(runs[index].kill, Kill::AfterFirstHandout)
                        && !*killed
                    {
                        *killed = child.kill().is_ok();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() > deadline {
                        for (child, _) in &mut children {
                            let _ = child.kill();
                        }
                        self.violations
                            .push(format!("round {round}: the command line hung"));
                        break;
                    }
                }
            }
        }
        for ((mut child, killed), run) in children.into_iter().zip(runs) {
            let status = child.wait()?;
            if killed {
                self.kills += 1;
            } else if !status.success() && !run.may_fail {
                self.violations.push(format!(
                    "round {round}: exited with {status} without being killed"
                ));
            }
        }
        for reader in readers {
            let _ = reader.join();
        }
        self.check_data_dir(round);
        Ok(())
    }

    fn cli_command(&self, offers: u16, run: &Run, label: &str) -> Result<Child, Failure> {
        let server = &self.server.config;
        Ok(Command::new(&self.cli)
            .args(["--server-node-id", &server.node_id.to_string()])
            .args(["--server-address", &server.address])
            .args(["--server-paths", &self.server.paths_hex])
            .args(["--seed-hex", &"42".repeat(32)])
            .arg("--data-dir")
            .arg(self.wallet_dir.path())
            .args(["--offers", &offers.to_string()])
            .args(["--take", &run.take.to_string(), "--label", label])
            .args(["--timeout-secs", &run.timeout.as_secs().to_string()])
            // A contending run waits for the other's lock, within the round's time.
            .args(["--lock-wait-secs", &ROUND_TIMEOUT.as_secs().to_string()])
            .args([
                "--wall-clock-offset-secs",
                &run.wall_clock_offset.to_string(),
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?)
    }

    /// Records a handout the command line printed; true if the line was one.
    fn record_line(&mut self, line: &str, round: usize) -> bool {
        let Ok(printed) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        // One line per handout; the closing summary lists them again as an array.
        let Some(taken) = printed.get("taken").filter(|taken| taken.is_object()) else {
            return false;
        };
        let offer_id = taken["offer_id"].as_str().unwrap_or_default().to_string();
        let handout = HandedOut {
            offer: taken["offer"].as_str().unwrap_or_default().to_string(),
            label: taken["label"].as_str().map(str::to_string),
            round,
        };
        if let Some(earlier) = self.handed_out.get(&offer_id) {
            self.duplicate_handouts += 1;
            self.violations.push(format!(
                "round {round}: offer {offer_id} handed out again (first in round {})",
                earlier.round
            ));
        } else {
            self.handed_out.insert(offer_id, handout);
        }
        true
    }

    /// The wallet's offers as a restarted app sees them, before any network.
    fn cached_offers(&self) -> Result<Vec<OfferInfo>, String> {
        let mut config = Config::new(
            Network::Regtest,
            self.wallet_dir.path(),
            self.server.config.clone(),
        );
        config.ready_offer_target = OFFERS;
        AsyncOffersClient::new(config, SEED)
            .map(|client| client.offers())
            .map_err(|e| e.to_string())
    }

    fn check_data_dir(&mut self, round: usize) {
        let offers = match self.cached_offers() {
            Ok(offers) => offers,
            Err(e) => {
                self.violations
                    .push(format!("round {round}: the data dir does not load: {e}"));
                return;
            }
        };
        if let Err(e) = self.check_served(round, &offers) {
            self.violations
                .push(format!("round {round}: the server could not be asked: {e}"));
        }
        let by_id: HashMap<&str, &OfferInfo> =
            offers.iter().map(|o| (o.offer_id.as_str(), o)).collect();
        for (id, handout) in &self.handed_out {
            match by_id.get(id.as_str()) {
                None => {
                    self.lost_offers += 1;
                    self.violations.push(format!(
                        "round {round}: offer {id} (round {}) is gone",
                        handout.round
                    ));
                }
                Some(kept) if kept.state != OfferState::Used || kept.label != handout.label => {
                    self.violations.push(format!(
                        "round {round}: offer {id} is {:?} with label {:?}, handed out as {:?}",
                        kept.state, kept.label, handout.label
                    ));
                }
                Some(_) => {}
            }
        }
        // A lost offer is counted once, in the round it went missing.
        self.handed_out
            .retain(|id, _| by_id.contains_key(id.as_str()));
    }

    /// A payer gets from the server, over each Ready or handed-out offer's own paths, the
    /// static invoice in its slot, which must be that offer's: a slot given to another offer
    /// (reused while its offer lives, or filled twice) shows here.
    fn check_served(&mut self, round: usize, offers: &[OfferInfo]) -> Result<(), Failure> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let server = &self.server.config;
        let payer = runtime.block_on(Payer::connect(
            server.node_id,
            &server.address,
            Network::Regtest,
        ))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        for info in offers.iter().filter(|o| o.state != OfferState::Pending) {
            let offer: Offer = match info.offer.parse() {
                Ok(offer) => offer,
                Err(e) => {
                    self.violations
                        .push(format!("offer {} does not parse: {e:?}", info.offer_id));
                    continue;
                }
            };
            let served = runtime
                .block_on(payer.fetch_static_invoice(&offer, Duration::from_secs(10)))
                .and_then(|fetched| check_invoice_for_offer(&offer, &fetched.invoice, now));
            if let Err(e) = served {
                self.violations.push(format!(
                    "round {round}: {:?} offer {} in slot {}: the server does not serve its invoice: {e}",
                    info.state, info.offer_id, info.slot
                ));
            }
        }
        Ok(())
    }

    /// After the last kill: a run that must fill every slot, then the server's invoices
    /// checked as after every round.
    fn final_checks(&mut self, round: usize) -> Result<(), Failure> {
        let last = Run {
            take: 0,
            ..self.run_of(Kill::Never, 0)
        };
        let status = self.cli_command(OFFERS, &last, "final")?.wait()?;
        if !status.success() {
            self.violations
                .push(format!("round {round}: the last fill failed ({status})"));
        }
        self.check_data_dir(round);
        let soak = self;
        let offers = soak.cached_offers().unwrap_or_default();
        let ready = offers
            .iter()
            .filter(|o| o.state == OfferState::Ready)
            .count();
        if ready < OFFERS as usize {
            soak.violations.push(format!(
                "only {ready} of {OFFERS} slots Ready after the last fill"
            ));
        }
        // What the command line printed matches what the wallet keeps.
        for (id, handout) in &soak.handed_out {
            if let Some(kept) = offers.iter().find(|o| &o.offer_id == id) {
                if kept.offer != handout.offer {
                    soak.violations
                        .push(format!("offer {id}: printed and kept offers differ"));
                }
            }
        }
        Ok(())
    }
}
