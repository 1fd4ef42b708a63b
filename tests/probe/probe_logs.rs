//! Logs: info only when a deployment changes state (plus LiteLLM's one line per round),
//! per-probe detail at debug, all inside the loop's span.
#![allow(clippy::disallowed_types)] // test-only capture

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{
    many,
    script::{Script, Step},
    state_with,
};
use tower_health_routing::probe::{ProbeLoop, Prober};
use tracing::{Level, Subscriber, field::Field};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

#[derive(Debug, Clone)]
struct Ev {
    level: Level,
    message: String,
    spans: Vec<String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Ev>>>);

struct Msg(String);

impl tracing::field::Visit for Msg {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut m = Msg(String::new());
        event.record(&mut m);
        let spans = ctx
            .event_scope(event)
            .map(|s| s.from_root().map(|sp| sp.name().to_owned()).collect())
            .unwrap_or_default();
        self.0.lock().expect("events").push(Ev {
            level: *event.metadata().level(),
            message: m.0,
            spans,
        });
    }
}

#[tokio::test(start_paused = true)]
async fn info_only_on_state_changes() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    // r-1 fails in rounds 2 and 3 and recovers in round 4; the others always pass.
    let script = Script::new(|id, n| {
        if id == "r-1" && (n == 1 || n == 2) {
            Step::fail(503)
        } else {
            Step::ok()
        }
    });
    let state = state_with(many("r", 3, "http://127.0.0.1:9/v1"), |b| {
        b.health_check_interval(Duration::from_secs(10))
    });
    let handle = ProbeLoop::builder(&state)
        .prober(Arc::clone(&script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
        .spawn();
    tokio::time::sleep(Duration::from_secs(35)).await;
    handle.shutdown().await;

    let events = capture.0.lock().expect("events").clone();
    let info: Vec<&str> = events
        .iter()
        .filter(|e| e.level == Level::INFO)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        info,
        [
            "health_check_loop_started",
            "health_check_routing_state_updated healthy=3 unhealthy=0",
            "health_check_state_changed model_id=r-1 healthy=false",
            "health_check_routing_state_updated healthy=2 unhealthy=1",
            "health_check_routing_state_updated healthy=2 unhealthy=1",
            "health_check_state_changed model_id=r-1 healthy=true",
            "health_check_routing_state_updated healthy=3 unhealthy=0",
            "health_check_loop_stopped",
        ]
    );
    let probes: Vec<&Ev> = events
        .iter()
        .filter(|e| e.message == "health_check_probe")
        .collect();
    assert_eq!(probes.len(), 12);
    assert!(probes.iter().all(|e| e.level == Level::DEBUG));
    assert!(
        events
            .iter()
            .all(|e| e.spans.first().map(String::as_str) == Some("health_probe_loop")),
        "every event inside the loop's span: {events:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unmatched_model_group_is_warned_about_once() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let script = Script::new(|_, _| Step::ok());
    let mut ds = many("a", 1, "http://127.0.0.1:9/v1");
    ds.extend(many("b", 1, "http://127.0.0.1:9/v1"));
    let state = state_with(ds, |mut b| {
        b.health_mut().background_model_groups = Some(vec!["a".into(), "typo-group".into()]);
        b.health_check_interval(Duration::from_secs(10))
    });
    let handle = ProbeLoop::builder(&state)
        .prober(Arc::clone(&script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
        .spawn();
    tokio::time::sleep(Duration::from_secs(35)).await;
    handle.shutdown().await;

    let events = capture.0.lock().expect("events").clone();
    let warned: Vec<&Ev> = events
        .iter()
        .filter(|e| e.message.contains("background_health_check_model_groups"))
        .collect();
    assert_eq!(warned.len(), 1, "{events:#?}");
    assert_eq!(warned[0].level, Level::WARN);
    // Four rounds, each probing only route `a`.
    let snap = state.snapshot();
    assert!(snap.health("a-0").is_some());
    assert!(snap.health("b-0").is_none(), "b stays unchecked");
}
