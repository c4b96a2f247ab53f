/* flashsale dashboard: polls the service and draws it; drives the ticket and admin forms.
 *
 * One loop asks GET /api/v1/stats about twice a second; that single answer carries the
 * service rates, the last minute of history and every sale, so each render is a function
 * of the latest answer alone and a reload starts with full charts.  Two polls failing in
 * a row (or the first one) switch the page to "disconnected": a banner, greyed numbers,
 * and retries every second until an answer comes back.
 *
 * Server text (sale names, error messages) is only ever written with textContent.
 * The admin token lives in sessionStorage and nowhere else.
 * Elements are found by data-testid, the same names the end-to-end test reads.
 * Words come from t() (i18n.js); a language switch redraws from the last answer.
 */
'use strict';

const POLL_MS = 500;          // while connected
const RETRY_MS = 1000;        // while disconnected
const HIDDEN_POLL_MS = 5000;  // tab in the background
const TIMEOUT_MS = 2500;      // a stats poll slower than this counts as failed
const TOKEN_KEY = 'flashsale.adminToken';
const CHART_SPAN_S = 60;

const STATUSES = ['upcoming', 'open', 'sold_out', 'ended'];
const statusLabel = (s) => (STATUSES.includes(s) ? t('status.' + s) : s);
const ORDER_STATUSES = ['pending', 'confirmed', 'paid', 'created'];
const orderStatusLabel = (s) => (ORDER_STATUSES.includes(s) ? t('order.' + s) : s);
/* Titles for the error codes the dashboard expects; the server's message is shown as sent. */
const ERROR_TITLED = ['sold_out', 'limit_exceeded', 'sale_not_started', 'sale_ended', 'overloaded',
  'rate_limited', 'invalid_request', 'unsupported_media_type', 'not_found', 'unauthorized', 'network'];
const errorTitle = (code) => (ERROR_TITLED.includes(code) ? t('error.' + code) : null);
/* Counts of a sale's orders by payment state; shown when present and the sale has a
 * payment window (or any of them is not 0). */
const OPTIONAL_COUNTS = ['pending', 'paid', 'expired', 'cancelled'];

const tid = (name, root = document) => root.querySelector(`[data-testid="${name}"]`);

const state = {
  online: null,         // null until the first answer or failure
  failures: 0,          // consecutive failed polls
  lastOkAt: 0,          // Date.now() of the last good poll
  polling: false,
  pollAgain: false,
  timer: 0,
  cards: new Map(),     // sale id -> card element
  sales: [],
  wantSale: null,       // sale id to select once it shows up (just created)
  last: null,           // the last stats answer, redrawn when the language changes
};

/* ---- formatting ------------------------------------------------------------------ */

const nf0 = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

