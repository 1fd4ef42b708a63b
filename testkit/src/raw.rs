//! An upstream that writes its answers byte for byte, as scripted: for answers a
//! well-behaved HTTP server would never send (hop-by-hop headers of any kind, a `101` to
//! a POST, a body split at a chosen byte with a pause between the pieces). It reads each
//! request (head and `Content-Length` body), writes the script's pieces with their pauses,
//! and closes the connection. It runs on its own thread and runtime, on the same
//! `server` core as [`Upstream`].
//!
//! [`Upstream`]: crate::Upstream

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::server::{Runtime, Server};

/// The pieces of one answer: bytes to write, each followed by a pause.
pub type Script = Vec<(Vec<u8>, Duration)>;

/// The server; stops when dropped.
#[allow(missing_debug_implementations)] // holds the script closure
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
    _server: Server,
}

impl RawUpstream {
    /// A server answering each request with `script()`.
    pub fn start(script: impl Fn() -> Script + Send + Sync + 'static) -> Self {
        let count = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let seen = Arc::clone(&count);
        let server = Server::start(0, Runtime::Thread(0), move |stream| {
            answer(stream, Arc::clone(&script), Arc::clone(&seen))
        })
        .expect("start the raw upstream");
        Self {
            addr: server.addr,
            count,
            _server: server,
        }
    }

    /// `http://127.0.0.1:port/v1`.
    pub fn v1(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many requests it read.
    pub fn count(&self) -> usize {
        self.count.load(SeqCst)
    }
}

/// Reads one request, counts it, writes `script()`'s pieces with their pauses, and closes.
async fn answer<S: Fn() -> Script + Send + Sync + 'static>(
    mut stream: TcpStream,
    script: Arc<S>,
    seen: Arc<AtomicUsize>,
) {
    if read_request(&mut stream).await.is_none() {
        return;
    }
    seen.fetch_add(1, SeqCst);
    for (bytes, pause) in script() {
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let _ = stream.shutdown().await;
}

/// Reads a request head and its `Content-Length` body; `None` if the peer went away.
async fn read_request(stream: &mut TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}
