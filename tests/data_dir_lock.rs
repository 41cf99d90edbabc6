//! One writer per data dir: a second client, in this process or another, gets
//! `Error::DataDirInUse` while the first runs, and clients taking turns never hand out one offer
//! twice.

mod common;

use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use async_offers::{AsyncOffersClient, Config, Error, OfferState};
use common::*;
use lightning::bitcoin::hex::DisplayHex;
use lightning::util::ser::Writeable;
use serde_json::Value;

fn build(config: &Config, lock_wait: Duration) -> Result<AsyncOffersClient, Error> {
    builder(config.clone())
        .data_dir_lock_wait(lock_wait)
        .build()
}

/// The command line on `config`'s server and data dir, with `args`.
fn cli(config: &Config, args: &[&str]) -> Command {
    let server = &config.servers[0];
    let mut command = Command::new(env!("CARGO_BIN_EXE_async-offers"));
    command
        .args(["--server-node-id", &server.node_id.to_string()])
        .args(["--server-address", &server.address])
        .args([
            "--server-paths",
            &server.paths.encode().as_hex().to_string(),
        ])
        .args(["--seed-hex", &SEED.as_hex().to_string()])
        .arg("--data-dir")
        .arg(&config.data_dir)
        .args(["--network", "regtest", "--json", "--timeout-secs", "60"])
        .args(args);
    command
}

/// The offers a run of the command line printed as handed out, by id, with their labels.
fn handed_out(output: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|json| {
            let taken = json.get("taken")?.as_object()?.clone();
            Some((
                taken["offer_id"].as_str()?.to_string(),
                taken["label"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_in_this_process_is_refused_while_the_first_runs() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, first) = filled_client(&server, dir.path(), 3).await;

    let refused_at = Instant::now();
    assert!(matches!(
        build(&config, Duration::ZERO),
        Err(Error::DataDirInUse(_))
    ));
    assert!(refused_at.elapsed() < Duration::from_secs(1), "at once");

    // Stopped, the first lets go; both can live on the dir, taking turns.
    first.stop();
    let second = build(&config, Duration::ZERO).unwrap();
    let by_first = first.take_offer(Some("first".into())).unwrap();
    let by_second = second.take_offer(Some("second".into())).unwrap();
    assert_ne!(
        by_first.offer_id, by_second.offer_id,
        "the second loaded what the first handed out"
    );
    assert_eq!(
        second.offer_for("first").unwrap().offer_id,
        by_first.offer_id,
        "and knows its label"
    );

    // Running again, the first holds it: the second can neither hand out nor start.
    first.start().unwrap();
    assert!(matches!(
        second.take_offer(None),
        Err(Error::DataDirInUse(_))
    ));
    assert!(matches!(second.start(), Err(Error::DataDirInUse(_))));
    // With a wait, the second gets its turn once the first stops.
    let second_waits = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            let waiting = AsyncOffersClient::builder(config, SEED)
                .data_dir_lock_wait(WAIT)
                .build()
                .unwrap();
            waiting.take_offer(Some("after".into()))
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop();
    let after = second_waits.await.unwrap().unwrap();
    assert!(![&by_first.offer_id, &by_second.offer_id].contains(&&after.offer_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_another_process_is_refused_while_this_one_runs() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, running) = filled_client(&server, dir.path(), 3).await;

    let refused = tokio::task::spawn_blocking({
        let mut command = cli(&config, &["--offers", "3", "--take", "1"]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("data dir in use"), "{stderr}");
    assert!(handed_out(&refused).is_empty());

    running.stop();
    drop(running);
    let served = tokio::task::spawn_blocking({
        let mut command = cli(&config, &["--offers", "3", "--take", "1", "--label", "cli"]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        served.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert_eq!(handed_out(&served).len(), 1);
}

/// Two command lines on one filled dir, each handing out three offers, six times over: every
/// hand-out is a different offer, and each is on disk, Used, under its own label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_contending_never_hand_out_one_offer_twice() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, filler) = filled_client(&server, dir.path(), 6).await;
    filler.stop();
    drop(filler);

    let mut all = Vec::new();
    for round in 0..6 {
        let runs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|who| {
                let label = format!("{who}{round}");
                let args = [
                    "--offers",
                    "6",
                    "--take",
                    "3",
                    "--label",
                    &label,
                    "--lock-wait-secs",
                    "60",
                ];
                let mut command = cli(&config, &args);
                tokio::task::spawn_blocking(move || command.output().unwrap())
            })
            .collect();
        for run in runs {
            let output = run.await.unwrap();
            assert_eq!(
                output.status.code(),
                Some(0),
                "round {round}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let taken = handed_out(&output);
            assert_eq!(taken.len(), 3, "round {round}");
            all.extend(taken);
        }
    }
    let ids: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        all.len(),
        "an offer was handed out twice: {all:?}"
    );

    let after = build(&config, Duration::ZERO).unwrap();
    let on_disk = after.offers();
    for (id, label) in &all {
        let offer = on_disk
            .iter()
            .find(|o| &o.offer_id == id)
            .unwrap_or_else(|| panic!("handed-out offer {id} lost"));
        assert_eq!(offer.state, OfferState::Used);
        assert_eq!(offer.label.as_ref(), Some(label));
    }
    assert_payable(&server, &on_disk).await;
}

/// Building waits for the data dir off the caller's thread with `build_async`: on a runtime of
/// one thread, other tasks run on while a build waits for the lock.
#[test]
fn an_async_build_waiting_for_the_data_dir_blocks_no_task() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server_dir = tempfile::tempdir().unwrap();
        let server = start_server(server_dir.path()).await;
        let dir = tempfile::tempdir().unwrap();
        let (config, _first) = filled_client(&server, dir.path(), 1).await;
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        let waited = Instant::now();
        let refused = AsyncOffersClient::builder(config, SEED)
            .data_dir_lock_wait(Duration::from_secs(1))
            .build_async()
            .await;
        assert!(matches!(refused, Err(Error::DataDirInUse(_))));
        assert!(waited.elapsed() >= Duration::from_secs(1));
        let ticked = ticks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ticked >= 20,
            "the runtime's one thread was held: {ticked} ticks in a second"
        );
        ticker.abort();
    });
}

/// A build that fails once its own runtime exists (here: the data dir is held) lets that
/// runtime go without a panic, even called from async code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_inside_async_code_is_an_error_not_a_panic() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _first) = filled_client(&server, dir.path(), 1).await;
    let refused = AsyncOffersClient::builder(config, SEED).build();
    assert!(matches!(refused, Err(Error::DataDirInUse(_))));
}

/// A running client of a data dir, and another client of it whose `start`, on a thread of its
/// own, waits (up to `lock_wait`) for the first to let go.
async fn a_start_waiting_behind_a_running_client(
    lock_wait: Duration,
) -> (
    AsyncOffersClient,
    std::sync::Arc<AsyncOffersClient>,
    std::thread::JoinHandle<Result<(), Error>>,
    tempfile::TempDir,
    async_offers_server::RunningServer,
) {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&server, b"wallet", dir.path());
    let holder = build(&config, Duration::ZERO).unwrap();
    let waiting = std::sync::Arc::new(build(&config, lock_wait).unwrap());
    holder.start().unwrap();
    let start = {
        let waiting = waiting.clone();
        std::thread::spawn(move || waiting.start())
    };
    // The start is under way, waiting for the holder to let go.
    std::thread::sleep(Duration::from_millis(300));
    (holder, waiting, start, dir, server)
}

/// What `call` returns on a thread of its own within `within` (`None`: it did not return).
fn returns_within<T: Send + 'static>(
    within: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver.recv_timeout(within).ok()
}