function fmtCount(n) { return typeof n === 'number' ? nf0.format(n) : '–'; }
function fmtRate(n) {
  if (typeof n !== 'number') return '–';
  return (Math.abs(n) >= 100 ? nf0 : nf1).format(n);
}
function fmtMs(ms) {
  if (typeof ms !== 'number') return '–';
  if (ms === 0) return '0 ms';
  if (ms >= 1000) return nf1.format(ms / 1000) + ' s';
  if (ms >= 10) return nf0.format(Math.round(ms)) + ' ms';
  if (ms >= 1) return nf1.format(ms) + ' ms';
  return ms.toFixed(2) + ' ms';
}
function fmtDuration(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '–';
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
  if (d) return t('dur.d', d, h);
  if (h) return t('dur.h', h, m);
  if (m) return sec ? t('dur.ms', m, sec) : t('dur.m', m);
  return t('dur.s', sec);
}
function fmtClock(unix) {
  const d = new Date(unix * 1000), now = new Date();
  const time = d.toLocaleTimeString(i18nLocale(), { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return time;
  return d.toLocaleDateString(i18nLocale(), { month: 'short', day: 'numeric' }) + ' ' + time;
}
function saleWhen(s) {
  const now = Date.now() / 1000;
  const parts = [];
  if (s.status === 'upcoming' && s.starts_at != null) {
    parts.push(t('when.opensIn', fmtDuration(s.starts_at - now), fmtClock(s.starts_at)));
  } else if (s.starts_at != null && s.starts_at > 0) {
    parts.push(t('when.opened', fmtClock(s.starts_at)));
  }
  if (s.ends_at != null) {
    parts.push(s.ends_at > now ? t('when.closesIn', fmtDuration(s.ends_at - now), fmtClock(s.ends_at))
                               : t('when.closed', fmtClock(s.ends_at)));
  } else if (s.status !== 'ended') {
    parts.push(t('when.noEnd'));
  }
  if (s.payment_window > 0) parts.push(t('when.payWithin', fmtDuration(s.payment_window)));
  return parts.join(' · ');
}
function clockNow() { return new Date().toLocaleTimeString(i18nLocale(), { hour12: false }); }

/* ---- small DOM helpers ----------------------------------------------------------- */

function setText(el, value) {
  const v = String(value);
  if (el.textContent !== v) el.textContent = v;
}
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'testid') node.dataset.testid = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}
function randomUserId() {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return 'web-' + Array.from(bytes, (b) => (b % 36).toString(36)).join('');
}

/* ---- HTTP ------------------------------------------------------------------------ */

/* Resolves to {status, data, retryAfter}; status 0 when no answer came. Never throws. */
async function api(method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = 'Bearer ' + token;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10000);
  try {
    const res = await fetch(path, {
      method, headers, cache: 'no-store', signal: ctl.signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    return { status: res.status, data, retryAfter: res.headers.get('Retry-After') };
  } catch (err) {
    return { status: 0, data: { error: 'network', message: t(err.name === 'AbortError' ? 'error.timeout' : 'error.unreachable') } };
  } finally {
    clearTimeout(timer);
  }
}

/* ---- polling and connection state ------------------------------------------------ */

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, ms);
}

/* Poll now, or right after the poll in flight (after a purchase or an admin action). */
function pollSoon() {
  if (state.polling) state.pollAgain = true;
  else poll();
}

