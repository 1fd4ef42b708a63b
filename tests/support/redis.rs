//! A real `redis-server` for the tests: started on a free local port, with no persistence,
//! stopped (and restartable on the same port) by the test, killed when dropped.
//!
//! A missing `redis-server` is a test failure with a clear message, never a skip:
//! `scripts/test` installs it (Debian package `redis-server`).

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MISSING: &str = "redis-server is not installed (or not on PATH): the Redis tests need it \
     and do not skip. Install it (Debian/Ubuntu: `apt-get install redis-server`) or run \
     `scripts/test`, which installs it when missing.";

/// Whether `redis-server` can be run.
pub fn installed() -> Result<String, String> {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .map_err(|e| format!("{MISSING} ({e})"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running (or stopped) `redis-server` owned by one test.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a server that requires `password` (`requirepass`).
    pub async fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> Self {
        if let Err(e) = installed() {
            panic!("{e}");
        }
        // A port freed by the OS can be taken by someone else before the server binds it:
        // try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut s = Self {
                port,
                password: password.clone(),
                child: None,
            };
            match s.launch().await {
                Ok(()) => return s,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    async fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.spawn().map_err(|e| format!("{MISSING} ({e})"))?;
        // Ready once it answers PING (bounded: 5 s).
        for _ in 0..500 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if self.answers_ping().await {
                self.child = Some(child);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not answer PING within 5 s".to_owned())
    }

    async fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let ping = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            let mut req = String::new();
            if let Some(p) = &self.password {
                req.push_str(&format!("AUTH {p}\r\n"));
            }
            req.push_str("PING\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("PONG") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            Some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(200), ping).await,
            Ok(Some(()))
        )
    }

    /// `redis://127.0.0.1:port` (no password in it).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: nothing saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..50 {
            match self.launch().await {
                Ok(()) => return,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "could not restart redis-server on port {}: {last}",
            self.port
        );
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}