/// `status()` answers while a `start` of the same client waits for the data dir's lock,
/// reporting the client as it was: an app's diagnostics screen never hangs on it. (It waited
/// on the start, up to the whole lock wait.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_a_start_waits_for_the_data_dirs_lock() {
    let (holder, waiting, start, _dir, _server) =
        a_start_waiting_behind_a_running_client(Duration::from_secs(5)).await;
    let status = {
        let waiting = waiting.clone();
        returns_within(Duration::from_secs(4), move || waiting.status())
            .expect("status() waited for the start")
    };
    assert!(
        !start.is_finished(),
        "answered while the start still waited"
    );
    assert!(!status.running);
    holder.stop();
    let _ = start.join().unwrap();
}

/// `stop()` while a `start` of the same client waits for the data dir's lock returns at once,
/// and the start gives up with `DataDirInUse` instead of waiting out its lock wait (the app
/// is going to the background: its start must not hold it there). `stop()` waited for the
/// start, up to the whole lock wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_start_that_waits_for_the_data_dirs_lock() {
    let (holder, waiting, start, _dir, _server) =
        a_start_waiting_behind_a_running_client(Duration::from_secs(10)).await;
    {
        let waiting = waiting.clone();
        returns_within(Duration::from_secs(5), move || waiting.stop())
            .expect("stop() waited for the start");
    }
    let started = start.join().unwrap();
    assert!(
        matches!(&started, Err(Error::DataDirInUse(why)) if why.contains("stopped")),
        "{started:?}"
    );
    assert!(!waiting.status().running);
    holder.stop();
}

/// A sync that `stop()` ended returns at once, though a `start()` of the same client then
/// waits for the data dir another client took meanwhile: that start never holds what the sync
/// looks at. (The sync waited out the start's whole lock wait.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_ended_by_stop_returns_while_a_start_waits_for_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    // A server nobody answers for: the sync has work left until its timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet", dir.path());
    config.servers[0].address = listener.local_addr().unwrap().to_string();
    let client = std::sync::Arc::new(build(&config, Duration::from_secs(10)).unwrap());
    let sync = {
        let client = client.clone();
        tokio::spawn(async move { client.sync(Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.stop();
    let other = build(&config, Duration::from_secs(10)).unwrap();
    other.start().unwrap();
    let start = {
        let client = client.clone();
        std::thread::spawn(move || client.start())
    };
    let report = tokio::time::timeout(Duration::from_secs(5), sync)
        .await
        .expect("the sync returned while the start waited")
        .unwrap()
        .unwrap();
    assert!(!report.complete);
    assert!(!start.is_finished(), "the start still waits");
    other.stop();
    start.join().unwrap().unwrap();
    client.stop();
}

/// An event kept in memory only is handled while another client holds the data dir: there is
/// no record to remove, so an app extension holding the dir holds up only the events whose
/// records must go. (It failed with `DataDirInUse`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kept_in_memory_is_handled_while_another_client_holds_the_data_dir() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, client) = filled_client(&server, dir.path(), 2).await;
    client.stop();
    let holder = build(&config, Duration::ZERO).unwrap();
    holder.start().unwrap();
    let first = client.next_event().expect("events of the fill");
    assert!(!first.event.asks_the_app_to_act(), "{first:?}");
    client.event_handled(first.id).unwrap();
    assert_ne!(client.next_event().map(|queued| queued.id), Some(first.id));
    holder.stop();
}