async function poll() {
  clearTimeout(state.timer);
  state.polling = true;
  let data = null;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const res = await fetch('/api/v1/stats', { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
    if (res.ok) data = await res.json();
  } catch {
    data = null;
  } finally {
    clearTimeout(timer);
  }
  state.polling = false;
  if (data) {
    state.failures = 0;
    state.lastOkAt = Date.now();
    setOnline(true);
    try {
      state.last = data;
      render(data);
    } catch (err) {
      console.error('flashsale dashboard: render failed', err);
    }
  } else {
    state.failures++;
    if (state.online !== true || state.failures >= 2) setOnline(false);
  }
  const next = state.pollAgain ? 0 : document.hidden ? HIDDEN_POLL_MS : data ? POLL_MS : RETRY_MS;
  state.pollAgain = false;
  schedule(next);
}

function setOnline(online) {
  if (state.online === online) return;
  state.online = online;
  document.body.classList.remove('connecting');
  document.body.classList.toggle('offline', !online);
  const pill = tid('conn-status');
  pill.dataset.state = online ? 'live' : 'offline';
  connText();
  tid('conn-banner').hidden = online;
  tickOffline();
}

/* The connection pill's words; "connecting…" stays the page's own until the first poll. */
function connText() {
  const text = tid('conn-status').querySelector('.conn-text');
  if (state.online === null) return;
  delete text.dataset.i18n;
  setText(text, t(state.online ? 'conn.live' : 'conn.offline'));
}

/* Once a second: how stale the page is, said in the banner and the footer. */
function tickOffline() {
  if (state.online) return;
  const ago = state.lastOkAt ? t('offline.ago', fmtDuration((Date.now() - state.lastOkAt) / 1000)) : t('offline.noData');
  setText(tid('conn-detail'), t('offline.detail', ago, state.failures));
  if (state.lastOkAt) setText(tid('last-update'), t('stale', ago));
}

/* ---- rendering ------------------------------------------------------------------- */

function render(d) {
  const unsafe = d.inventory === 'unsafe';
  const inv = tid('stat-inventory');
  setText(inv.querySelector('b'), d.inventory ?? '–');
  inv.classList.toggle('chip-bad', unsafe);
  setText(tid('stat-durability').querySelector('b'), d.durability ?? '–');
  tid('stat-store').hidden = !d.store;
  if (d.store) setText(tid('stat-store').querySelector('b'), d.store);
  tid('unsafe-banner').hidden = !unsafe;
  document.body.classList.toggle('unsafe', unsafe);
  setText(tid('stat-uptime'), fmtDuration(d.uptime_s));

  const n = d.totals || {};
  setText(tid('stat-requests'), fmtRate(d.requests_per_s));
  setText(tid('stat-orders'), fmtRate(d.orders_per_s));
  setText(tid('stat-soldout'), fmtRate(d.sold_out_per_s));
  setText(tid('stat-overloaded'), fmtRate(d.overloaded_per_s));
  tid('stat-overloaded').classList.toggle('warn', d.overloaded_per_s > 0);
  setText(tid('total-requests'), t('stats.total', fmtCount(n.requests)));
  setText(tid('total-orders'), t('stats.total', fmtCount(n.orders)));
  setText(tid('total-soldout'), t('stats.total', fmtCount(n.sold_out)));
  setText(tid('total-overloaded'), t('stats.overloaded', fmtCount(n.overloaded)) + (n.rate_limited ? t('stats.rateLimited', fmtCount(n.rate_limited)) : ''));
  setText(tid('stat-queue'), fmtCount(d.queue_depth));
  setText(tid('stat-queue-sub'), t('stats.queueOf', fmtCount(d.queue_capacity)) + (d.store_backlog ? t('stats.toStore', fmtCount(d.store_backlog)) : ''));
  // The server reports 0 when the last second had no purchase to time; say so instead
  // of claiming a 0 ms purchase.
  const timed = d.latency_p99_ms > 0;
  setText(tid('stat-p50'), timed ? fmtMs(d.latency_p50_ms) : '–');
  setText(tid('stat-p99'), timed ? fmtMs(d.latency_p99_ms) : '–');
  for (const id of ['stat-p50-sub', 'stat-p99-sub']) setText(tid(id), t(timed ? 'stats.perPurchase' : 'stats.noPurchases'));
  setText(tid('total-units'), fmtCount(n.units_sold));
  setText(tid('total-limit'), t('stats.overLimit', fmtCount(n.limit_exceeded)));

  const hist = Array.isArray(d.history) ? d.history : [];
  drawChart(tid('chart-requests'), hist, 'requests_per_s', 'orders_per_s', fmtRate);
  drawChart(tid('chart-p99'), hist, 'p99_ms', 'p50_ms', fmtMs, true);

  renderSales(Array.isArray(d.sales) ? d.sales : []);
  delete tid('last-update').dataset.i18n;
  setText(tid('last-update'), t('updated', clockNow()));
}

function renderSales(sales) {
  state.sales = sales;
  const grid = tid('sales');
  const seen = new Set();
  sales.forEach((s, i) => {
    seen.add(s.id);
    let card = state.cards.get(s.id);
    if (!card) {
      card = document.getElementById('sale-template').content.firstElementChild.cloneNode(true);
      i18nApply(card);
      state.cards.set(s.id, card);
    }
    updateCard(card, s);
    if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
  });
  for (const [id, card] of state.cards) {
    if (!seen.has(id)) { card.remove(); state.cards.delete(id); }
  }
  tid('sales-empty').hidden = sales.length > 0;
  const open = sales.filter((s) => s.status === 'open').length;
  setText(tid('sales-count'), sales.length ? t('sales.count', sales.length, open) : '');
  syncSelect(tid('buy-sale'), sales, true);
  syncSelect(tid('admin-sale'), sales, false);
  if (sales.some((s) => s.id === state.wantSale)) state.wantSale = null;
}

function updateCard(card, s) {
  card.dataset.saleId = s.id;
  card.dataset.status = s.status;
  setText(tid('sale-name', card), s.name);
  const badge = tid('sale-status', card);
  badge.dataset.status = s.status;
  setText(badge, statusLabel(s.status));

  const total = s.stock_total, left = s.stock_left;
  setText(tid('sale-stock-left', card), fmtCount(left));
  setText(tid('sale-stock-total', card), fmtCount(total));
  const bar = tid('sale-stock-bar', card);
  const pct = total > 0 ? Math.max(0, Math.min(100, (left / total) * 100)) : 0;
  bar.firstElementChild.style.width = pct.toFixed(2) + '%';
  bar.dataset.level = left <= 0 ? 'empty' : pct <= 20 ? 'low' : 'ok';
  bar.setAttribute('aria-valuemax', String(total));
  bar.setAttribute('aria-valuenow', String(Math.max(0, left)));
  bar.setAttribute('aria-valuetext', t('card.bar.text', left, total));
  bar.setAttribute('aria-label', t('card.bar.aria', s.name));

  setText(tid('sale-sold', card), fmtCount(s.sold));
  tid('sale-sold', card).classList.toggle('bad', s.sold > s.stock_total);
  setText(tid('sale-limit', card), t('card.perUser', fmtCount(s.per_user_limit)));
  const facts = card.querySelector('.facts');
  const payments = s.payment_window > 0 || OPTIONAL_COUNTS.some((k) => s[k] > 0);
  for (const key of OPTIONAL_COUNTS) {
    let dd = tid('sale-' + key, card);
    if (!payments || typeof s[key] !== 'number') { if (dd) dd.parentElement.remove(); continue; }
    if (!dd) {
      dd = el('dd', { testid: 'sale-' + key });
      facts.append(el('div', {}, el('dt', { 'data-i18n': 'card.' + key, text: t('card.' + key) }), dd));
    }
    setText(dd, fmtCount(s[key]));
  }

  const over = s.oversold || 0;
  const box = tid('sale-oversold-box', card);
  box.dataset.bad = over !== 0 ? 'true' : 'false';
  card.classList.toggle('sale-oversold', over !== 0);
  setText(tid('sale-oversold', card), fmtCount(over));
  box.setAttribute('aria-label', t('card.oversold.aria', over));
  setText(tid('sale-when', card), `#${s.id} · ${saleWhen(s)}`);
}

/* Keep a <select> of sales current without losing what the user picked. */
function syncSelect(sel, sales, preferOpen) {
  const ids = sales.map((s) => String(s.id));
  const have = Array.from(sel.options, (o) => o.value);
  let chosen = sel.value;
  if (ids.join() !== have.join()) {
    sel.replaceChildren(...sales.map((s) => el('option', { value: String(s.id) })));
  }
  sales.forEach((s, i) => {
    setText(sel.options[i], t('option', s.id, s.name, fmtCount(s.stock_left), s.status === 'open' ? '' : statusLabel(s.status)));
  });
  if (state.wantSale != null && ids.includes(String(state.wantSale))) chosen = String(state.wantSale);
  if (!ids.includes(chosen)) {
    const open = preferOpen && sales.find((s) => s.status === 'open');
    chosen = open ? String(open.id) : ids[0] ?? '';
  }
  if (sel.value !== chosen) sel.value = chosen;
  sel.disabled = sales.length === 0;
}

/* ---- charts: inline SVG, drawn by hand ------------------------------------------- */

const SVG_NS = 'http://www.w3.org/2000/svg';
const W = 600, H = 120, HEAD = 6;

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * 1.0001) return m * p;
  return 10 * p;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/* Paths of one series, broken where seconds are missing from the history (and, for
 * latency, where a second had no purchase to time: the server says 0 there). */
