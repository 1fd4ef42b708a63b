//! Shared test helpers: configs of N local deployments, an inner service whose answers
//! the test scripts per deployment, log capture, a recording upstream server and a
//! scripted prober. Each test binary uses its own part of it.
// Each test binary uses its own part of this module.
#![allow(dead_code, unreachable_pub)]
// A Mutex guards the captured log buffer in tests only; never on the request path.
#![allow(clippy::disallowed_types)]

pub mod endpoints;
#[cfg(feature = "redis")]
pub mod gateway;
pub mod redis;
pub mod script;
pub mod store_contract;
/// The one fake upstream, from the test-only `thr-testkit` crate.
pub use thr_testkit::upstream;
pub mod wire;

use std::{
    convert::Infallible,
    io,
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use http::{Request, Response};
use tower_health_routing::{Config, ConfigBuilder, Deployment, ModelGroup, SelectedDeployment};

/// `n` deployments of route `route`, ids `d0..`, api_base `http://d{i}`.
pub fn deployments(route: &str, n: usize) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            Deployment::builder(route, "openai/gpt-4o")
                .id(format!("d{i}"))
                .api_base(format!("http://d{i}"))
                .build()
        })
        .collect()
}

pub fn config(route: &str, n: usize) -> ConfigBuilder {
    Config::builder().deployments(deployments(route, n))
}

pub fn request(route: &str) -> Request<String> {
    let mut req = Request::new(String::new());
    req.extensions_mut().insert(ModelGroup::new(route));
    req
}

/// What the scripted upstreams answer: a status and a delay per deployment `d{i}`.
#[derive(Clone, Default)]
pub struct Upstreams {
    status: Arc<[AtomicU16; 16]>,
    delay_ms: Arc<[AtomicU64; 16]>,
    retry_after: Arc<[AtomicU64; 16]>,
    pub hits: Arc<[AtomicU64; 16]>,
}

impl Upstreams {
    pub fn new() -> Self {
        let u = Self::default();
        for s in u.status.iter() {
            s.store(200, Relaxed);
        }
        u
    }
    pub fn set_status(&self, i: usize, status: u16) {
        self.status[i].store(status, Relaxed);
    }
    pub fn set_delay(&self, i: usize, d: Duration) {
        self.delay_ms[i].store(d.as_millis() as u64, Relaxed);
    }
    pub fn set_retry_after(&self, i: usize, secs: u64) {
        self.retry_after[i].store(secs, Relaxed);
    }
    pub fn hits(&self, i: usize) -> u64 {
        self.hits[i].load(Relaxed)
    }

    /// The inner service: answers as scripted for the deployment the layer chose, with
    /// the chosen id as the body.
    pub fn service(&self) -> BoxInner {
        tower::util::BoxCloneService::new(serve(self.clone()))
    }
}

/// The scripted inner service, boxed so tests can name its type.
pub type BoxInner = tower::util::BoxCloneService<Request<String>, Response<String>, Infallible>;

fn serve(
    u: Upstreams,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<String>| {
        let u = u.clone();
        async move {
            let chosen = req
                .extensions()
                .get::<SelectedDeployment>()
                .expect("layer attaches the deployment");
            let id = chosen.id().to_string();
            let i: usize = id[1..].parse().expect("ids are d<N>");
            u.hits[i].fetch_add(1, Relaxed);
            let delay = u.delay_ms[i].load(Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let mut resp = Response::new(id);
            *resp.status_mut() = http::StatusCode::from_u16(u.status[i].load(Relaxed)).unwrap();
            let ra = u.retry_after[i].load(Relaxed);
            if ra > 0 {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, ra.into());
            }
            Ok(resp)
        }
    })
}

/// Captures formatted log lines emitted on the current thread (each `#[tokio::test]`
/// runs on its own thread).
///
/// One global subscriber serves every test of the binary: per-thread subscribers
/// (`set_default`) race with tracing's global callsite-interest cache when tests run in
/// parallel, and silently lose events.
#[derive(Clone, Copy, Default)]
pub struct Logs;

type Buffers = std::sync::Mutex<std::collections::HashMap<std::thread::ThreadId, Vec<u8>>>;

fn buffers() -> &'static Buffers {
    static BUFFERS: std::sync::OnceLock<Buffers> = std::sync::OnceLock::new();
    BUFFERS.get_or_init(Default::default)
}

impl Logs {
    /// Starts capturing this thread's events (and forgets what it logged before).
    pub fn capture() -> (Self, ()) {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let sub = tracing_subscriber::fmt()
                // Everything: tests assert that no line at any level shows a secret.
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(Logs)
                .finish();
            tracing::subscriber::set_global_default(sub).expect("no other global subscriber");
        });
        buffers()
            .lock()
            .unwrap()
            .remove(&std::thread::current().id());
        (Logs, ())
    }

    pub fn text(&self) -> String {
        let map = buffers().lock().unwrap();
        map.get(&std::thread::current().id())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        buffers()
            .lock()
            .unwrap()
            .entry(std::thread::current().id())
            .or_default()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        Logs
    }
}

/// A state over `deployments` with `tweak` applied to the builder.
pub fn state_with(
    deployments: Vec<Deployment>,
    tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> tower_health_routing::HealthState {
    let b = Config::builder().deployments(deployments);
    tower_health_routing::HealthState::new(tweak(b).build().expect("valid test config"))
}

/// `n` deployments of route `route`, ids `{route}-{i}`, at `api_base`.
pub fn many(route: &str, n: usize, api_base: &str) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            Deployment::builder(route, "openai/gpt-4o")
                .id(format!("{route}-{i}"))
                .api_base(api_base)
                .build()
        })
        .collect()
}

/// A deployment with its `model_info` edited.
pub fn with_info(
    b: tower_health_routing::DeploymentBuilder,
    f: impl FnOnce(&mut tower_health_routing::deployment::ModelInfo),
) -> Deployment {
    let mut b = b;
    f(b.info_mut());
    b.build()
}

/// Polls `cond` every 5 ms of real time for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    while waited < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(deadline).await;
        waited += deadline;
    }
    cond()
}

pub fn arc(d: Deployment) -> Arc<Deployment> {
    Arc::new(d)
}
