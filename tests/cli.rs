//! The `async-offers` command line against the reference server run as its own process, and a
//! payer fetching the static invoice of every offer the command printed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_offers::WalletSeed;
use async_offers_server::{check_invoice_for_offer, Payer};
use lightning::bitcoin::hex::FromHex;
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::bitcoin::Network;
use lightning::offers::offer::Offer;
use serde_json::Value;

/// What the server prints for a recipient, and what the command line takes.
#[derive(Clone)]
struct Recipient {
    node_id: String,
    address: String,
    paths: String,
}

/// A server process, killed when dropped.
struct ServerProcess {
    child: Child,
    recipient: Recipient,
}

impl ServerProcess {
    fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// A server started with `options` besides the usual ones.
    fn start_with(data_dir: &Path, options: &[&str]) -> Self {
        let mut child = Command::new(server_binary())
            .args(["--listen", "127.0.0.1:0", "--recipient", "cli-wallet"])
            .args(options)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let json: Value = serde_json::from_str(&line).expect("server prints its JSON line");
        let field = |name: &str| json[name].as_str().unwrap().to_string();
        Self {
            recipient: Recipient {
                node_id: field("node_id"),
                address: field("address"),
                paths: field("paths"),
            },
            child,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary next to this package's own: `cargo test --workspace` builds it (the
/// server crate has integration tests); otherwise it is built here.
fn server_binary() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_async-offers")).with_file_name(format!(
        "async-offers-server{}",
        std::env::consts::EXE_SUFFIX
    ));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "async-offers-server",
                "--bin",
                "async-offers-server",
            ])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the server binary failed");
    }
    binary
}

/// Runs the command line wanting `offers`; returns its exit code and parsed JSON output.
fn run_cli(
    server: &Recipient,
    data_dir: &Path,
    offers: u16,
    timeout_secs: u32,
) -> (Option<i32>, Value) {
    run_cli_with(&[server], data_dir, offers, timeout_secs)
}

fn run_cli_with(
    servers: &[&Recipient],
    data_dir: &Path,
    offers: u16,
    timeout_secs: u32,
) -> (Option<i32>, Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_async-offers"));
    for server in servers {
        command
            .args(["--server-node-id", &server.node_id])
            .args(["--server-address", &server.address])
            .args(["--server-paths", &server.paths]);
    }
    let output = command
        .args(["--seed-hex", &"42".repeat(32)])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--network", "regtest", "--json"])
        .args(["--timeout-secs", &timeout_secs.to_string()])
        .args(["--offers", &offers.to_string()])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), json)
}

