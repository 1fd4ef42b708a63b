//! Streams as health signals (`router_settings.stream_stall_timeout`): a successful
//! `text/event-stream` body that waits too long for its first frame or between frames
//! yields `StreamStalled` and ends, and the stall counts once as a failure for cooldown and
//! ejection. Time is paused.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, util::BoxCloneService};
use tower_health_routing::{
    DeploymentId, HealthRouting, HealthRoutingLayer, HealthState, SelectedDeployment, StallGap,
    StreamStalled,
    classify::{Class, Classify, DefaultClassifier},
    config::OutlierDetection,
    routing::{ExcludeDeployments, ResponseBody},
};

use crate::support::{Logs, config, request};

const ROUTE: &str = "gpt-4o";
/// The stall timeout of these tests.
const T: Duration = Duration::from_secs(1);

type TestBody = UnsyncBoxBody<Bytes, std::io::Error>;
type Svc = HealthRouting<BoxCloneService<Request<String>, Response<TestBody>, Infallible>>;

/// What an upstream answers: SSE frames, each after its delay, then the end, a hang or
/// a broken connection.
#[derive(Clone)]
struct Plan {
    content_type: &'static str,
    delays: Vec<Duration>,
    hang: bool,
    reset: bool,
}

fn sse(delays: &[Duration], hang: bool) -> Plan {
    Plan {
        content_type: "text/event-stream",
        delays: delays.to_vec(),
        hang,
        reset: false,
    }
}

fn body(plan: &Plan) -> TestBody {
    let frames = futures_util::stream::iter(plan.delays.clone().into_iter().enumerate()).then(
        |(i, d)| async move {
            tokio::time::sleep(d).await;
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(format!(
                "data: {{\"n\":{i}}}\n\n"
            ))))
        },
    );
    if plan.reset {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        StreamBody::new(frames.chain(futures_util::stream::iter([Err(reset)]))).boxed_unsync()
    } else if plan.hang {
        StreamBody::new(frames.chain(futures_util::stream::pending())).boxed_unsync()
    } else {
        StreamBody::new(frames).boxed_unsync()
    }
}

/// The layer over upstreams answering `plan(deployment id)`.
fn service(state: &HealthState, plan: impl Fn(&str) -> Plan + Send + Sync + 'static) -> Svc {
    let plan = Arc::new(plan);
    let inner = tower::service_fn(move |req: Request<String>| {
        let id = req
            .extensions()
            .get::<SelectedDeployment>()
            .expect("layer attaches the deployment")
            .id()
            .to_string();
        let p = plan(&id);
        async move {
            let mut resp = Response::new(body(&p));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(p.content_type),
            );
            Ok::<_, Infallible>(resp)
        }
    });
    HealthRoutingLayer::from_state(state.clone())
        .with_response_extension()
        .with_seed(7)
        .layer(BoxCloneService::new(inner))
}

/// Two deployments `d0`, `d1`; the stall timer on; cooldown after more than one failure a
/// minute; ejection after two failures in a row.
fn state(stall: Option<Duration>) -> HealthState {
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(2);
    od.max_ejection_percent = 100.0;
    let mut b = config(ROUTE, 2).allowed_fails(1).outlier_detection(od);
    if let Some(t) = stall {
        b = b.stream_stall_timeout(t);
    }
    HealthState::new(b.build().unwrap())
}

/// A request that can only go to `d0`.
async fn to_d0(svc: &mut Svc) -> ResponseBody<TestBody> {
    let mut req = request(ROUTE);
    req.extensions_mut()
        .insert(ExcludeDeployments(vec![DeploymentId::new("d1")]));
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(
        resp.extensions()
            .get::<SelectedDeployment>()
            .unwrap()
            .id()
            .as_str(),
        "d0"
    );
    resp.into_body()
}

