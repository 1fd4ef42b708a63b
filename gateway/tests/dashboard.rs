//! The health dashboard in a real browser: the gateway (master key set, background probes)
//! over local fake upstreams, one of which is driven unhealthy, and headless Chromium driven
//! through the DevTools protocol.
//!
//! * With JavaScript off, the login form posts the key and the answer is the server's table.
//! * With JavaScript on, the key typed into the login form goes into `sessionStorage` (never
//!   the address) and the page's script polls the JSON and draws the rows and timelines:
//!   the failing deployment shows unhealthy, the others healthy, the strips have probes; a
//!   reload keeps working from `sessionStorage`; the deployment's recovery shows within one
//!   poll.
//! * A screenshot of the page: written to the path in `THR_DASHBOARD_SCREENSHOT` (relative
//!   to the workspace root), e.g. `THR_DASHBOARD_SCREENSHOT=docs/dashboard.png cargo test -p
//!   thr-gateway --test dashboard`.
//!
//! Chromium is driven over `--remote-debugging-pipe` (CDP messages on file descriptors 3
//! and 4, handed over through two FIFOs), with `serde_json` only: the CDP crates
//! (`chromiumoxide`, `headless_chrome`) compile a generated protocol of thousands of types,
//! minutes on two cores, for the handful of commands used here. The test reruns itself in a
//! network namespace of its own (only loopback) where it can make one, so the browser
//! cannot reach past the machine. Where Chromium is not installed (`scripts/test` installs
//! Debian's `chromium`), the test prints `SKIPPED` and passes, unless
//! `THR_REQUIRE_CHROMIUM=1`.

mod support;

