//! The one server core of the fake upstreams: a listener on `127.0.0.1`, an accept loop
//! that hands each connection to a handler, and a stop that ends the loop and closes every
//! open connection. [`FakeLlm`](crate::FakeLlm) runs it on the caller's runtime;
//! [`Upstream`](crate::Upstream) and [`RawUpstream`](crate::RawUpstream) on a thread and
//! runtime of their own. The HTTP servers hand connections to [`serve_http`]; the raw one
//! writes its bytes itself.

use std::{future::Future, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpStream, sync::watch};

/// Where a server's accept loop and connections run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Runtime {
    /// On the runtime of the code that starts it (`tokio::spawn`).
    Caller,
    /// On a thread of its own with a runtime of its own: `0` workers is a current-thread
    /// runtime, more a multi-thread one. Then it shares neither the caller's clock (paused
    /// or not) nor its task count.
    Thread(usize),
}

/// A running server; stops (and, on its own thread, joins it) when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:port` (`0`: any free port) and serves each accepted connection
    /// (`TCP_NODELAY` set) with `conn(stream)` on `runtime`. With [`Runtime::Caller`] it
    /// must be called within a tokio runtime.
    pub(crate) fn start<F, Fut>(port: u16, runtime: Runtime, conn: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let serve = accept_loop(listener, stopped, conn);
        let thread = match runtime {
            Runtime::Caller => {
                tokio::spawn(serve);
                None
            }
            Runtime::Thread(workers) => {
                let mut builder = if workers == 0 {
                    tokio::runtime::Builder::new_current_thread()
                } else {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(workers);
                    b
                };
                let rt = builder.enable_all().build()?;
                Some(std::thread::spawn(move || {
                    rt.block_on(serve);
                    rt.shutdown_background();
                }))
            }
        };
        Ok(Self { addr, stop, thread })
    }

    /// Stops accepting and closes its open connections (idempotent).
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts until `stopped` changes; each connection runs until it ends or `stopped` changes.
async fn accept_loop<F, Fut>(
    listener: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
    conn: F,
) where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    let conn = Arc::new(conn);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let serving = conn(stream);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = serving => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

/// Serves HTTP/1.1 and h2c (upgrades allowed) on `stream` with `handle`, until the
/// connection ends.
pub(crate) async fn serve_http<H, Fut, B, E>(stream: TcpStream, handle: H)
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let svc = hyper::service::service_fn(handle);
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}