function seriesPaths(points, key, t0, top, zeroIsGap) {
  const runs = [];
  let run = null, prevT = null;
  for (const p of points) {
    const v = Number(p[key]) || 0;
    if (zeroIsGap && v === 0) { run = null; continue; }
    const x = ((p.t - t0) / (CHART_SPAN_S - 1)) * W;
    const y = H - (Math.min(v, top) / top) * (H - HEAD);
    if (!run || p.t - prevT > 1) { run = []; runs.push(run); }
    run.push([x, y]);
    prevT = p.t;
  }
  // A lone second (say one purchase, with quiet seconds around it) becomes a short dash.
  const line = runs.map((r) => (r.length === 1
    ? `M${Math.max(0, r[0][0] - 4).toFixed(1)},${r[0][1].toFixed(1)}H${Math.min(W, r[0][0] + 4).toFixed(1)}`
    : r.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join(''))).join('');
  const area = runs.filter((r) => r.length > 1)
    .map((r) => `M${r[0][0].toFixed(1)},${H}` + r.map(([x, y]) => `L${x.toFixed(1)},${y.toFixed(1)}`).join('') + `L${r[r.length - 1][0].toFixed(1)},${H}Z`)
    .join('');
  return { line, area };
}

function drawChart(fig, history, keyA, keyB, fmt, zeroIsGap = false) {
  const svg = fig.querySelector('svg');
  const tEnd = history.length ? history[history.length - 1].t : 0;
  const t0 = tEnd - (CHART_SPAN_S - 1);
  const points = history.filter((p) => p.t >= t0);
  fig.classList.toggle('chart-empty', points.length === 0);
  let max = 0;
  for (const p of points) max = Math.max(max, Number(p[keyA]) || 0, Number(p[keyB]) || 0);
  const top = niceCeil(max);
  setText(fig.querySelector('.ymax'), fmt(top));
  fig.dataset.points = String(points.length);

  const nodes = [];
  for (const f of [0.25, 0.5, 0.75]) {
    const y = (H - (H - HEAD) * f).toFixed(1);
    nodes.push(svgEl('path', { d: `M0,${y}H${W}`, class: 'grid' }));
  }
  if (points.length) {
    const a = seriesPaths(points, keyA, t0, top, zeroIsGap), b = seriesPaths(points, keyB, t0, top, zeroIsGap);
    nodes.push(svgEl('path', { d: a.area, class: 'area-a' }));
    nodes.push(svgEl('path', { d: b.line, class: 'line-b' }));
    nodes.push(svgEl('path', { d: a.line, class: 'line-a' }));
  }
  svg.replaceChildren(...nodes);
}

