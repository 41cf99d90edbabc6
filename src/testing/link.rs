//! A TCP proxy between a client and its server that counts the bytes each way (what a phone's
//! data plan pays for) and can delay them (a mobile link's latency), as the benchmarks measure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes through a [`CountingProxy`] so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    /// From the client to the server (the phone's upload).
    pub sent: u64,
    /// From the server to the client (the phone's download).
    pub received: u64,
}

impl std::ops::Sub for Bytes {
    type Output = Bytes;
    fn sub(self, before: Bytes) -> Bytes {
        Bytes {
            sent: self.sent - before.sent,
            received: self.received - before.received,
        }
    }
}

/// A proxy on 127.0.0.1 forwarding every connection to one upstream address, counting, and
/// delaying each way by a fixed latency if asked (bandwidth stays loopback's).
pub struct CountingProxy {
    /// Where the client dials.
    pub address: String,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Starts one to `upstream` on the current tokio runtime.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        Self::start_with_latency(upstream, Duration::ZERO).await
    }

    /// Starts one to `upstream` that hands on each byte `one_way` after it arrived, each way:
    /// a link with a round trip of twice `one_way`. Connections open at once (the TCP
    /// handshake is not delayed); everything after is.
    pub async fn start_with_latency(upstream: &str, one_way: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let upstream = upstream.to_string();
        let (up, down) = (sent.clone(), received.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, up.clone(), one_way));
                tokio::spawn(pipe(server_read, client_write, down.clone(), one_way));
            }
        });
        Ok(Self {
            address,
            sent,
            received,
            accepting,
        })
    }

    /// The bytes through it since it started.
    pub fn bytes(&self) -> Bytes {
        Bytes {
            sent: self.sent.load(Ordering::SeqCst),
            received: self.received.load(Ordering::SeqCst),
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies `from` to `to`, counting, each chunk `delay` after it was read, until either end
/// closes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
    delay: Duration,
) {
    // Read as it comes and write when due, so a delay holds back no later chunk's reading.
    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel::<(_, Vec<u8>)>();
    let writing = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let at = tokio::time::Instant::now() + delay;
        if chunks.send((at, buffer[..read].to_vec())).is_err() {
            break;
        }
        count.fetch_add(read as u64, Ordering::SeqCst);
    }
    drop(chunks);
    let _ = writing.await;
}
