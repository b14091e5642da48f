//! A recording TCP proxy: a server started behind it is known to other servers by the proxy's
//! address, so every byte of federation traffic to it passes through here and is kept, for tests
//! that check what crossed the wire (plain HTTP on loopback).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The proxy: its listening address and what it has seen, both directions.
pub struct RecordingProxy {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    /// Listens on a fresh loopback port; connections are forwarded once [`Self::forward_to`] runs.
    pub async fn bind() -> (Self, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        (Self { address, seen: Arc::default() }, listener)
    }

    /// The proxy's address (the proxied server's name).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Forwards every connection `listener` accepts to `target`, recording both directions.
    pub fn forward_to(&self, listener: TcpListener, target: SocketAddr) {
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (inbound_read, inbound_write) = inbound.into_split();
                    let (outbound_read, outbound_write) = outbound.into_split();
                    tokio::join!(
                        pipe(inbound_read, outbound_write, seen.clone()),
                        pipe(outbound_read, inbound_write, seen),
                    );
                });
            }
        });
    }

    /// Everything that passed through so far.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().map(|seen| seen.clone()).unwrap_or_default()
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Ok(mut seen) = seen.lock() {
            seen.extend_from_slice(&buffer[..read]);
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
