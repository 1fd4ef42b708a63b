//! A scripted [`Prober`]: a test double for upstreams, answering each probe as a plan says,
//! after a delay measured on tokio's (pausable) clock, and counting live probes.
#![allow(clippy::disallowed_types)] // test-only bookkeeping

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use tokio::time::Instant;
use tower_health_routing::{
    Deployment,
    probe::{ProbeFuture, ProbeOutcome, Prober},
};

/// What one probe does.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answers `outcome` after `delay`.
    After(Duration, ProbeOutcome),
    /// Never answers.
    Hang,
    /// Panics.
    Panic,
}

impl Step {
    pub fn ok() -> Self {
        Self::After(Duration::ZERO, ProbeOutcome::healthy().with_status(200))
    }
    pub fn fail(status: u16) -> Self {
        Self::After(
            Duration::ZERO,
            ProbeOutcome::unhealthy(format!("status {status}")).with_status(status),
        )
    }
}

type Plan = dyn Fn(&str, usize) -> Step + Send + Sync;

/// Records every call: deployment id and start time.
pub struct Script {
    plan: Box<Plan>,
    calls: Mutex<Vec<(String, Instant)>>,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Script {
    /// `plan(id, n)` decides the `n`th probe (0-based) of deployment `id`.
    pub fn new(plan: impl Fn(&str, usize) -> Step + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            plan: Box::new(plan),
            calls: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Every probe answers healthy at once.
    pub fn healthy() -> Arc<Self> {
        Self::new(|_, _| Step::ok())
    }

    pub fn calls(&self) -> Vec<(String, Instant)> {
        self.calls.lock().expect("calls").clone()
    }

    /// Start times of `id`'s probes, in seconds since `t0`.
    pub fn starts(&self, id: &str, t0: Instant) -> Vec<f64> {
        self.calls()
            .into_iter()
            .filter(|(i, _)| i == id)
            .map(|(_, t)| (t - t0).as_secs_f64())
            .collect()
    }

    pub fn live(&self) -> usize {
        self.live.load(SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Prober for Script {
    fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_> {
        Box::pin(async move {
            let id = deployment.id().as_str().to_owned();
            let n = {
                let mut calls = self.calls.lock().expect("calls");
                let n = calls.iter().filter(|(i, _)| *i == id).count();
                calls.push((id.clone(), Instant::now()));
                n
            };
            let now = self.live.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            let _live = Live(&self.live);
            match (self.plan)(&id, n) {
                Step::After(d, outcome) => {
                    tokio::time::sleep(d).await;
                    outcome
                }
                Step::Hang => std::future::pending().await,
                Step::Panic => panic!("scripted panic"),
            }
        })
    }
}
