//! A TCP proxy between a client and its server that counts the bytes each way: what a phone's
//! data plan pays for, as the benchmark measures it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// A proxy on 127.0.0.1 forwarding every connection to one upstream address, counting.
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
                tokio::spawn(pipe(client_read, server_write, up.clone()));
                tokio::spawn(pipe(server_read, client_write, down.clone()));
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

/// Copies `from` to `to`, counting, until either end closes.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        count.fetch_add(read as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}