fn offer_ids(json: &Value) -> Vec<String> {
    let mut ids: Vec<String> = json["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_from_a_separate_server_and_every_printed_offer_is_payable() {
    let server_dir = tempfile::tempdir().unwrap();
    let wallet_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(server_dir.path());

    let (code, json) = run_cli(&server.recipient, wallet_dir.path(), 5, 30);
    assert_eq!(code, Some(0), "{json}");
    let offers = json["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 5);
    assert!(offers.iter().all(|o| o["state"] == "Ready"));
    assert!(json["time_to_all_ready_ms"].as_f64().unwrap() > 0.0);

    let server_node_id: PublicKey = server.recipient.node_id.parse().unwrap();
    let payer = Payer::connect(server_node_id, &server.recipient.address, Network::Regtest)
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    for printed in offers {
        let offer: Offer = printed["offer"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            offer.id().to_string(),
            printed["offer_id"].as_str().unwrap()
        );
        let fetched = payer
            .fetch_static_invoice(&offer, Duration::from_secs(10))
            .await
            .unwrap();
        check_invoice_for_offer(&offer, &fetched.invoice, now).unwrap();
    }
    drop(payer);

    // Server gone: the cached offers are enough, so no network is needed.
    let gone = server.recipient.clone();
    drop(server);
    let (code, cached) = run_cli(&gone, wallet_dir.path(), 5, 30);
    assert_eq!(code, Some(0), "{cached}");
    assert_eq!(cached["from_cache"], 5);
    assert_eq!(offer_ids(&cached), offer_ids(&json));
    let (code, _) = run_cli(&gone, wallet_dir.path(), 6, 1);
    assert_eq!(
        code,
        Some(1),
        "more offers than cached cannot be had offline"
    );

    // Back (same identity, new port): only the missing offers are filled.
    let server = ServerProcess::start(server_dir.path());
    assert_eq!(server.recipient.node_id, gone.node_id);
    let restarted = Recipient {
        address: server.recipient.address.clone(),
        ..gone
    };
    let (code, more) = run_cli(&restarted, wallet_dir.path(), 7, 30);
    assert_eq!(code, Some(0), "{more}");
    assert_eq!(more["from_cache"], 5);
    let all = offer_ids(&more);
    assert_eq!(all.len(), 7);
    assert!(offer_ids(&json).iter().all(|id| all.contains(id)));
}

#[test]
fn fills_from_two_servers_each_with_its_share() {
    let (a_dir, b_dir, wallet_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b) = (
        ServerProcess::start(a_dir.path()),
        ServerProcess::start(b_dir.path()),
    );
    let (code, json) = run_cli_with(&[&a.recipient, &b.recipient], wallet_dir.path(), 4, 30);
    assert_eq!(code, Some(0), "{json}");
    let mut servers: Vec<&str> = json["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["server_node_id"].as_str().unwrap())
        .collect();
    servers.sort();
    let mut expected = vec![a.recipient.node_id.as_str(); 2];
    expected.extend([b.recipient.node_id.as_str(); 2]);
    expected.sort();
    assert_eq!(servers, expected);

    let missing_address = Command::new(env!("CARGO_BIN_EXE_async-offers"))
        .args(["--server-node-id", &a.recipient.node_id])
        .args(["--server-node-id", &b.recipient.node_id])
        .args(["--server-address", &a.recipient.address])
        .args(["--server-paths", &a.recipient.paths])
        .args(["--server-paths", &b.recipient.paths])
        .args(["--seed-hex", &"42".repeat(32), "--data-dir"])
        .arg(wallet_dir.path())
        .output()
        .unwrap();
    assert_eq!(missing_address.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_address.stderr).contains("each server needs"));
}

/// A wait that runs out says why: here, the server's offer paths last a day, and the client
/// wants 90.
#[test]
fn a_fill_that_times_out_names_the_servers_last_refusal() {
    let server_dir = tempfile::tempdir().unwrap();
    let wallet_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(server_dir.path(), &["--offer-paths-days", "1"]);
    let output = Command::new(env!("CARGO_BIN_EXE_async-offers"))
        .args(["--server-node-id", &server.recipient.node_id])
        .args(["--server-address", &server.recipient.address])
        .args(["--server-paths", &server.recipient.paths])
        .args(["--seed-hex", &"43".repeat(32)])
        .arg("--data-dir")
        .arg(wallet_dir.path())
        .args([
            "--network",
            "regtest",
            "--timeout-secs",
            "3",
            "--offers",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(stderr.contains(&server.recipient.node_id), "{stderr}");
    assert!(
        stderr.contains("ExpiresTooSoon: the offer paths expire in 23 hours")
            || stderr.contains("ExpiresTooSoon: the offer paths expire in 1 day"),
        "{stderr}"
    );
    assert!(
        stderr.contains("90 days min_offer_paths_lifetime"),
        "{stderr}"
    );
}

/// An ldk-node wallet gives its mnemonic or its 64 seed bytes, as arguments, on standard input
/// (`-`, kept out of `ps` and the shell's history) or as its seed file: the command line fills
/// for the node they make, and says which in `node_id`. One seed form at a time.
#[test]
fn an_ldk_node_wallets_mnemonic_or_seed_bytes_fill_for_its_node() {
    let (server_dir, words_dir, bytes_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let server = ServerProcess::start(server_dir.path());
    let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let seed_bytes = "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04";
    let run_with_input = |seed_args: &[&str], dir: &Path, input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_async-offers"))
            .args(["--server-node-id", &server.recipient.node_id])
            .args(["--server-address", &server.recipient.address])
            .args(["--server-paths", &server.recipient.paths])
            .args(seed_args)
            .arg("--data-dir")
            .arg(dir)
            .args(["--offers", "1", "--timeout-secs", "30", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (
            output.status.code(),
            json,
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let run = |seed_args: &[&str], dir: &Path| run_with_input(seed_args, dir, "");
    let expected = async_offers::keys::WalletKeys::from_seed(
        &WalletSeed::from_ldk_node_mnemonic(words, Some("TREZOR"))
            .unwrap()
            .keys_manager_seed(),
    )
    .wallet_node_id()
    .to_string();
    let (code, json, _) = run(
        &[
            "--ldk-node-mnemonic",
            words,
            "--ldk-node-passphrase",
            "TREZOR",
        ],
        words_dir.path(),
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["node_id"], expected.as_str());
    let (code, json, _) = run(&["--ldk-node-seed-hex", seed_bytes], bytes_dir.path());
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        json["node_id"],
        expected.as_str(),
        "the same node either way"
    );
    // The same secrets kept off the command line.
    let (code, json, _) = run_with_input(
        &["--ldk-node-mnemonic", "-", "--ldk-node-passphrase", "-"],
        words_dir.path(),
        &format!("{words}\nTREZOR\n"),
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["node_id"], expected.as_str(), "from standard input");
    let seed_file = bytes_dir.path().join("keys_seed");
    std::fs::write(&seed_file, Vec::<u8>::from_hex(seed_bytes).unwrap()).unwrap();
    let (code, json, _) = run(
        &["--ldk-node-seed-file", seed_file.to_str().unwrap()],
        bytes_dir.path(),
    );
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["node_id"], expected.as_str(), "from the seed file");
    let (code, _, stderr) = run(&["--seed-hex", "-"], bytes_dir.path());
    assert_eq!(code, Some(2));
    assert!(stderr.contains("standard input ended"), "{stderr}");

    let (code, _, stderr) = run(
        &[
            "--ldk-node-seed-hex",
            seed_bytes,
            "--seed-hex",
            &"42".repeat(32),
        ],
        bytes_dir.path(),
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("only one of"), "{stderr}");
}

/// The command line's `command` on `server` and `data_dir`, with `args`; its exit code, what
/// it printed (lines) and its stderr.
fn run_command(
    command: &str,
    server: &Recipient,
    data_dir: &Path,
    args: &[&str],
) -> (Option<i32>, Vec<Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_async-offers"))
        .arg(command)
        .args(args)
        .args(["--server-node-id", &server.node_id])
        .args(["--server-address", &server.address])
        .args(["--server-paths", &server.paths])
        .args(["--seed-hex", &"42".repeat(32)])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--network", "regtest", "--json", "--offers", "2"])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (
        output.status.code(),
        lines,
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Each command of the command line: `sync` fills and prints its report, `take` hands out,
/// `list` shows it handed out, `check` verifies it as a payer sees it, `export` then `import` into a new data dir keeps it handed out
/// there, `events` shows the expiry notice kept across runs and `--ack` handles it, `status`
/// names a server that is down, and `COMMAND --help` says what each does.
#[test]
fn every_command_does_what_its_help_says() {
    let (server_dir, dir, restored) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let server = ServerProcess::start(server_dir.path());
    let recipient = server.recipient.clone();
    let r = &recipient;

    let (code, report, stderr) = run_command("sync", r, dir.path(), &["--timeout-secs", "30"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report[0]["complete"], true);
    assert_eq!(report[0]["ready_offers"], 2);

    let (code, taken, stderr) = run_command("take", r, dir.path(), &["--label", "shop"]);
    assert_eq!(code, Some(0), "{stderr}");
    let taken = &taken[0]["taken"];
    assert_eq!(taken["label"], "shop");
    let (_, listed, _) = run_command("list", r, dir.path(), &[]);
    let listed = listed[0]["offers"].as_array().unwrap().clone();
    let shop = listed.iter().find(|o| o["offer_id"] == taken["offer_id"]);
    assert_eq!(shop.unwrap()["state"], "Used", "{listed:?}");
    let (code, checked, stderr) = run_command("check", r, dir.path(), &["--timeout-secs", "30"]);
    assert_eq!(code, Some(0), "{stderr}");
    let checked = &checked[0];
    assert_eq!(
        (&checked["checked"], &checked["verified"]),
        (&1.into(), &1.into()),
        "{checked}"
    );
    assert!(checked["offers"][0]["verified_at"].is_u64(), "{checked}");

    let book = dir.path().join("offers.book");
    let (code, exported, stderr) = run_command("export", r, dir.path(), &[book.to_str().unwrap()]);
    assert_eq!(
        (code, exported[0]["exported"].as_u64()),
        (Some(0), Some(1)),
        "{stderr}"
    );
    let (code, imported, stderr) =
        run_command("import", r, restored.path(), &[book.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(imported[0]["imported"], 1);
    let (_, listed, _) = run_command("list", r, restored.path(), &[]);
    let restored_offers = listed[0]["offers"].as_array().unwrap().clone();
    assert!(
        restored_offers
            .iter()
            .any(|o| o["offer_id"] == taken["offer_id"] && o["state"] == "Used"),
        "handed out in the new data dir too: {restored_offers:?}"
    );

    // Run an hour past the handed-out offer's expiry: the app is told, and the notice is kept
    // across runs until handled.
    let expires_at = shop.unwrap()["expires_at"].as_u64().expect("offers expire");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let offset = (expires_at + 3600 - now).to_string();
    let later = [
        "--timeout-secs",
        "5",
        "--wall-clock-offset-secs",
        offset.as_str(),
    ];
    let _ = run_command("sync", r, dir.path(), &later);
    let (code, waiting, stderr) = run_command("events", r, dir.path(), &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        waiting
            .iter()
            .any(|queued| queued["event"]["kind"] == "OfferExpired"
                && queued["event"]["offer_id"] == taken["offer_id"]),
        "{waiting:?}"
    );
    let (_, again, _) = run_command("events", r, dir.path(), &[]);
    assert_eq!(again, waiting, "listing handles nothing");
    let (code, acked, _) = run_command("events", r, dir.path(), &["--ack"]);
    assert_eq!((code, acked), (Some(0), waiting));
    let (_, after, _) = run_command("events", r, dir.path(), &[]);
    assert!(after.is_empty(), "handled with --ack: {after:?}");

    let (code, status, _) = run_command("status", r, dir.path(), &["--timeout-secs", "10"]);
    assert_eq!(code, Some(0));
    assert_eq!(status[0]["servers"][0]["connected"], true);
    drop(server);
    let (code, status, _) = run_command("status", r, dir.path(), &["--timeout-secs", "3"]);
    assert_eq!(code, Some(1), "a server down is not connected");
    let down = &status[0]["servers"][0];
    assert_eq!(down["server_node_id"], r.node_id.as_str());
    assert!(
        down["last_problem"]
            .as_str()
            .is_some_and(|problem| problem.contains("cannot connect")),
        "{down}"
    );

    for command in [
        "fill", "take", "list", "status", "sync", "check", "export", "import", "events",
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_async-offers"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{command} --help");
        assert!(help.starts_with(command), "{command}: {help}");
    }
}