/* ---- grab a ticket ---------------------------------------------------------------- */

/* Shows a result in box; draw builds its content and runs again when the language
 * changes, so a result never stays in the other language. */
function showIn(box, draw) {
  box.redraw = draw;
  draw();
  box.hidden = false;
}

/* okTitle() and okLines() build the success view; an error shows the code and the
 * server's message as sent. */
function resultBox(box, r, okTitle, okLines) {
  const at = new Date();
  showIn(box, () => drawResult(box, r, okTitle, okLines, at));
}

function drawResult(box, r, okTitle, okLines, at) {
  const ok = r.status >= 200 && r.status < 300;
  const code = r.data && r.data.error;
  box.dataset.status = String(r.status);
  box.dataset.kind = ok ? 'ok' : r.status === 409 || r.status === 503 || r.status === 429 ? 'warn' : 'err';
  const head = el('p', { class: 'result-head' },
    el('span', { class: 'code', testid: box.dataset.testid + '-code', text: r.status ? String(r.status) : '—' }), ' ');
  const lines = [];
  if (ok) {
    head.append(okTitle());
    lines.push(...okLines());
  } else {
    head.append(el('strong', { text: errorTitle(code) || `HTTP ${r.status}` }));
    if (code) lines.push(el('p', {}, el('code', { testid: box.dataset.testid + '-error', text: code }), ' ', (r.data && r.data.message) || ''));
    if (r.retryAfter) lines.push(el('p', { class: 'muted', text: t('result.retryAfter', r.retryAfter) }));
  }
  lines.push(el('p', { class: 'muted small', text: t('result.at', at.toLocaleTimeString(i18nLocale(), { hour12: false })) }));
  box.replaceChildren(head, ...lines.filter(Boolean));
}