use std::{io::Write as _, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use thr_testkit::{FakeLlm, Fault};
use tower_health_routing::{Config, Deployment};

const MASTER: &str = "sk-dashboard-browser-test-0123456789abcdef";
const UPSTREAM_KEY: &str = "sk-upstream-secret-0f1e2d3c4b5a";

async fn get_data(addr: SocketAddr) -> Value {
    let req = http::Request::get(format!("http://{addr}/health/dashboard/data"))
        .header("authorization", format!("Bearer {MASTER}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        !text.contains(UPSTREAM_KEY) && !text.contains(MASTER),
        "{text}"
    );
    serde_json::from_slice(&body).unwrap()
}

async fn chat(addr: SocketAddr, model: &str) {
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", format!("Bearer {MASTER}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

fn state_of(data: &Value, id: &str) -> String {
    data["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deployments"].as_array().unwrap())
        .find(|d| d["model_id"] == id)
        .map(|d| {
            let n = d["timeline"].as_array().map_or(0, Vec::len);
            format!("{}/{}", d["state"].as_str().unwrap_or("?"), n.min(2))
        })
        .unwrap_or_default()
}

/// Polls the gateway's JSON until `cond` holds (bounded).
async fn until(addr: SocketAddr, what: &str, cond: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let d = get_data(addr).await;
        if cond(&d) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const TEST: &str = "the_page_shows_a_failing_deployment_in_a_real_browser";
/// Set in the copy of this test that runs in its own network namespace.
const IN_NETNS: &str = "THR_DASHBOARD_IN_NETNS";

/// Reruns this test in new network and PID namespaces (`unshare`, as root or through a
/// user namespace): only a loopback interface, so that nothing Chromium does can reach past
/// loopback (it probes IPv6 reachability with a UDP `connect` to a public address on every
/// host lookup, and its background services try to phone home). `None` when no namespace
/// can be made: the test then runs here, with Chromium's network switched off by flags.
fn rerun_isolated() -> Option<std::process::Output> {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().ok()?;
    let works = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .args(["sh", "-c", "ip link set lo up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A PID namespace too: when the test ends, the kernel ends every process it left.
    const NS: &[&str] = &["--net", "--pid", "--fork", "--kill-child", "--mount-proc"];
    const USER_NS: &[&str] = &[
        "--user",
        "--map-root-user",
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
    ];
    let ns = [NS, USER_NS].into_iter().find(|a| works(a))?;
    Command::new("unshare")
        .args(ns)
        .args(["sh", "-c", r#"ip link set lo up && exec "$0" "$@""#])
        .arg(exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .output()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_failing_deployment_in_a_real_browser() {
    let Some(chromium) = cdp::find() else {
        let msg = format!(
            "SKIPPED {TEST}: chromium is not installed (scripts/test installs Debian's `chromium`)"
        );
        assert!(std::env::var_os("THR_REQUIRE_CHROMIUM").is_none(), "{msg}");
        // Past libtest's capture, so the line shows in a passing run.
        let _ = writeln!(std::io::stderr(), "{msg}");
        return;
    };
    if std::env::var_os(IN_NETNS).is_none() {
        if let Some(out) = tokio::task::spawn_blocking(rerun_isolated).await.unwrap() {
            println!("{}", String::from_utf8_lossy(&out.stdout));
            println!("{}", String::from_utf8_lossy(&out.stderr));
            assert!(
                out.status.success(),
                "the isolated run failed: {:?}",
                out.status
            );
            return;
        }
        println!("no network namespace available: running with Chromium's network flags only");
    }
    let ups = [
        FakeLlm::start("eu-1").await.unwrap(),
        FakeLlm::start("eu-2").await.unwrap(),
        FakeLlm::start("us-1").await.unwrap(),
        FakeLlm::start("embed-1").await.unwrap(),
    ];
    let dep = |route: &str, u: &FakeLlm| {
        Deployment::builder(route, "openai/gpt-4o-mini")
            .id(u.name.clone())
            .api_base(u.api_base())
            .api_key(UPSTREAM_KEY)
            .health_check_timeout(Duration::from_secs(2))
            .build()
    };
    let cfg = Config::builder()
        .deployments([
            dep("gpt-4o-mini", &ups[0]),
            dep("gpt-4o-mini", &ups[1]),
            dep("gpt-4o-mini", &ups[2]),
            dep("text-embedding-3-small", &ups[3]),
        ])
        .master_key(MASTER)
        .background_health_checks(true)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_millis(400))
        .build()
        .unwrap();
    let gw = support::start(cfg).await;
    let addr = gw.addr;
    let ids = ["eu-1", "eu-2", "us-1", "embed-1"];
    until(addr, "every deployment passed twice", |d| {
        ids.iter().all(|id| state_of(d, id) == "healthy/2")
    })
    .await;
    // eu-2 fails; a few requests so the rates have something to show.
    ups[1].control.set(Fault::Error500);
    until(addr, "eu-2 unhealthy, the others healthy", |d| {
        state_of(d, "eu-2") == "unhealthy/2"
            && ["eu-1", "us-1", "embed-1"]
                .iter()
                .all(|id| state_of(d, id) == "healthy/2")
    })
    .await;
    for _ in 0..12 {
        chat(addr, "gpt-4o-mini").await;
    }

    let url = format!("http://{addr}/health/dashboard");
    let shot = std::env::var_os("THR_DASHBOARD_SCREENSHOT").map(|p| {
        let p = std::path::PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(p)
        }
    });
    let started = tokio::time::Instant::now();
    let mut browser = tokio::task::spawn_blocking(move || cdp::Chromium::launch(&chromium))
        .await
        .unwrap()
        .expect("chromium starts");

    // JavaScript off: the plain form post answers the server-rendered table.
    let (b, html) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let html = no_js_login(&mut browser, &url);
            (browser, html)
        }
    })
    .await
    .unwrap();
    browser = b;
    assert!(html.contains(r#"data-rendered-by="server""#), "{html}");
    assert!(
        html.contains(r#"<tr data-model-id="eu-2" data-state="unhealthy">"#),
        "{html}"
    );
    assert!(html.contains(r#"<tr data-model-id="eu-1" data-state="healthy">"#));
    assert!(!html.contains(MASTER) && !html.contains(UPSTREAM_KEY));

    // JavaScript on: log in through the form; the script draws the table.
    let (b, page) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            let page = js_login(&mut browser, &url);
            (browser, page)
        }
    })
    .await
    .unwrap();
    browser = b;
    let rows = page["rows"].as_array().unwrap();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no row {id}: {page}"))
    };
    assert_eq!(row("eu-2")["state"], "unhealthy", "{page}");
    assert!(
        row("eu-2")["why"].as_str().unwrap().contains("500"),
        "{page}"
    );
    for id in ["eu-1", "us-1", "embed-1"] {
        assert_eq!(row(id)["state"], "healthy", "{id}: {page}");
    }
    for r in rows {
        assert!(r["probes"].as_u64().unwrap() >= 2, "timeline entries: {r}");
        assert_eq!(r["drawnBy"], "js", "{r}");
    }
    assert!(row("eu-2")["fails"].as_u64().unwrap() >= 1, "{page}");
    assert_eq!(
        row("eu-2")["turns"],
        1,
        "its strip marks where it turned: {page}"
    );
    assert_eq!(row("eu-1")["turns"], 0, "{page}");
    assert_eq!(page["stored"], true, "the key is kept in sessionStorage");
    assert_eq!(page["href"], url.as_str(), "nothing in the address");
    assert_eq!(page["keyInDom"], false);
    assert_eq!(page["loginHidden"], true);

    if let Some(path) = &shot {
        let (b, png) = tokio::task::spawn_blocking(move || {
            let png = browser.screenshot();
            (browser, png)
        })
        .await
        .unwrap();
        browser = b;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        assert!(png.len() < 200 * 1024, "{} bytes: keep it small", png.len());
        std::fs::write(path, &png).unwrap();
        println!("screenshot: {} ({} bytes)", path.display(), png.len());
    }

    // It recovers: the page shows it within one poll of the gateway seeing it.
    ups[1].control.set(Fault::None);
    until(addr, "eu-2 recovered", |d| {
        state_of(d, "eu-2").starts_with("healthy")
    })
    .await;
    let seen = tokio::time::Instant::now();
    let (b, state) = tokio::task::spawn_blocking(move || {
        let s = browser.wait_for(
            "document.querySelector('tr[data-model-id=\"eu-2\"]')?.dataset.state === 'healthy'",
            Duration::from_secs(6),
        );
        (browser, s)
    })
    .await
    .unwrap();
    browser = b;
    assert!(state, "the page showed eu-2 healthy again");
    let lag = seen.elapsed();
    assert!(
        lag < Duration::from_secs(5),
        "within one poll (3 s): {lag:?}"
    );

    // A reload keeps working from sessionStorage (the page itself is the 401 login page).
    let reloaded = tokio::task::spawn_blocking(move || {
        browser.call("Page.reload", json!({}));
        let ok = browser.wait_for(
            "document.getElementById('dash')?.dataset.renderedBy === 'js' && \
             document.querySelectorAll('tr[data-model-id]').length === 4",
            Duration::from_secs(10),
        );
        drop(browser); // kills Chromium
        ok
    })
    .await
    .unwrap();
    assert!(reloaded, "the reloaded page rendered from sessionStorage");
    println!("browser part took {:?}", started.elapsed());
    gw.shutdown().await;
}

/// With JavaScript disabled: type the key into the form, press Enter, read the answer.
fn no_js_login(b: &mut cdp::Chromium, url: &str) -> String {
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    b.call("Page.navigate", json!({"url": url}));
    assert!(
        b.wait_dom(|h| h.contains(r#"id="login-form""#)),
        "the login page loads"
    );
    let html = b.outer_html();
    assert!(!html.contains("data-model-id"), "no data before the key");
    b.focus("#key");
    b.call("Input.insertText", json!({"text": MASTER}));
    b.press_enter();
    assert!(
        b.wait_dom(|h| h.contains(r#"data-authed="true""#)),
        "the form post answers the table"
    );
    let html = b.outer_html();
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": false}),
    );
    html
}

/// With JavaScript: a fresh load, the key typed into the form, the script's table.
fn js_login(b: &mut cdp::Chromium, url: &str) -> Value {
    b.call("Page.navigate", json!({"url": url}));
    assert!(
        b.wait_for(
            "document.readyState === 'complete' && !document.getElementById('login').hidden",
            Duration::from_secs(10)
        ),
        "the login form shows"
    );
    b.focus("#key");
    b.call("Input.insertText", json!({"text": MASTER}));
    b.press_enter();
    assert!(
        b.wait_for(
            "document.getElementById('dash').dataset.renderedBy === 'js' && \
             document.querySelectorAll('tr[data-model-id]').length === 4",
            Duration::from_secs(10)
        ),
        "the script rendered the table"
    );
    b.eval(
        r#"JSON.stringify({
            rows: [...document.querySelectorAll('tr[data-model-id]')].map((tr) => ({
                id: tr.dataset.modelId,
                state: tr.dataset.state,
                why: tr.querySelector('.reason').textContent,
                probes: tr.querySelectorAll('svg .tl-probe').length,
                fails: tr.querySelectorAll('svg .tl-fail').length,
                turns: tr.querySelectorAll('svg .tl-change').length,
                drawnBy: tr.querySelector('svg').dataset.drawnBy,
            })),
            stored: sessionStorage.getItem('thr-dashboard-key') !== null,
            keyInDom: document.documentElement.outerHTML.includes(sessionStorage.getItem('thr-dashboard-key')),
            href: location.href,
            loginHidden: document.getElementById('login').hidden,
        })"#,
    )
    .as_str()
    .map(|s| serde_json::from_str(s).unwrap())
    .unwrap_or(Value::Null)
}

/// A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`.
mod cdp {
    use std::{
        fs::{File, OpenOptions},
        io::{Read, Write},
        path::{Path, PathBuf},
        process::{Child, Command, Stdio},
        sync::mpsc,
        time::Duration,
    };

    use base64::Engine as _;
    use serde_json::{Value, json};
    use tokio::time::Instant;

    /// Headless, no sandbox (tests may run as root), and no network but loopback: besides
    /// the switches that turn Chromium's background services off, every other host goes to
    /// a dead local proxy and resolves to nothing, so nothing leaves the machine.
    const FLAGS: &[&str] = &[
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
        "--safebrowsing-disable-auto-update",
        "--metrics-recording-only",
        "--no-pings",
        "--no-first-run",
        "--no-default-browser-check",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1;localhost",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
        "--hide-scrollbars",
        "--window-size=1200,800",
        "--remote-debugging-pipe",
    ];

    /// The Chromium binary, if installed.
    pub(crate) fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
            .find(|p| p.is_file())
    }

    /// A headless Chromium and one attached page; killed on drop.
    pub(crate) struct Chromium {
        child: Child,
        dir: PathBuf,
        to: File,
        from: mpsc::Receiver<Value>,
        next: u64,
        session: String,
    }

    impl Drop for Chromium {
        fn drop(&mut self) {
            // Its helper processes exit with it; in the test's own PID namespace, the kernel
            // ends whatever is left when the test exits.
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Chromium {
        /// Starts `bin` headless and attaches to its page.
        pub(crate) fn launch(bin: &Path) -> Result<Self, String> {
            let dir = std::env::temp_dir().join(format!(
                "thr-dashboard-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let (fifo_in, fifo_out) = (dir.join("cdp-in"), dir.join("cdp-out"));
            let made = Command::new("mkfifo")
                .arg(&fifo_in)
                .arg(&fifo_out)
                .status()
                .map_err(|e| e.to_string())?;
            if !made.success() {
                return Err("mkfifo failed".into());
            }
            let log = File::create(dir.join("chromium.log")).map_err(|e| e.to_string())?;
            let child = Command::new("sh")
                .arg("-c")
                .arg(r#"exec "$0" "$@" 3<"$THR_CDP_IN" 4>"$THR_CDP_OUT""#)
                .arg(bin)
                .args(FLAGS)
                .arg(format!("--user-data-dir={}", dir.join("profile").display()))
                .arg("about:blank")
                .env("THR_CDP_IN", &fifo_in)
                .env("THR_CDP_OUT", &fifo_out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| e.to_string())?;
            // Read-write: opening never blocks, whether or not Chromium has opened its end.
            let to = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo_in)
                .map_err(|e| e.to_string())?;
            let (tx, from) = mpsc::channel();
            std::thread::spawn(move || {
                // Blocks until Chromium opens its end; ends at EOF, when it exits.
                let Ok(mut out) = File::open(&fifo_out) else {
                    return;
                };
                let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
                while let Ok(n) = out.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.iter().position(|&b| b == 0) {
                        let msg: Vec<u8> = buf.drain(..=end).collect();
                        if let Ok(v) = serde_json::from_slice(&msg[..end]) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            let mut c = Self {
                child,
                dir,
                to,
                from,
                next: 0,
                session: String::new(),
            };
            let targets = c.browser_call("Target.getTargets", json!({}));
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["targetId"].as_str())
                .ok_or_else(|| format!("no page target: {targets}"))?
                .to_owned();
            let attached = c.browser_call(
                "Target.attachToTarget",
                json!({"targetId": page, "flatten": true}),
            );
            c.session = attached["sessionId"]
                .as_str()
                .ok_or_else(|| format!("not attached: {attached}"))?
                .to_owned();
            c.call("Page.enable", json!({}));
            Ok(c)
        }

        fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
            match self.try_send(method, params, session) {
                Ok(v) => v,
                Err(e) => panic!("{method}: {e}"),
            }
        }

        /// A command; its result, or the protocol's error.
        fn try_send(&mut self, method: &str, params: Value, session: bool) -> Result<Value, Value> {
            self.next += 1;
            let id = self.next;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if session {
                msg["sessionId"] = Value::from(self.session.clone());
            }
            let mut bytes = msg.to_string().into_bytes();
            bytes.push(0);
            self.to.write_all(&bytes).expect("write to chromium");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let v = self
                    .from
                    .recv_timeout(left)
                    .unwrap_or_else(|e| panic!("{method}: no answer from chromium ({e})"));
                if v["id"] == id {
                    return match v.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(v["result"].clone()),
                    };
                }
            }
        }

        fn browser_call(&mut self, method: &str, params: Value) -> Value {
            self.send(method, params, false)
        }

        /// A command to the page.
        pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
            self.send(method, params, true)
        }

        /// Evaluates `expr` in the page (awaiting a promise); its value.
        pub(crate) fn eval(&mut self, expr: &str) -> Value {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            );
            r["result"]["value"].clone()
        }

        /// Waits `d` between polls, dropping the events Chromium sends meanwhile (no command
        /// is outstanding).
        fn idle(&self, d: Duration) {
            let deadline = Instant::now() + d;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if self.from.recv_timeout(left).is_err() {
                    return;
                }
            }
        }

        /// Polls `expr` until it is `true` (at most `limit`).
        pub(crate) fn wait_for(&mut self, expr: &str, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            let guarded = format!(
                "(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()"
            );
            while Instant::now() < deadline {
                if self.eval(&guarded) == Value::Bool(true) {
                    return true;
                }
                self.idle(Duration::from_millis(50));
            }
            false
        }

        /// The document's HTML, read through the DOM domain (works with scripts off);
        /// `None` while a navigation replaces the document.
        pub(crate) fn try_outer_html(&mut self) -> Option<String> {
            let doc = self
                .try_send("DOM.getDocument", json!({"depth": 0}), true)
                .ok()?;
            let root = doc["root"]["nodeId"].clone();
            let h = self
                .try_send("DOM.getOuterHTML", json!({"nodeId": root}), true)
                .ok()?;
            h["outerHTML"].as_str().map(str::to_owned)
        }

        /// The document's HTML.
        pub(crate) fn outer_html(&mut self) -> String {
            self.try_outer_html().expect("the document's HTML")
        }

        /// Polls the document's HTML until `cond` holds (at most 10 s).
        pub(crate) fn wait_dom(&mut self, cond: impl Fn(&str) -> bool) -> bool {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if self.try_outer_html().is_some_and(|h| cond(&h)) {
                    return true;
                }
                self.idle(Duration::from_millis(50));
            }
            false
        }

        /// Focuses the element `selector` matches (through the DOM domain).
        pub(crate) fn focus(&mut self, selector: &str) {
            let doc = self.call("DOM.getDocument", json!({"depth": 0}));
            let root = doc["root"]["nodeId"].clone();
            let node = self.call(
                "DOM.querySelector",
                json!({"nodeId": root, "selector": selector}),
            );
            self.call("DOM.focus", json!({"nodeId": node["nodeId"]}));
        }

        /// Presses Enter in the focused element (submits its form).
        pub(crate) fn press_enter(&mut self) {
            for kind in ["keyDown", "keyUp"] {
                self.call(
                    "Input.dispatchKeyEvent",
                    json!({"type": kind, "key": "Enter", "code": "Enter",
                           "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
                           "text": if kind == "keyDown" { "\r" } else { "" }}),
                );
            }
        }

        /// A PNG of the whole page, 1200 px wide.
        pub(crate) fn screenshot(&mut self) -> Vec<u8> {
            let height = self
                .eval("Math.ceil(document.documentElement.scrollHeight)")
                .as_u64()
                .unwrap_or(800)
                .clamp(300, 2000);
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            );
            let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
            base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap_or(""))
                .expect("base64 PNG")
        }
    }
}