/// Reads frames until the body ends or stalls: the frames' text, and the stall.
async fn drain(body: &mut ResponseBody<TestBody>) -> (Vec<String>, Option<StreamStalled>) {
    let mut got = Vec::new();
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => got.push(String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()),
            Err(e) => {
                let stalled = e.downcast_ref::<StreamStalled>().expect("a stall").clone();
                assert!(body.frame().await.is_none(), "a stalled body ends");
                assert!(body.is_end_stream());
                return (got, Some(stalled));
            }
        }
    }
    (got, None)
}

fn out(state: &HealthState, id: &str) -> (bool, bool) {
    (
        state.cooldown_remaining(id).is_some(),
        state.ejection_remaining(id).is_some(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_stream_without_a_first_frame_stalls_after_the_timeout() {
    let (logs, _) = Logs::capture();
    let state = state(Some(T));
    let mut svc = service(&state, |_| sse(&[], true));
    let mut b = to_d0(&mut svc).await;
    let t0 = Instant::now();
    let (frames, stalled) = drain(&mut b).await;
    let waited = t0.elapsed();
    assert!(frames.is_empty());
    let s = stalled.expect("stalled");
    assert_eq!(s.gap(), StallGap::FirstFrame);
    assert_eq!(s.deployment().as_str(), "d0");
    assert_eq!(s.timeout(), T);
    assert!(
        waited >= T && waited < T + Duration::from_millis(5),
        "{waited:?}"
    );
    assert!(s.to_string().contains("`d0`"), "{s}");
    assert_eq!(logs.count("stream stalled"), 1, "{}", logs.text());
    // The classifier's class of a stall is a timeout.
    assert_eq!(
        DefaultClassifier::default().classify_error(&s),
        Class::Timeout
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_stops_between_frames_stalls_after_its_last_frame() {
    let state = state(Some(T));
    let gap = Duration::from_millis(500);
    let mut svc = service(&state, move |_| sse(&[Duration::ZERO, gap, gap], true));
    let mut b = to_d0(&mut svc).await;
    let t0 = Instant::now();
    let (frames, stalled) = drain(&mut b).await;
    assert_eq!(
        frames,
        [
            "data: {\"n\":0}\n\n",
            "data: {\"n\":1}\n\n",
            "data: {\"n\":2}\n\n"
        ]
    );
    let s = stalled.expect("stalled");
    assert_eq!(s.gap(), StallGap::BetweenFrames);
    let waited = t0.elapsed();
    assert!(
        waited >= 2 * gap + T && waited < 2 * gap + T + Duration::from_millis(5),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_reaches_cooldown_and_ejection_exactly_once() {
    let state = state(Some(T));
    let mut svc = service(&state, |id| {
        if id == "d0" {
            sse(&[Duration::ZERO], true)
        } else {
            sse(&[Duration::ZERO], false)
        }
    });
    // One stall: one failure. Cooldown needs two (`allowed_fails: 1`), ejection two in a
    // row; counted twice, or with the head's success between, either would be wrong.
    let mut b = to_d0(&mut svc).await;
    assert!(drain(&mut b).await.1.is_some());
    // Polled again and dropped: nothing more is recorded.
    assert!(b.frame().await.is_none());
    drop(b);
    assert_eq!(out(&state, "d0"), (false, false));
    // The second stall is the second failure in a row: both rules trip.
    let mut b = to_d0(&mut svc).await;
    assert!(drain(&mut b).await.1.is_some());
    drop(b);
    assert_eq!(out(&state, "d0"), (true, true));
    assert_eq!(state.ejections("d0"), 1);
    // The next requests go to the other deployment.
    for _ in 0..20 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
        let id = resp
            .extensions()
            .get::<SelectedDeployment>()
            .unwrap()
            .id()
            .to_string();
        assert_eq!(id, "d1");
        let (frames, stalled) = drain(&mut resp.into_body()).await;
        assert_eq!((frames.len(), stalled), (1, None));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_gaps_under_the_timeout_never_stalls_and_is_a_success() {
    let state = state(Some(T));
    let ok = sse(&[Duration::from_millis(900); 10], false);
    let stall = sse(&[], true);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = Arc::clone(&next);
    // d0: a stall, then a good stream, then a stall.
    let mut svc = service(&state, move |_| {
        match n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
            1 => ok.clone(),
            _ => stall.clone(),
        }
    });
    assert!(drain(&mut to_d0(&mut svc).await).await.1.is_some());
    let t0 = Instant::now();
    let (frames, stalled) = drain(&mut to_d0(&mut svc).await).await;
    assert_eq!((frames.len(), stalled), (10, None));
    assert!(t0.elapsed() >= 9 * T, "ten gaps of 0.9 s");
    assert!(drain(&mut to_d0(&mut svc).await).await.1.is_some());
    // The good stream between the stalls was a success: no two failures in a row.
    assert_eq!(state.ejection_remaining("d0"), None);
    assert_eq!(next.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn a_body_its_consumer_drops_is_no_stall() {
    let state = state(Some(T));
    let mut svc = service(&state, |_| sse(&[Duration::ZERO], true));
    for _ in 0..3 {
        let mut b = to_d0(&mut svc).await;
        assert!(b.frame().await.unwrap().is_ok());
        drop(b); // the client went away while the upstream was silent
        advance(10 * T).await;
    }
    assert_eq!(out(&state, "d0"), (false, false));
    // Dropped before its first frame: no stall either.
    let b = to_d0(&mut svc).await;
    drop(b);
    advance(10 * T).await;
    assert_eq!(out(&state, "d0"), (false, false));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_reads_slowly_is_no_stall() {
    // Each frame comes 0.6 s after it is asked for; the consumer asks 3 s after the
    // previous one. The wait is the upstream's, not the consumer's.
    let state = state(Some(T));
    let mut svc = service(&state, |_| sse(&[Duration::from_millis(600); 5], false));
    let mut b = to_d0(&mut svc).await;
    let mut frames = 0;
    while let Some(f) = b.frame().await {
        f.expect("no stall");
        frames += 1;
        advance(3 * T).await;
    }
    assert_eq!(frames, 5);
    assert_eq!(out(&state, "d0"), (false, false));
}

#[tokio::test(start_paused = true)]
async fn without_the_setting_nothing_is_timed() {
    let state = state(None);
    let mut svc = service(&state, |_| sse(&[Duration::ZERO], true));
    let mut b = to_d0(&mut svc).await;
    assert!(b.frame().await.unwrap().is_ok());
    let waited = tokio::time::timeout(3600 * T, b.frame()).await;
    assert!(waited.is_err(), "an hour without a frame and no stall");
    drop(b);
    assert_eq!(out(&state, "d0"), (false, false));
}

#[tokio::test(start_paused = true)]
async fn only_event_streams_are_timed() {
    let state = state(Some(T));
    let mut svc = service(&state, |_| Plan {
        content_type: "application/json",
        delays: Vec::new(),
        hang: true,
        reset: false,
    });
    let mut b = to_d0(&mut svc).await;
    let waited = tokio::time::timeout(100 * T, b.frame()).await;
    assert!(waited.is_err(), "a JSON body is not a stream");
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_off_counts_as_its_errors_class_once() {
    let state = state(Some(T));
    let mut svc = service(&state, |_| Plan {
        reset: true,
        ..sse(&[Duration::ZERO], false)
    });
    let mut b = to_d0(&mut svc).await;
    assert!(b.frame().await.unwrap().is_ok());
    let e = b.frame().await.unwrap().unwrap_err();
    let io = e
        .downcast_ref::<std::io::Error>()
        .expect("the upstream's error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    drop(b);
    assert_eq!(out(&state, "d0"), (false, false), "one failure");
    let mut b = to_d0(&mut svc).await;
    while let Some(Ok(_)) = b.frame().await {}
    drop(b);
    assert_eq!(out(&state, "d0"), (true, true), "two in a row");
}
