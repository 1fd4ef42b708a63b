//! The server-rendered page: the login form, and (for a caller with the key) the whole
//! table with a static SVG timeline per deployment, so the page works with JavaScript off.
//! The page's script (`app.js`) redraws the same structure from the JSON on every poll.
//!
//! Every text is HTML-escaped; nothing is inline (no `style` attributes, no inline script),
//! so the strict Content-Security-Policy holds.

use std::fmt::Write as _;

use super::model::{Dashboard, DeploymentView, Point, RouteView};
use super::{APP_CSS, APP_JS, DATA, PAGE};

/// `s` escaped for HTML text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page. `data`: the table, for a caller who sent the key (else only the login form);
/// `login_error`: a message above the form (a wrong key), never quoting input.
pub(crate) fn page(data: Option<&Dashboard>, login_error: Option<&str>) -> String {
    let authed = data.is_some();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Deployment health</title>
<link rel="stylesheet" href="{APP_CSS}">
<script src="{APP_JS}" defer></script>
</head>
<body data-authed="{authed}" data-page="{PAGE}" data-data="{DATA}">
<header>
<h1>Deployment health</h1>
<span id="status" class="status">{status}</span>
<button id="logout" type="button" hidden>Forget key</button>
</header>
<noscript><p class="note">JavaScript is off: this page does not refresh itself. {noscript}</p></noscript>
<section id="login"{login_hidden}>
<form id="login-form" method="post" action="{PAGE}" autocomplete="off">
<label for="key">Master key</label>
<input id="key" name="key" type="password" autocomplete="off" spellcheck="false" required>
<button type="submit">Open</button>
</form>
<p id="login-error" class="error"{error_hidden}>{error}</p>
<p class="hint">The key stays in this tab (<code>sessionStorage</code>) and is sent as an
<code>Authorization</code> header; it never goes into the address.</p>
</section>
<main id="dash" data-rendered-by="server">
"#,
        status = if authed { "rendered by the server" } else { "" },
        noscript = if authed {
            "Send the form again (reload and resubmit) for fresh data."
        } else {
            "Enter the key: the form posts it and the gateway answers with the table (no cookie is set, nothing goes into the address); send it again for fresh data."
        },
        login_hidden = if authed { " hidden" } else { "" },
        error_hidden = if login_error.is_some() { "" } else { " hidden" },
        error = escape(login_error.unwrap_or("")),
    );
    if let Some(d) = data {
        body(&mut h, d);
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn body(h: &mut String, d: &Dashboard) {
    for n in &d.notices {
        let _ = writeln!(h, r#"<p class="banner banner-notice">{}</p>"#, escape(n));
    }
    let rows: Vec<&DeploymentView> = d.rows().collect();
    let count = |s: &str| rows.iter().filter(|r| r.state == s).count();
    let _ = writeln!(
        h,
        r#"<p class="summary">{} routes, {} deployments: {} healthy, {} unhealthy, {} unchecked, {} unsupported, {} stale · generated <time datetime="{t}">{t}</time> · timeline: last {}</p>"#,
        d.routes.len(),
        rows.len(),
        count("healthy"),
        count("unhealthy"),
        count("unchecked"),
        count("unsupported"),
        count("stale"),
        span(d.timeline_seconds),
        t = escape(&d.generated_at),
    );
    for r in &d.routes {
        route(h, r, d);
    }
}

fn span(secs: f64) -> String {
    if secs >= 3600.0 {
        "hour".to_owned()
    } else if secs >= 120.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

fn route(h: &mut String, r: &RouteView, d: &Dashboard) {
    let _ = writeln!(
        h,
        r#"<section class="route" data-route="{n}">
<h2>{n} <span class="count">{} of {} passing</span></h2>"#,
        r.passing,
        r.routable,
        n = escape(&r.name),
    );
    if let Some(b) = &r.banner {
        let _ = writeln!(
            h,
            r#"<p class="banner banner-{}" role="alert">{}</p>"#,
            b.kind,
            escape(&b.message)
        );
    }
    h.push_str(
        "<table>\n<thead><tr><th>Deployment</th><th>State</th><th>Why</th>\
         <th class=\"num\">Req/s</th><th class=\"num\">Errors</th>\
         <th class=\"num\">Last probe</th><th>Probes</th></tr></thead>\n<tbody>\n",
    );
    for row in &r.deployments {
        deployment(h, row, d);
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

fn deployment(h: &mut String, r: &DeploymentView, d: &Dashboard) {
    let _ = write!(
        h,
        r#"<tr data-model-id="{id}" data-state="{state}"><td><div class="id">{id}</div><div class="model">{model}</div>"#,
        id = escape(&r.model_id),
        state = r.state,
        model = escape(&r.model),
    );
    if let Some(b) = &r.api_base {
        let _ = write!(h, r#"<div class="base">{}</div>"#, escape(b));
    }
    let _ = write!(
        h,
        r#"</td><td><span class="badge state-{s}">{s}</span>"#,
        s = r.state
    );
    if let Some(c) = r.cooldown_seconds {
        let _ = write!(
            h,
            r#" <span class="badge out-cooldown" data-out="cooldown">cooling down · {c:.1} s left</span>"#
        );
    }
    if let Some(e) = r.ejected_seconds {
        let _ = write!(
            h,
            r#" <span class="badge out-ejected" data-out="ejected">ejected · {e:.1} s left</span>"#
        );
    }
    let why = match (&r.reason, r.status_code) {
        (Some(w), Some(c)) => format!("{} ({c})", escape(w)),
        (Some(w), None) => escape(w),
        (None, _) => String::new(),
    };
    let rate = r
        .error_rate
        .map_or("–".to_owned(), |e| format!("{:.1} %", e * 100.0));
    let probe = match (r.last_probe_ms, r.checked_seconds_ago) {
        (Some(ms), Some(ago)) => format!("{ms:.1} ms <small>{ago:.0} s ago</small>"),
        (Some(ms), None) => format!("{ms:.1} ms"),
        (None, Some(ago)) => format!("– <small>{ago:.0} s ago</small>"),
        (None, None) => "–".to_owned(),
    };
    let _ = write!(
        h,
        r#"</td><td class="reason">{why}</td><td class="num">{:.2}</td><td class="num">{rate}</td><td class="num">{probe}</td><td class="timeline">"#,
        r.requests_per_second
    );
    timeline(h, &r.timeline, d);
    h.push_str("</td></tr>\n");
}

/// The strip's size in SVG user units.
const W: f64 = 300.0;
const H: f64 = 20.0;

fn timeline(h: &mut String, points: &[Point], d: &Dashboard) {
    let _ = write!(
        h,
        r#"<svg class="strip" viewBox="0 0 {W} {H}" width="{W}" height="{H}" preserveAspectRatio="none" role="img" aria-label="{} probes"><rect class="tl-bg" x="0" y="0" width="{W}" height="{H}"></rect>"#,
        points.len()
    );
    let span_ms = d.timeline_seconds * 1e3;
    let start = d.now_ms as f64 - span_ms;
    let x = |t: u64| (((t as f64 - start) / span_ms) * W).clamp(0.0, W - 2.0);
    let mut prev: Option<bool> = None;
    for p in points {
        let px = x(p.t);
        if prev.is_some_and(|was| was != p.ok) {
            let _ = write!(
                h,
                r#"<line class="tl-change" x1="{px:.1}" x2="{px:.1}" y1="0" y2="{H}"><title>turned {}</title></line>"#,
                if p.ok { "healthy" } else { "unhealthy" }
            );
        }
        prev = Some(p.ok);
        let what = match (&p.error, p.status) {
            _ if p.ok => "passed".to_owned(),
            (Some(e), _) => format!("failed: {}", escape(e)),
            (None, Some(s)) => format!("failed ({s})"),
            (None, None) => "failed".to_owned(),
        };
        let _ = write!(
            h,
            r#"<rect class="tl-probe {}" x="{px:.1}" y="3" width="2" height="{}"><title>{} · {what} · {:.1} ms</title></rect>"#,
            if p.ok { "tl-ok" } else { "tl-fail" },
            H - 6.0,
            escape(&super::super::wire::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(p.t)
            )),
            p.ms
        );
    }
    h.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn the_login_page_carries_no_data() {
        let p = page(None, Some("<b>wrong</b>"));
        assert!(p.contains(r#"data-authed="false""#));
        assert!(p.contains("&lt;b&gt;wrong&lt;/b&gt;"));
        assert!(!p.contains("<table>"));
        assert!(p.contains("<noscript>"));
        assert!(p.contains(r#"method="post""#));
    }
}