function setupBuy() {
  const form = tid('buy-form'), user = tid('buy-user'), sale = tid('buy-sale'), qty = tid('buy-quantity');
  const button = tid('buy-submit'), box = tid('buy-result');
  user.value = randomUserId();
  tid('buy-newuser').addEventListener('click', () => { user.value = randomUserId(); user.focus(); });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const userId = user.value.trim();
    const quantity = Number.parseInt(qty.value, 10);
    if (!userId) { user.focus(); return localError(box, 'buy.needUser'); }
    if (!sale.value) return localError(box, 'buy.noSale');
    if (!(quantity >= 1)) { qty.focus(); return localError(box, 'buy.needQuantity'); }
    const saleId = sale.value;
    const name = state.sales.find((s) => String(s.id) === saleId)?.name ?? t('buy.saleN', saleId);
    button.disabled = true;
    button.dataset.i18n = 'buy.busy';
    button.textContent = t('buy.busy');
    const t0 = performance.now();
    const r = await api('POST', `/api/v1/sales/${encodeURIComponent(saleId)}/orders`, { user_id: userId, quantity });
    const ms = performance.now() - t0;
    button.disabled = false;
    button.dataset.i18n = 'buy.submit';
    button.textContent = t('buy.submit');
    const o = r.data || {};
    resultBox(box, r,
      () => el('strong', {}, t('buy.order'), ' ', el('span', { testid: 'buy-order-id', text: String(o.order_id) }), ` ${orderStatusLabel(o.status || 'created')}`),
      () => [el('p', { text: t('buy.done', o.quantity ?? quantity, name, o.user_id ?? userId, fmtMs(ms)) }),
        o.expires_at ? el('p', { text: t('buy.payBy', new Date(o.expires_at).toLocaleTimeString(i18nLocale(), { hour12: false })) }) : null]);
    pollSoon();
  });
}

/* A mistake caught before asking the server; key names its text. */
function localError(box, key) {
  box.dataset.status = 'local';
  box.dataset.kind = 'err';
  showIn(box, () => box.replaceChildren(el('p', { class: 'result-head' }, el('strong', { text: t(key) }))));
}

/* ---- admin ------------------------------------------------------------------------ */

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function renderLock() {
  const unlocked = token() !== '';
  tid('admin-tools').disabled = !unlocked;
  tid('admin-token-form').hidden = unlocked;
  tid('admin-state').hidden = !unlocked;
}

