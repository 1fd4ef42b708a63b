//! A connection pool for `http://` upstreams, on hyper's HTTP/1 client connections: the
//! [`HttpProber`](super::HttpProber)'s for plain-HTTP deployments (each probed deployment
//! keeps its upstream's pool with its prepared request), and `thr-gateway`'s forwarder's.
//! `https://` upstreams keep hyper-util's pooled client, which negotiates HTTP/2 and TLS.
//!
//! Each upstream authority (host and port) has one [`HostPool`], found once, when a
//! deployment's forward endpoint is resolved, and kept in the endpoint: a request takes
//! it without hashing a pool key (hyper-util's pool hashes its key, scheme and authority,
//! with SipHash a byte at a time, at each checkout and return). Its idle connections are a
//! LIFO stack (the most recently used connection first, whose upstream is least likely to
//! have closed it); a connection goes back to it when its response body has been read to
//! the end, and is dropped when it closes, when its response was not read to the end, or
//! after the pool's idle timeout ([`IDLE_TIMEOUT`] unless [`Pools::with_idle_timeout`]
//! says otherwise) unused. A request that meets a pooled connection closed before the
//! request was written is sent again on another one, as hyper-util's client does.

// A lock on the gateway's forwarding path (never the routing decision), allowed here: the
// idle stack's `Mutex` is held for one push or pop (never across an await), uncontended
// with the gateway's `--workers 1`, and takes the place of hyper-util's pool, which locked
// its own `Mutex` at the same two points of every request. No lock-free LIFO of
// connections is available without `unsafe` (forbidden) or a new dependency; the `Pools`
// map is locked only when an endpoint is resolved (the prober: once per deployment).
#![allow(clippy::disallowed_types)]

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use crate::BoxError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::{
    body::{Frame, Incoming},
    client::conn::http1,
};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// How long an idle connection is kept by default (hyper-util's client default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept per upstream by default (the gateway's forwarder); the
/// prober keeps every one (as hyper-util's client does by default), for its rounds send as
/// many probes at once as `health_check_concurrency` allows, often to one upstream.
pub const MAX_IDLE_PER_HOST: usize = 256;

type Sender = http1::SendRequest<Full<Bytes>>;

/// The pools of every upstream authority, by `host:port` (looked up when an endpoint is
/// resolved, not per request).
#[derive(Debug)]
pub struct Pools {
    by_authority: Mutex<HashMap<String, Arc<HostPool>>>,
    idle_timeout: Duration,
    max_idle_per_host: usize,
}

impl Default for Pools {
    fn default() -> Self {
        Self::with_idle_timeout(IDLE_TIMEOUT)
    }
}

impl Pools {
    /// Pools whose idle connections are dropped after `idle_timeout` unused (the default is
    /// [`IDLE_TIMEOUT`]), keeping at most [`MAX_IDLE_PER_HOST`] per upstream.
    pub fn with_idle_timeout(idle_timeout: Duration) -> Self {
        Self {
            by_authority: Mutex::new(HashMap::new()),
            idle_timeout,
            max_idle_per_host: MAX_IDLE_PER_HOST,
        }
    }

    /// Keeps at most `max` idle connections per upstream (a connection given back to a full
    /// pool is closed). Applies to the pools found from now on.
    pub fn max_idle_per_host(mut self, max: usize) -> Self {
        self.max_idle_per_host = max;
        self
    }

    /// The pool for `uri`'s authority when it is an `http://` URL with a host; `None` for
    /// anything else (served by the general client).
    pub fn for_uri(&self, uri: &Uri) -> Option<Arc<HostPool>> {
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return None;
        }
        let host = uri.host().filter(|h| !h.is_empty())?;
        let port = uri.port_u16().unwrap_or(80);
        // What hyper-util's client sends as `Host`: the port only when it is not 80.
        let host_header = match uri.port_u16() {
            Some(p) if p != 80 => HeaderValue::from_str(&format!("{host}:{p}")).ok()?,
            _ => HeaderValue::from_str(host).ok()?,
        };
        let key = format!("{host}:{port}");
        let (idle_timeout, max_idle) = (self.idle_timeout, self.max_idle_per_host);
        let mut map = self.by_authority.lock().unwrap_or_else(|e| e.into_inner());
        let pool = map.entry(key).or_insert_with(|| {
            Arc::new(HostPool {
                // `[::1]` in a URL; the socket address wants `::1`.
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port,
                host_header,
                idle_timeout,
                max_idle,
                idle: Mutex::new(Vec::new()),
            })
        });
        Some(Arc::clone(pool))
    }
}

/// The connections to one upstream authority.
#[derive(Debug)]
pub struct HostPool {
    host: String,
    port: u16,
    /// The `Host` header of a request to it.
    host_header: HeaderValue,
    /// How long an idle connection is kept.
    idle_timeout: Duration,
    /// How many idle connections are kept.
    max_idle: usize,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    tx: Sender,
    since: Instant,
}

/// A request path in origin form (`/v1/chat/completions?x`), as HTTP/1 sends it to an
/// origin server.
pub fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(p) if p.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(p.clone());
            Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
        }
        _ => Uri::from_static("/"),
    }
}

