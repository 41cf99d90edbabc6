//! A TCP proxy between a client and its server, to play the links phones have: it counts the
//! client's dials and the bytes it sends, can hold back the server's bytes on the first
//! connection until the client dials again (a handshake that completes late), and can close
//! every connection a while after accepting it (a server that drops the client).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats connections; any change closes the ones open.
#[derive(Clone, Default)]
struct Behaviour {
    /// Close each connection this long after accepting it.
    drop_after: Option<Duration>,
    /// Forward nothing of the server's on the first connection until a second is accepted,
    /// then hold the second's for 500 ms.
    hold_first_until_the_next_dial: bool,
    /// Until then, close each connection as it is accepted (not counted as a dial).
    refuse_until: Option<tokio::time::Instant>,
}

pub struct Proxy {
    /// Where the client dials.
    pub address: String,
    /// Connections accepted.
    pub dials: Arc<AtomicUsize>,
    /// Bytes the client sent through it.
    pub from_client: Arc<AtomicU64>,
    behaviour: watch::Sender<Behaviour>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 to `upstream`, forwarding everything as it comes.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let dials = Arc::new(AtomicUsize::new(0));
        let from_client = Arc::new(AtomicU64::new(0));
        let (behaviour, watching) = watch::channel(Behaviour::default());
        let upstream = upstream.to_string();
        let (counted, sent) = (dials.clone(), from_client.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let refusing = watching.borrow().refuse_until;
                if refusing.is_some_and(|until| tokio::time::Instant::now() < until) {
                    continue;
                }
                let dial = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let mut watching = watching.clone();
                let now = watching.borrow_and_update().clone();
                let (dials, sent) = (counted.clone(), sent.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                            sent.fetch_add(n as u64, Ordering::SeqCst);
                            if server_write.write_all(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        while now.hold_first_until_the_next_dial
                            && dial == 1
                            && dials.load(Ordering::SeqCst) < 2
                        {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        // The first's handshake, let through now, would complete before the
                        // second's.
                        if now.hold_first_until_the_next_dial && dial == 2 {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    };
                    let closed = async {
                        let dropped = async {
                            match now.drop_after {
                                Some(after) => tokio::time::sleep(after).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            _ = dropped => {},
                            _ = watching.changed() => {},
                        }
                    };
                    // The first to end closes both sides.
                    tokio::select! {
                        _ = up => {},
                        _ = down => {},
                        _ = closed => {},
                    }
                });
            }
        });
        Self {
            address,
            dials,
            from_client,
            behaviour,
        }
    }

    /// For `first`, each connection is closed as soon as it is accepted (a server still
    /// starting): the first one the proxy keeps begins that long after the client started.
    pub fn refuse_for(&self, first: Duration) {
        self.behaviour
            .send_modify(|b| b.refuse_until = Some(tokio::time::Instant::now() + first));
    }

    /// From now on each connection is closed `after` accepting it; those open now at once.
    pub fn drop_each_after(&self, after: Duration) {
        self.behaviour.send_modify(|b| b.drop_after = Some(after));
    }

    /// The server's bytes on the first connection wait until the client dials a second time;
    /// then the second connection's wait 500 ms, so that the first's handshake would complete
    /// first if the client left that connection open.
    pub fn hold_the_first_handshake_until_the_next_dial(&self) {
        self.behaviour
            .send_modify(|b| b.hold_first_until_the_next_dial = true);
    }

    pub fn dials(&self) -> usize {
        self.dials.load(Ordering::SeqCst)
    }

    pub fn bytes_from_client(&self) -> u64 {
        self.from_client.load(Ordering::SeqCst)
    }
}