function unixFromLocal(value) {
  if (!value) return undefined;
  const ms = new Date(value).getTime(); // "YYYY-MM-DDTHH:MM" without offset is local time
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

function setupAdmin() {
  const box = tid('admin-result');
  renderLock();
  tid('admin-token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = tid('admin-token');
    const value = input.value.trim();
    if (!value) { input.focus(); return; }
    sessionStorage.setItem(TOKEN_KEY, value);
    input.value = '';
    box.hidden = true;
    renderLock();
    tid('create-name').focus();
  });
  tid('admin-lock').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    box.hidden = true;
    renderLock();
    tid('admin-token').focus();
  });

  tid('create-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = tid('create-name').value.trim();
    const stock = Number.parseInt(tid('create-stock').value, 10);
    const limit = Number.parseInt(tid('create-limit').value, 10);
    if (!name) { tid('create-name').focus(); return localError(box, 'create.needName'); }
    if (!(stock >= 1)) { tid('create-stock').focus(); return localError(box, 'create.needStock'); }
    const body = { name, stock };
    if (limit >= 1) body.per_user_limit = limit;
    const window = Number.parseInt(tid('create-window').value, 10);
    if (window > 0) body.payment_window = window;
    const starts = unixFromLocal(tid('create-starts').value), ends = unixFromLocal(tid('create-ends').value);
    if (starts !== undefined) body.starts_at = starts;
    if (ends !== undefined) body.ends_at = ends;
    if (starts !== undefined && ends !== undefined && ends <= starts) {
      tid('create-ends').focus();
      return localError(box, 'create.endAfterStart');
    }
    const button = tid('create-submit');
    button.disabled = true;
    const r = await api('POST', '/api/v1/sales', body, token());
    button.disabled = false;
    const s = r.data || {};
    if (r.status === 201) state.wantSale = s.id;
    resultBox(box, r, () => el('strong', { text: t('create.done', s.id, s.name) }),
      () => [el('p', { text: t('create.what', fmtCount(s.stock_total), fmtCount(s.per_user_limit), statusLabel(s.status)) })]);
    pollSoon();
  });

  tid('reset-submit').addEventListener('click', async () => {
    const id = tid('admin-sale').value;
    if (!id) return localError(box, 'reset.none');
    const r = await api('POST', `/api/v1/sales/${encodeURIComponent(id)}/reset`, undefined, token());
    const s = r.data || {};
    resultBox(box, r, () => el('strong', { text: t('reset.done', s.id, s.name) }),
      () => [el('p', { text: t('reset.what', fmtCount(s.stock_left), fmtCount(s.stock_total)) })]);
    pollSoon();
  });

  tid('audit-submit').addEventListener('click', async () => {
    const id = tid('admin-sale').value;
    if (!id) return localError(box, 'audit.none');
    const r = await api('GET', `/api/v1/sales/${encodeURIComponent(id)}/audit`, undefined, token());
    const a = r.data || {};
    const name = state.sales.find((s) => String(s.id) === id)?.name ?? '';
    resultBox(box, r, () => el('strong', { text: t('audit.done', a.sale_id, name) }), () => (r.status === 200 ? [auditView(a)] : []));
    if (r.status === 200 && a.consistent !== true) box.dataset.kind = 'err';
  });
}

function auditView(a) {
  const yes = a.consistent === true;
  const m = a.memory || {};
  const row = (id, value, bad) => el('div', bad ? { class: 'bad' } : {},
    el('dt', { text: t('audit.' + id) }), el('dd', { testid: 'audit-' + id, text: value }));
  const yn = (b) => (b === true ? t('yes') : b === false ? t('no') : '–');
  return el('div', { class: 'audit', testid: 'audit-result' },
    el('p', { class: 'verdict', 'data-consistent': String(yes) },
      t('audit.consistent'), el('b', { testid: 'audit-consistent', text: yn(a.consistent) })),
    el('dl', { class: 'audit-facts' },
      row('stock-total', fmtCount(a.stock_total)),
      row('stock-left', fmtCount(a.stock_left)),
      row('units-sold', fmtCount(a.units_sold)),
      row('orders', fmtCount(a.orders)),
      row('oversold', fmtCount(a.oversold), a.oversold > 0),
      row('users-over-limit', fmtCount(a.users_over_limit), a.users_over_limit > 0),
      row('memory-agrees', yn(m.agrees), m.agrees === false),
      row('in-flight', fmtCount(m.in_flight)),
      row('inventory', a.inventory ?? '–', a.inventory === 'unsafe')));
}

/* ---- start ------------------------------------------------------------------------ */

/* A language switch: redraw what is on screen from what the page already holds. */
function relabel() {
  connText();
  tickOffline();
  if (state.last) {
    try { render(state.last); } catch (err) { console.error('flashsale dashboard: render failed', err); }
  }
  for (const box of [tid('buy-result'), tid('admin-result')]) if (!box.hidden && box.redraw) box.redraw();
}

function start() {
  i18nStart();
  i18nOnChange(relabel);
  setupBuy();
  setupAdmin();
  setInterval(tickOffline, 1000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) pollSoon(); });
  poll();
}

start();