/// A TCP connect that failed (its `io::Error` is the source, for the classifier).
#[derive(Debug)]
pub(crate) struct ConnectError(std::io::Error);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tcp connect error: {}", self.0)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl HostPool {
    /// Sends `req` (its URI in origin form) on an idle connection, or a new one; the
    /// answer's body gives the connection back when it is read to the end. A request that
    /// meets a kept connection closed before the request went out is sent on another; one
    /// that went out is not sent again (see [`send_replayable`](Self::send_replayable)).
    pub async fn send(
        self: Arc<Self>,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        self.send_with(req, None::<fn() -> Request<Full<Bytes>>>)
            .await
    }

    /// [`send`](Self::send) for a request that may safely go out twice (a health probe): when
    /// a kept connection fails it before an answer begins (the upstream closed it while
    /// idle, without saying so, and the request went out all the same), `again()` builds it
    /// once more and it goes out on a new connection.
    pub async fn send_replayable(
        self: Arc<Self>,
        req: Request<Full<Bytes>>,
        again: impl FnOnce() -> Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        self.send_with(req, Some(again)).await
    }

    async fn send_with<F: FnOnce() -> Request<Full<Bytes>>>(
        self: Arc<Self>,
        mut req: Request<Full<Bytes>>,
        mut again: Option<F>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        self.set_host(&mut req);
        // Set once the request is built again: it goes out on a new connection.
        let mut replayed = false;
        loop {
            let kept = if replayed {
                None
            } else {
                self.checkout().await
            };
            let (mut tx, reused) = match kept {
                Some(tx) => (tx, true),
                // Boxed: a new connection is rare, and its future (the connect and the
                // handshake) would make every request's future larger, moved as a whole.
                None => (Box::pin(self.connect()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|body| UpstreamBody {
                        inner: body,
                        back: Some((tx, self)),
                        ended: false,
                    }));
                }
                Err(mut e) => {
                    // A pooled connection closed before the request went out: another.
                    if let Some(r) = e.take_message().filter(|_| reused) {
                        req = r;
                        continue;
                    }
                    // It went out and the kept connection failed before an answer began.
                    match again.take().filter(|_| reused) {
                        Some(make) => {
                            req = make();
                            self.set_host(&mut req);
                            replayed = true;
                        }
                        None => return Err(e.into_error().into()),
                    }
                }
            }
        }
    }

    /// Gives `req` this upstream's `Host` header unless it has one.
    fn set_host(&self, req: &mut Request<Full<Bytes>>) {
        req.headers_mut()
            .entry(header::HOST)
            .or_insert_with(|| self.host_header.clone());
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<Sender> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if idle.tx.is_closed() || idle.since.elapsed() > self.idle_timeout {
                continue;
            }
            let mut tx = idle.tx;
            // Its last response was read to the end: the connection is ready at once, or
            // as soon as its task has seen that end (or it closes).
            if tx.ready().await.is_ok() {
                return Some(tx);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ConnectError)?;
        let _ = stream.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(tx)
    }

    fn release(&self, tx: Sender) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest go first once they have been idle too long (as in hyper-util's client
        // without a pool timer, a pool that gets no more requests keeps its connections
        // until their upstream closes them): the expired front in one drain, not one shift
        // of the rest per expired connection.
        let expired = idle
            .iter()
            .position(|i| now.saturating_duration_since(i.since) <= self.idle_timeout)
            .unwrap_or(idle.len());
        idle.drain(..expired);
        if idle.len() < self.max_idle {
            idle.push(Idle { tx, since: now });
        }
    }
}

/// An upstream response body; one from the [`HostPool`] gives its connection back to the
/// pool once it has been read to the end.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<(Sender, Arc<HostPool>)>,
    ended: bool,
}

impl UpstreamBody {
    /// A body that belongs to no pool (hyper-util's client keeps its own).
    pub fn unpooled(inner: Incoming) -> Self {
        Self {
            inner,
            back: None,
            ended: false,
        }
    }

    fn release(&mut self) {
        if let Some((tx, pool)) = self.back.take() {
            pool.release(tx);
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let res = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &res {
            None => {
                this.ended = true;
                this.release();
            }
            Some(Ok(_)) if this.inner.is_end_stream() => {
                this.ended = true;
                this.release();
            }
            Some(Ok(_)) => {}
            // A broken body: its connection is not reused.
            Some(Err(_)) => this.back = None,
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (`content-length: 0`, a 204) ends before it is polled.
        if self.ended || hyper::body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use thr_testkit::Upstream;

    async fn one(pool: &Arc<HostPool>, uri: &Uri) {
        let req = Request::get(origin_form(uri))
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let resp = Arc::clone(pool).send(req).await.expect("an answer");
        // Read to the end: the connection goes back to the pool.
        resp.into_body().collect().await.expect("the body");
    }

    fn idle(pool: &HostPool) -> usize {
        pool.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_given_back_drops_those_idle_longer_than_the_timeout() {
        let up = Upstream::ok();
        let uri: Uri = format!("{}/models", up.v1()).parse().expect("a URI");
        let pool = Pools::with_idle_timeout(Duration::from_secs(10))
            .for_uri(&uri)
            .expect("an http:// pool");
        tokio::join!(one(&pool, &uri), one(&pool, &uri), one(&pool, &uri));
        assert_eq!(idle(&pool), 3, "three connections, all given back");
        tokio::time::advance(Duration::from_secs(5)).await;
        // The newest serves and goes back on top, idle from now.
        one(&pool, &uri).await;
        assert_eq!(idle(&pool), 3);
        tokio::time::advance(Duration::from_secs(6)).await;
        // Idle 6 s, it serves again; given back, it finds the other two idle 11 s.
        one(&pool, &uri).await;
        assert_eq!(idle(&pool), 1, "the two idle past the timeout are dropped");
    }
}
