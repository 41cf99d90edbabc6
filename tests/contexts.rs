//! Per-context offers: `offer_for(label)` keeps one offer per label, across restarts, never
//! shares one between labels or with `take_offer`, and labels never reach the server.

mod common;

use std::collections::HashSet;

use common::*;

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_label_keeps_one_offer_across_restarts_and_the_server_never_sees_labels() {
    let server_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let server = start_server(server_dir.path()).await;
    let mut config = config_for(&server, b"wallet-contexts", client_dir.path());
    config.ready_offer_target = 4;
    let client = client(config.clone());
    client.start().unwrap();
    client.wait_for_ready_offers(4, WAIT).await.unwrap();

    let alice = client.offer_for("alice@example.com").unwrap();
    assert_eq!(client.offer_for("alice@example.com").unwrap(), alice);
    let bob = client.offer_for("bob's shop").unwrap();
    let taken = [
        client.take_offer(None).unwrap(),
        client.take_offer(None).unwrap(),
    ];
    let mut ids: Vec<&str> = [&alice, &bob, &taken[0], &taken[1]]
        .iter()
        .map(|o| o.offer_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four different offers");
    assert_eq!(client.offer_for("alice@example.com").unwrap(), alice);
    client.wait_for_ready_offers(4, WAIT).await.unwrap();
    client.stop();
    drop(client);

    // A restarted client, never started: the same answers, from disk.
    let restarted = common::client(config);
    assert_eq!(restarted.offer_for("alice@example.com").unwrap(), alice);
    assert_eq!(restarted.offer_for("bob's shop").unwrap(), bob);
    let carol = restarted.offer_for("carol").unwrap();
    assert!(!ids.contains(&carol.offer_id.as_str()), "a fresh offer");
    let handed_out: HashSet<String> = restarted
        .offers()
        .into_iter()
        .filter(|o| o.label.is_some())
        .map(|o| o.offer_id)
        .collect();
    assert_eq!(handed_out.len(), 3, "alice, bob and carol");
    assert_payable(&server, &[alice, bob, carol]).await;

    for file in files_under(server_dir.path()) {
        for label in ["alice", "bob's shop", "carol"] {
            let found = file.windows(label.len()).any(|w| w == label.as_bytes());
            assert!(!found, "the server holds the label {label:?}");
        }
    }
}
