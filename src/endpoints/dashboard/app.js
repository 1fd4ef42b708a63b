// The health dashboard's script (served as /health/dashboard/app.js, embedded in the binary).
//
// It logs in with the master key (kept in this tab's sessionStorage, sent only as an
// `Authorization: Bearer` header, never in an address), polls the dashboard's JSON every few
// seconds and redraws the routes, their deployments and the timeline strips. It builds the
// page with DOM calls and sets every text with textContent: nothing the server sends is
// ever parsed as HTML. The structure (class names, data- attributes) is the one the server
// renders for browsers without JavaScript.
'use strict';

(function () {
  const STORE = 'thr-dashboard-key';
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 300;
  const H = 20;
  const body = document.body;
  const DATA = body.dataset.data;
  const byId = (id) => document.getElementById(id);
  const loginBox = byId('login');
  const form = byId('login-form');
  const input = byId('key');
  const loginError = byId('login-error');
  const dash = byId('dash');
  const status = byId('status');
  const logout = byId('logout');
  let timer = null;
  let pollMs = 3000;

  function storedKey() {
    try {
      return sessionStorage.getItem(STORE);
    } catch (e) {
      return null;
    }
  }

  function forgetKey() {
    try {
      sessionStorage.removeItem(STORE);
    } catch (e) {
      // Storage disabled: nothing was stored.
    }
  }

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = cls ? 'status ' + cls : 'status';
  }

  function stop() {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  }

  function schedule() {
    stop();
    timer = setTimeout(poll, pollMs);
  }

  function showLogin(message) {
    stop();
    loginBox.hidden = false;
    logout.hidden = true;
    loginError.textContent = message || '';
    loginError.hidden = !message;
    input.focus();
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    input.value = '';
    if (!key) {
      return;
    }
    try {
      sessionStorage.setItem(STORE, key);
    } catch (e) {
      showLogin('This browser refuses sessionStorage; turn JavaScript off to use the plain form.');
      return;
    }
    loginError.hidden = true;
    setStatus('loading…');
    poll();
  });

  logout.addEventListener('click', () => {
    forgetKey();
    dash.replaceChildren();
    dash.dataset.renderedBy = 'none';
    setStatus('');
    showLogin('');
  });

  async function poll() {
    stop();
    const key = storedKey();
    const headers = { Accept: 'application/json' };
    if (key) {
      headers.Authorization = 'Bearer ' + key;
    }
    let resp;
    try {
      resp = await fetch(DATA, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    } catch (e) {
      setStatus('the gateway did not answer: retrying', 'bad');
      schedule();
      return;
    }
    if (resp.status === 401) {
      forgetKey();
      if (key) {
        dash.replaceChildren();
        dash.dataset.renderedBy = 'none';
        setStatus('');
        showLogin('That key was not accepted.');
      } else {
        // A table the server rendered for a request that carried the key (curl, a proxy
        // adding the header) stays; live updates need the key here.
        setStatus(body.dataset.authed === 'true' ? 'not live: enter the key for live updates' : '');
        showLogin('');
      }
      return;
    }
    if (!resp.ok) {
      setStatus('the gateway answered ' + resp.status + ': retrying', 'bad');
      schedule();
      return;
    }
    let data;
    try {
      data = await resp.json();
    } catch (e) {
      setStatus('the answer was not JSON: retrying', 'bad');
      schedule();
      return;
    }
    loginBox.hidden = true;
    logout.hidden = !key;
    render(data);
    pollMs = Math.max(1, data.poll_seconds || 3) * 1000;
    setStatus('live · updated ' + new Date(data.now_ms).toLocaleTimeString() +
      ' · every ' + pollMs / 1000 + ' s', 'live');
    schedule();
  }

  // === rendering ===

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) {
        e.setAttribute(k, String(v));
      }
    }
    for (const c of children) {
      if (c !== null && c !== undefined) {
        e.append(c);
      }
    }
    return e;
  }

  function svg(tag, attrs, title) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) {
      e.setAttribute(k, String(v));
    }
    if (title) {
      const t = document.createElementNS(SVG, 'title');
      t.textContent = title;
      e.append(t);
    }
    return e;
  }

  function span(secs) {
    if (secs >= 3600) {
      return 'hour';
    }
    return secs >= 120 ? Math.round(secs / 60) + ' min' : Math.round(secs) + ' s';
  }

  function ago(secs) {
    if (secs < 120) {
      return Math.round(secs) + ' s ago';
    }
    return secs < 7200 ? Math.round(secs / 60) + ' min ago' : Math.round(secs / 3600) + ' h ago';
  }

  function render(data) {
    const nodes = [];
    for (const n of data.notices || []) {
      nodes.push(el('p', { class: 'banner banner-notice' }, n));
    }
    const rows = data.routes.flatMap((r) => r.deployments);
    const count = (s) => rows.filter((d) => d.state === s).length;
    nodes.push(el('p', { class: 'summary' },
      data.routes.length + ' routes, ' + rows.length + ' deployments: ' +
      count('healthy') + ' healthy, ' + count('unhealthy') + ' unhealthy, ' +
      count('unchecked') + ' unchecked, ' + count('unsupported') + ' unsupported, ' +
      count('stale') + ' stale · generated ',
      el('time', { datetime: data.generated_at }, new Date(data.now_ms).toLocaleTimeString()),
      ' · timeline: last ' + span(data.timeline_seconds)));
    for (const r of data.routes) {
      nodes.push(route(r, data));
    }
    dash.replaceChildren(...nodes);
    dash.dataset.renderedBy = 'js';
    dash.dataset.updated = String(data.now_ms);
    const alarm = data.routes.some((r) => r.banner) || count('unhealthy') > 0;
    document.title = (alarm ? '⚠ ' : '') + 'Deployment health';
  }

  function route(r, data) {
    const section = el('section', { class: 'route', 'data-route': r.name },
      el('h2', {}, r.name + ' ', el('span', { class: 'count' }, r.passing + ' of ' + r.routable + ' passing')));
    if (r.banner) {
      section.append(el('p', { class: 'banner banner-' + r.banner.kind, role: 'alert' }, r.banner.message));
    }
    const head = el('tr', {}, ...['Deployment', 'State', 'Why', 'Req/s', 'Errors', 'Last probe', 'Probes']
      .map((t, i) => el('th', i >= 3 && i <= 5 ? { class: 'num' } : {}, t)));
    const tbody = el('tbody', {}, ...r.deployments.map((d) => deployment(d, data)));
    section.append(el('table', {}, el('thead', {}, head), tbody));
    return section;
  }

  function deployment(d, data) {
    const who = el('td', {}, el('div', { class: 'id' }, d.model_id), el('div', { class: 'model' }, d.model));
    if (d.api_base) {
      who.append(el('div', { class: 'base' }, d.api_base));
    }
    const state = el('td', {}, el('span', { class: 'badge state-' + d.state }, d.state));
    if (d.cooldown_seconds !== null) {
      state.append(' ', el('span', { class: 'badge out-cooldown', 'data-out': 'cooldown' },
        'cooling down · ' + d.cooldown_seconds.toFixed(1) + ' s left'));
    }
    if (d.ejected_seconds !== null) {
      state.append(' ', el('span', { class: 'badge out-ejected', 'data-out': 'ejected' },
        'ejected · ' + d.ejected_seconds.toFixed(1) + ' s left'));
    }
    let why = d.reason || '';
    if (d.reason && d.status_code !== null) {
      why += ' (' + d.status_code + ')';
    }
    const rate = d.error_rate === null ? '–' : (d.error_rate * 100).toFixed(1) + ' %';
    const probe = el('td', { class: 'num' }, d.last_probe_ms === null ? '–' : d.last_probe_ms.toFixed(1) + ' ms');
    if (d.checked_seconds_ago !== null) {
      probe.append(' ', el('small', {}, ago(d.checked_seconds_ago)));
    }
    return el('tr', { 'data-model-id': d.model_id, 'data-state': d.state },
      who, state, el('td', { class: 'reason' }, why),
      el('td', { class: 'num' }, d.requests_per_second.toFixed(2)),
      el('td', { class: 'num' }, rate), probe,
      el('td', { class: 'timeline' }, strip(d.timeline, data)));
  }

  // One strip: a tick per probe (green passed, red failed) across the timeline span, and
  // a line where the result turned; each with a tooltip.
  function strip(points, data) {
    const s = svg('svg', {
      class: 'strip', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, preserveAspectRatio: 'none',
      role: 'img', 'aria-label': points.length + ' probes', 'data-drawn-by': 'js',
    });
    s.append(svg('rect', { class: 'tl-bg', x: 0, y: 0, width: W, height: H }));
    const spanMs = data.timeline_seconds * 1000;
    const start = data.now_ms - spanMs;
    const x = (t) => Math.min(W - 2, Math.max(0, ((t - start) / spanMs) * W)).toFixed(1);
    let prev = null;
    for (const p of points) {
      const px = x(p.t);
      if (prev !== null && prev !== p.ok) {
        s.append(svg('line', { class: 'tl-change', x1: px, x2: px, y1: 0, y2: H },
          'turned ' + (p.ok ? 'healthy' : 'unhealthy') + ' at ' + new Date(p.t).toLocaleTimeString()));
      }
      prev = p.ok;
      let what = 'passed';
      if (!p.ok) {
        what = p.error ? 'failed: ' + p.error : p.status !== null ? 'failed (' + p.status + ')' : 'failed';
      }
      s.append(svg('rect', { class: 'tl-probe ' + (p.ok ? 'tl-ok' : 'tl-fail'), x: px, y: 3, width: 2, height: H - 6 },
        new Date(p.t).toLocaleTimeString() + ' · ' + what + ' · ' + p.ms.toFixed(1) + ' ms'));
    }
    return s;
  }

  // === start ===

  if (storedKey() || body.dataset.authed === 'true') {
    poll();
  } else {
    showLogin('');
  }
})();
