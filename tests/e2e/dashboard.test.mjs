// End-to-end test of the live dashboard (static/) in real headless Chromium.
//
//   node tests/e2e/dashboard.test.mjs          (from the repo root, after `npm install` in tests/e2e)
//
// Starts the real binary (build/flashsale, or $FLASHSALE_BIN) on port 0 with a temporary
// database, drives the page with playwright-core pointed at Debian's /usr/bin/chromium, and
// prints one line per check, "PASS e2e:<name>" or "FAIL e2e:<name>: <why>", like the other
// suites; exits 1 if any failed.  Screenshots go to tests/out/.  Every server, the browser
// and the temporary folders are cleaned up on every way out, including the watchdog.
// The page is checked in English (browser locale en-US) and in Chinese (zh-CN): the
// language follows the browser, the toggle switches it, and a reload remembers the choice.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = resolve(ROOT, process.env.FLASHSALE_BIN || 'build/flashsale');
const STATIC = join(ROOT, 'static');
const OUT = join(ROOT, 'tests/out');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOKEN = 'e2e-admin-token';
const WATCHDOG_MS = 600_000; // a hang ends the suite; a slow machine does not
// Liveness deadlines only (nothing here waits for something *not* to happen), so they are
// generous: a machine with a busy loop beside the suite must not fail it.
const STEP_MS = 30_000; // default wait for any one thing the page should show

const t0 = Date.now();
const tmp = mkdtempSync(join(tmpdir(), 'flashsale-e2e-'));
const servers = new Set();
let browser = null;
let passed = 0, failed = 0;

/* ---- reporting -------------------------------------------------------------------- */

const oneLine = (s) => String(s).split('\n').map((l) => l.trim()).filter(Boolean).slice(0, 2).join(' | ').slice(0, 300);

/* Runs one named check; a thrown error is its FAIL reason.  Returns whether it passed. */
async function check(name, fn) {
  try {
    await fn();
    console.log(`PASS e2e:${name}`);
    passed++;
    return true;
  } catch (err) {
    console.log(`FAIL e2e:${name}: ${oneLine(err && err.message ? err.message : err)}`);
    failed++;
    return false;
  }
}

function assert(cond, message) { if (!cond) throw new Error(message); }

/* Retries fn until it returns a truthy value; fails with the last answer seen. */
async function eventually(what, fn, timeoutMs = STEP_MS) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > end) throw new Error(`${what} (after ${timeoutMs} ms; last: ${oneLine(JSON.stringify(last))})`);
    await sleep(150);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- the server --------------------------------------------------------------------- */

/* Starts build/flashsale; resolves once it logged its port.  port 0 = any free port. */
function startServer({ dir, port = 0, inventory = 'atomic', demoStock = 20 }) {
  mkdirSync(dir, { recursive: true });
  const args = ['--port', String(port), '--db', join(dir, 'flashsale.db'), '--admin-token', TOKEN,
    '--static', STATIC, '--demo-stock', String(demoStock), '--inventory', inventory];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const srv = { proc, dir, inventory, port: 0, url: '', log: '', exited: false };
  servers.add(srv);
  proc.stderr.setEncoding('utf8');
  return new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => rejectStart(new Error(`server did not say "listening" in 60 s: ${srv.log.slice(-300)}`)), 60_000);
    proc.stderr.on('data', (chunk) => {
      srv.log += chunk;
      const m = srv.log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !srv.port) {
        srv.port = Number(m[1]);
        srv.url = `http://127.0.0.1:${srv.port}`;
        clearTimeout(timer);
        resolveStart(srv);
      }
    });
    proc.on('error', (err) => {
      srv.exited = true;
      servers.delete(srv);
      clearTimeout(timer);
      rejectStart(new Error(`cannot start ${BIN}: ${err.message}`));
    });
    proc.on('exit', (code, signal) => {
      srv.exited = true;
      servers.delete(srv);
      clearTimeout(timer);
      rejectStart(new Error(`server exited (${signal || code}) before listening: ${srv.log.slice(-300)}`));
    });
  });
}

/* Sends a signal and waits for the process to be gone (SIGKILL after 3 s). */
async function stopServer(srv, signal = 'SIGTERM') {
  if (srv.exited || srv.proc.exitCode !== null || srv.proc.signalCode !== null) return;
  const gone = new Promise((r) => srv.proc.once('exit', r));
  srv.proc.kill(signal);
  const timer = setTimeout(() => srv.proc.kill('SIGKILL'), 3000);
  await gone;
  clearTimeout(timer);
}

/* Restarts on the same port and database; the port may take a moment to come free. */
async function restartServer(old) {
  let lastErr;
  for (let i = 0; i < 20; i++) {
    try {
      return await startServer({ dir: old.dir, port: old.port, inventory: old.inventory });
    } catch (err) {
      lastErr = err;
      await sleep(250);
    }
  }
  throw lastErr;
}

async function apiCall(srv, method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(srv.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, data: await res.json().catch(() => null) };
}

/* Many concurrent one-unit purchases by distinct users: the flash crowd that makes the
 * unsafe strategy oversell.  Plain node:http with its own agent, so 64 run at once. */
async function crowd(srv, saleId, n, concurrency = 64) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const one = (i) => new Promise((done) => {
    const body = JSON.stringify({ user_id: `crowd-${run}-${i}`, quantity: 1 });
    const req = http.request({
      host: '127.0.0.1', port: srv.port, path: `/api/v1/sales/${saleId}/orders`, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => { res.resume(); res.on('end', () => done(res.statusCode)); });
    req.on('error', () => done(0));
    req.end(body);
  });
  try {
    return await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  } finally {
    agent.destroy();
  }
}

/* ---- reading the page ----------------------------------------------------------------- */

const byTestId = (id) => `[data-testid="${id}"]`;
const saleCard = (id) => `${byTestId('sale-card')}[data-sale-id="${id}"]`;
const num = (s) => Number(String(s).replace(/[,\s]/g, ''));

async function saleText(page, saleId, field) {
  const loc = page.locator(`${saleCard(saleId)} ${byTestId(field)}`);
  if ((await loc.count()) === 0) return null;
  return (await loc.first().textContent()).trim();
}

/* "YYYY-MM-DDTHH:MM" in local time, what a datetime-local input takes. */
function localInputValue(date) {
  const p = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

/* The page's language as the test sees it: <html lang>, and the words of a few landmarks. */
async function pageWords(page) {
  return page.evaluate(() => ({
    lang: document.documentElement.lang,
    title: document.title,
    sales: document.getElementById('h-sales').textContent.trim(),
    buy: document.getElementById('h-buy').textContent.trim(),
    submit: document.querySelector('[data-testid="buy-submit"]').textContent.trim(),
    toggle: document.querySelector('[data-testid="lang-toggle"]').textContent.trim(),
    conn: document.querySelector('[data-testid="conn-status"] .conn-text').textContent.trim(),
    stored: localStorage.getItem('flashsale.lang'),
  }));
}
const ENGLISH = { lang: 'en', title: 'flashsale · live', sales: 'Sales', buy: 'Grab a ticket', submit: 'Buy now', toggle: '中文', conn: 'live' };
const CHINESE = { lang: 'zh-CN', title: 'flashsale · 实时', sales: '秒杀活动', buy: '抢购', submit: '立即抢购', toggle: 'English', conn: '在线' };

/* Fails unless the page shows every word of want (a subset of pageWords). */
async function expectWords(page, want, what) {
  await eventually(`the page is in ${what}`, async () => {
    const got = await pageWords(page);
    const wrong = Object.keys(want).filter((k) => got[k] !== want[k]);
    if (wrong.length) throw new Error(wrong.map((k) => `${k}: "${got[k]}", want "${want[k]}"`).join('; '));
    return got;
  });
}

/* Every visible text of the page (and the options of its selects), minus what the server
 * said (sale names, strategy names: server data is never translated) and <code>. */
async function visibleTexts(page, serverWords) {
  const texts = await page.evaluate(() => {
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const p = n.parentElement;
      if (!n.textContent.trim() || p.closest('code, script, template, option')) continue;
      if (p.checkVisibility && !p.checkVisibility()) continue;
      out.push(n.textContent);
    }
    for (const o of document.querySelectorAll('option')) out.push(o.textContent);
    for (const e of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
      for (const a of ['placeholder', 'title', 'aria-label']) if (e.hasAttribute(a)) out.push(e.getAttribute(a));
    }
    return out;
  });
  return texts.map((t) => serverWords.reduce((acc, w) => acc.split(w).join(' '), t));
}

async function serverWords(srv) {
  const d = (await apiCall(srv, 'GET', '/api/v1/stats')).data;
  return [...d.sales.map((s) => s.name), d.inventory, d.durability, d.store].filter(Boolean)
    .sort((a, b) => b.length - a.length);
}

async function shot(page, file) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(OUT, file), fullPage: true });
}

/* ---- cleanup ---------------------------------------------------------------------------- */

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (browser) await browser.close().catch(() => {});
  await Promise.all([...servers].map((s) => stopServer(s, 'SIGKILL').catch(() => {})));
  rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', () => {
  for (const s of servers) try { s.proc.kill('SIGKILL'); } catch { /* already gone */ }
  try { rmSync(tmp, { recursive: true, force: true }); } catch { /* best effort */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { console.log(`FAIL e2e:interrupted: got ${sig}`); await cleanup(); process.exit(1); });
}
const watchdog = setTimeout(async () => {
  console.log(`FAIL e2e:watchdog: the test ran longer than ${WATCHDOG_MS / 1000} s`);
  await cleanup();
  process.exit(1);
}, WATCHDOG_MS);

/* ---- the checks ----------------------------------------------------------------------- */

async function main() {
  mkdirSync(OUT, { recursive: true });
  const srv = await startServer({ dir: join(tmp, 'main') });
  console.log(`# server ${BIN} on ${srv.url}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 120_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const pageErrors = [];
  const foreign = [];
  const watch = (p) => {
    p.on('pageerror', (err) => pageErrors.push(err.message));
    // app.js and i18n.js log "flashsale dashboard: ..." (a failed render, a missing word).
    p.on('console', (msg) => { if (msg.type() === 'error' && msg.text().includes('flashsale dashboard')) pageErrors.push(msg.text()); });
  };
  watch(page);
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.hostname !== '127.0.0.1' && u.protocol !== 'data:') foreign.push(req.url());
  });

  // 1. The page loads and shows the demo sale with live stock and a calm oversold 0.
  await check('page-loads', async () => {
    const res = await page.goto(srv.url + '/', { waitUntil: 'load' });
    assert(res && res.status() === 200, `GET / answered ${res && res.status()}`);
    assert((await page.title()).includes('flashsale'), `title is "${await page.title()}"`);
    await eventually('the connection pill says live',
      async () => (await page.getAttribute(byTestId('conn-status'), 'data-state')) === 'live');
  });
  await check('en-follows-browser', async () => {
    // An en-US browser gets English, and following the browser stores nothing.
    await expectWords(page, { ...ENGLISH, stored: null }, 'English');
  });
  await check('openapi-link', async () => {
    const link = page.locator(byTestId('openapi-link'));
    assert((await link.getAttribute('href')) === '/openapi.json', `the link goes to ${await link.getAttribute('href')}`);
    assert((await link.textContent()).trim() === 'API (OpenAPI)', `the link says "${await link.textContent()}"`);
    assert(await link.isVisible(), 'the link to the OpenAPI document is not visible');
  });
  await check('sale-shown', async () => {
    await eventually('the demo sale card shows "Demo sale", 20 / 20 left, oversold 0', async () =>
      (await saleText(page, 1, 'sale-name')) === 'Demo sale' &&
      num(await saleText(page, 1, 'sale-stock-left')) === 20 &&
      num(await saleText(page, 1, 'sale-stock-total')) === 20 &&
      (await saleText(page, 1, 'sale-oversold')) === '0');
    assert((await saleText(page, 1, 'sale-status')) === 'open', `status badge says ${await saleText(page, 1, 'sale-status')}`);
    const calm = await page.getAttribute(`${saleCard(1)} ${byTestId('sale-oversold-box')}`, 'data-bad');
    assert(calm === 'false', `a zero oversold counter is marked bad (${calm})`);
  });
  await check('service-stats', async () => {
    await eventually('the inventory strategy reads "atomic"', async () =>
      (await page.textContent(byTestId('stat-inventory'))).includes('atomic'));
    for (const id of ['stat-requests', 'stat-orders', 'stat-soldout', 'stat-overloaded', 'stat-queue', 'stat-uptime']) {
      const t = (await page.textContent(byTestId(id))).trim();
      assert(/\d/.test(t), `${id} shows "${t}", not a number`);
    }
    for (const id of ['stat-p50', 'stat-p99']) { // "–" while no purchase was timed
      const t = (await page.textContent(byTestId(id))).trim();
      assert(/^(–|[\d.,]+ (ms|s))$/.test(t), `${id} shows "${t}", not a latency`);
    }
    assert(await page.locator(byTestId('unsafe-banner')).isHidden(), 'the unsafe warning shows for an atomic server');
  });
  await check('charts-seeded-on-reload', async () => {
    // Wait for the server to hold a few seconds of history, then reload: the charts must be
    // drawn from the first answer, not start empty.
    await eventually('the server has 3 seconds of history', async () =>
      ((await apiCall(srv, 'GET', '/api/v1/stats')).data.history || []).length >= 3, 8000);
    await page.reload();
    await eventually('both charts are drawn from history right after a reload', async () => {
      const a = Number(await page.getAttribute(byTestId('chart-requests'), 'data-points'));
      const b = Number(await page.getAttribute(byTestId('chart-p99'), 'data-points'));
      return a >= 3 && b >= 3 && (await page.locator(`${byTestId('chart-requests')} path.line-a`).count()) === 1;
    }, 3000);
  });

  // 2. Buying through the form: a 201 with an order id, and the stock shown drops by one.
  await check('buy-through-form', async () => {
    const user = await page.inputValue(byTestId('buy-user'));
    assert(user.trim().length > 0, 'the user id is not pre-filled');
    await page.selectOption(byTestId('buy-sale'), '1');
    await page.click(byTestId('buy-submit'));
    await eventually('the purchase result shows 201', async () =>
      (await page.getAttribute(byTestId('buy-result'), 'data-status')) === '201');
    const orderId = (await page.textContent(byTestId('buy-order-id'))).trim();
    assert(/^\d+$/.test(orderId), `order id shown is "${orderId}"`);
    assert((await page.textContent(byTestId('buy-result-code'))).trim() === '201', 'the status code is not shown');
  });
  await check('stock-drops', async () => {
    await eventually('sale 1 shows 19 left', async () => num(await saleText(page, 1, 'sale-stock-left')) === 19, 3000);
    assert(num(await saleText(page, 1, 'sale-sold')) === 1, `sold shows ${await saleText(page, 1, 'sale-sold')}`);
  });
  await check('buy-error-shown', async () => {
    // Same user again: the demo sale allows one unit per user, so 409 limit_exceeded.
    await page.click(byTestId('buy-submit'));
    await eventually('the purchase result shows 409 limit_exceeded', async () =>
      (await page.getAttribute(byTestId('buy-result'), 'data-status')) === '409' &&
      (await page.textContent(byTestId('buy-result-error'))).trim() === 'limit_exceeded');
    const text = await page.textContent(byTestId('buy-result'));
    assert(/per-user limit/i.test(text), `the server's message is not shown: "${oneLine(text)}"`);
  });

  // 3. A purchase behind the page's back shows up by itself.
  await check('follows-backend', async () => {
    const r = await apiCall(srv, 'POST', '/api/v1/sales/1/orders', { user_id: 'e2e-node-buyer', quantity: 1 });
    assert(r.status === 201, `the purchase from Node answered ${r.status} ${JSON.stringify(r.data)}`);
    await eventually('sale 1 shows 18 left without touching the page', async () =>
      num(await saleText(page, 1, 'sale-stock-left')) === 18, 4000);
  });

  // 4. The admin panel: locked without a token, a wrong token is refused, then create,
  //    reset and audit with the right one; the token lives in sessionStorage only.
  await check('admin-locked', async () => {
    assert(await page.locator(byTestId('create-submit')).isDisabled(), 'create is enabled without a token');
    assert(await page.locator(byTestId('reset-submit')).isDisabled(), 'reset is enabled without a token');
  });
  await check('admin-bad-token', async () => {
    await page.fill(byTestId('admin-token'), 'not-the-token');
    await page.click(byTestId('admin-unlock'));
    await page.fill(byTestId('create-name'), 'should not exist');
    await page.click(byTestId('create-submit'));
    await eventually('the admin result shows 401', async () =>
      (await page.getAttribute(byTestId('admin-result'), 'data-status')) === '401');
    await page.click(byTestId('admin-lock'));
  });
  const saleName = `E2E drop ${Date.now().toString(36)}`;
  await check('admin-create', async () => {
    await page.fill(byTestId('admin-token'), TOKEN);
    await page.click(byTestId('admin-unlock'));
    await eventually('the admin tools unlock', async () => page.locator(byTestId('create-submit')).isEnabled());
    const stored = await page.evaluate(() => ({
      session: Object.values(sessionStorage), local: Object.values(localStorage), cookie: document.cookie,
    }));
    assert(stored.session.includes(TOKEN), 'the token is not in sessionStorage');
    const leaked = stored.local.filter((v) => v.includes(TOKEN));
    assert(leaked.length === 0 && stored.cookie === '', `the token leaked: ${leaked.length} localStorage values, cookie "${stored.cookie}"`);
    await page.fill(byTestId('create-name'), saleName);
    await page.fill(byTestId('create-stock'), '7');
    await page.fill(byTestId('create-limit'), '2');
    await page.click(byTestId('create-submit'));
    await eventually('the admin result shows 201', async () =>
      (await page.getAttribute(byTestId('admin-result'), 'data-status')) === '201');
    const card = page.locator(byTestId('sale-card'), { hasText: saleName });
    await eventually(`a card for "${saleName}" shows 7 / 7 left`, async () =>
      (await card.count()) === 1 &&
      num(await card.locator(byTestId('sale-stock-left')).textContent()) === 7 &&
      num(await card.locator(byTestId('sale-stock-total')).textContent()) === 7, 3000);
  });
  await check('admin-create-scheduled', async () => {
    // Start and end as datetime-local inputs: an hour from now makes it "upcoming".
    const name = `${saleName} later`;
    const starts = new Date(Date.now() + 3600_000), ends = new Date(Date.now() + 7200_000);
    await page.fill(byTestId('create-name'), name);
    await page.fill(byTestId('create-stock'), '3');
    await page.fill(byTestId('create-starts'), localInputValue(starts));
    await page.fill(byTestId('create-ends'), localInputValue(ends));
    await page.click(byTestId('create-submit'));
    const card = page.locator(byTestId('sale-card'), { hasText: name });
    await eventually(`"${name}" shows as upcoming`, async () =>
      (await card.count()) === 1 && (await card.locator(byTestId('sale-status')).textContent()).trim() === 'upcoming', 3000);
    const id = await card.getAttribute('data-sale-id');
    const s = (await apiCall(srv, 'GET', `/api/v1/sales/${id}`)).data;
    const want = Math.floor(starts.getTime() / 60000) * 60;
    assert(s.starts_at === want, `starts_at is ${s.starts_at}, the input meant ${want}`);
    assert(s.ends_at === Math.floor(ends.getTime() / 60000) * 60, `ends_at is ${s.ends_at}`);
    await page.fill(byTestId('create-starts'), '');
    await page.fill(byTestId('create-ends'), '');
  });
  await check('admin-reset', async () => {
    await page.selectOption(byTestId('admin-sale'), '1');
    await page.click(byTestId('reset-submit'));
    await eventually('the admin result shows 200', async () =>
      (await page.getAttribute(byTestId('admin-result'), 'data-status')) === '200');
    await eventually('sale 1 is back to 20 / 20 left', async () =>
      num(await saleText(page, 1, 'sale-stock-left')) === 20 && num(await saleText(page, 1, 'sale-sold')) === 0, 3000);
  });
  await check('admin-audit', async () => {
    await page.click(byTestId('buy-newuser'));
    await page.selectOption(byTestId('buy-sale'), '1');
    await page.click(byTestId('buy-submit'));
    await eventually('a purchase after the reset answers 201', async () =>
      (await page.getAttribute(byTestId('buy-result'), 'data-status')) === '201');
    await page.selectOption(byTestId('admin-sale'), '1');
    await page.click(byTestId('audit-submit'));
    await eventually('the audit says consistent: yes', async () =>
      (await page.locator(byTestId('audit-consistent')).count()) === 1 &&
      (await page.textContent(byTestId('audit-consistent'))).trim() === 'yes');
    const sold = (await page.textContent(byTestId('audit-units-sold'))).trim();
    assert(sold === '1', `the audit shows ${sold} units sold, want 1`);
  });

  // 7. Screenshots: laptop, then phone width (which must not scroll sideways).
  await check('screenshot', async () => {
    await sleep(600); // one more poll so the charts include the last purchases
    await shot(page, 'dashboard.png');
  });
  await check('phone-layout', async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 812 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    phone.setDefaultTimeout(STEP_MS);
    const p = await phone.newPage();
    watch(p);
    try {
      await p.goto(srv.url + '/');
      await eventually('the phone page shows the demo sale', async () => (await saleText(p, 1, 'sale-name')) === 'Demo sale');
      // Both languages: Chinese labels are shorter but the header gains the toggle.
      for (const [lang, file] of [['en', 'dashboard-phone.png'], ['zh', 'dashboard-phone-zh.png']]) {
        if (lang === 'zh') await p.click(byTestId('lang-toggle'));
        await expectWords(p, lang === 'zh' ? CHINESE : ENGLISH, lang);
        const w = await p.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
        assert(w.scroll <= w.client, `the ${lang} page scrolls sideways at 375 px: ${w.scroll} > ${w.client}`);
        await shot(p, file);
      }
    } finally {
      await phone.close();
    }
  });

  // 8. Chinese: a zh-CN browser gets Chinese everywhere; the server's words stay as sent.
  const zh = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN' });
  zh.setDefaultTimeout(STEP_MS);
  const zp = await zh.newPage();
  watch(zp);
  let zhSale = 0;
  await check('zh-follows-browser', async () => {
    const created = await apiCall(srv, 'POST', '/api/v1/sales', { name: '限量球鞋', stock: 5, per_user_limit: 1 }, TOKEN);
    assert(created.status === 201, `creating the sale answered ${created.status}`);
    zhSale = created.data.id;
    await zp.goto(srv.url + '/');
    await expectWords(zp, { ...CHINESE, stored: null }, 'Chinese');
    await eventually('the demo sale is "进行中" (open) with "剩余" (left)', async () =>
      (await saleText(zp, 1, 'sale-status')) === '进行中' &&
      (await zp.textContent(`${saleCard(1)} .stock-total`)).includes('剩余'));
    const link = zp.locator(byTestId('openapi-link'));
    assert((await link.textContent()).trim() === 'API 文档 (OpenAPI)', `the API link says "${await link.textContent()}"`);
    assert((await link.getAttribute('href')) === '/openapi.json', 'the API link moved');
    const hint = (await zp.textContent(byTestId('stat-p50-sub'))).trim();
    assert(hint === '暂无购买' || hint === '每次购买', `the p50 note says "${hint}"`);
  });
  await check('zh-every-word-in-both', async () => {
    // Words the page has not shown yet (errors, offline) must exist in both tables too.
    const keys = await zp.evaluate(() => ({ en: Object.keys(I18N_MESSAGES.en), zh: Object.keys(I18N_MESSAGES.zh) }));
    const onlyEn = keys.en.filter((k) => !keys.zh.includes(k)), onlyZh = keys.zh.filter((k) => !keys.en.includes(k));
    assert(onlyEn.length === 0 && onlyZh.length === 0, `only in English: ${onlyEn.join(', ') || '-'}; only in Chinese: ${onlyZh.join(', ') || '-'}`);
    const used = await zp.evaluate(() => [...document.querySelectorAll('[data-i18n]')].map((e) => e.dataset.i18n));
    const unknown = used.filter((k) => !keys.en.includes(k));
    assert(unknown.length === 0, `data-i18n keys with no text: ${unknown.join(', ')}`);
  });
  await check('zh-no-english-left', async () => {
    // Words allowed in Chinese: names (flashsale, the API), ID and units, the toggle's "English",
    // and what only the browser or the server decides.
    const allowed = new Set(['flashsale', 'API', 'ID', 'OpenAPI', 'English', 'Switch', 'to', 'ms', 'SQLite', 'Bearer', 'sessionStorage']);
    const words = (await visibleTexts(zp, await serverWords(srv))).flatMap((t) => t.match(/[A-Za-z]{2,}/g) || []);
    const english = [...new Set(words.filter((w) => !allowed.has(w)))];
    assert(english.length === 0, `English left on the Chinese page: ${english.slice(0, 12).join(', ')}`);
  });
  await check('zh-error-codes-stay-english', async () => {
    await zp.selectOption(byTestId('buy-sale'), String(zhSale));
    await zp.click(byTestId('buy-submit'));
    await eventually('the purchase shows 201 as "订单 N"', async () =>
      (await zp.getAttribute(byTestId('buy-result'), 'data-status')) === '201' &&
      (await zp.textContent(`${byTestId('buy-result')} strong`)).startsWith('订单'));
    await zp.click(byTestId('buy-submit'));
    await eventually('the second purchase shows 409 limit_exceeded', async () =>
      (await zp.getAttribute(byTestId('buy-result'), 'data-status')) === '409' &&
      (await zp.textContent(byTestId('buy-result-error'))).trim() === 'limit_exceeded');
    const title = (await zp.textContent(`${byTestId('buy-result')} strong`)).trim();
    assert(title === '已达每人限购', `the error title is "${title}", not Chinese`);
    const text = await zp.textContent(byTestId('buy-result'));
    assert(/per-user limit/i.test(text), `the server's English message is not shown as sent: "${oneLine(text)}"`);
    await sleep(600); // one more poll so the card shows the purchase
    await shot(zp, 'dashboard-zh.png');
  });
  await check('zh-toggle-remembered', async () => {
    // The toggle switches at once (the result shown too), and the choice beats the browser.
    await zp.click(byTestId('lang-toggle'));
    await expectWords(zp, { ...ENGLISH, stored: 'en' }, 'English after the toggle');
    await eventually('the shown 409 is relabelled', async () =>
      (await zp.textContent(`${byTestId('buy-result')} strong`)).trim() === 'Per-user limit reached');
    assert((await saleText(zp, 1, 'sale-status')) === 'open', `the badge says "${await saleText(zp, 1, 'sale-status')}"`);
    await zp.reload();
    await expectWords(zp, { ...ENGLISH, stored: 'en' }, 'English after a reload in a zh-CN browser');
    await zp.click(byTestId('lang-toggle'));
    await zp.reload();
    await expectWords(zp, { ...CHINESE, stored: 'zh' }, 'Chinese again after toggling back and reloading');
  });
  await zh.close();
  await check('en-toggle-remembered', async () => {
    // The en-US page of the checks above: to Chinese and back, each surviving a reload.
    await page.click(byTestId('lang-toggle'));
    await expectWords(page, { ...CHINESE, stored: 'zh' }, 'Chinese after the toggle');
    await eventually('the sale badge and the audit are relabelled', async () =>
      (await saleText(page, 1, 'sale-status')) === '进行中' &&
      (await page.textContent(byTestId('audit-consistent'))).trim() === '是');
    await page.reload();
    await expectWords(page, { ...CHINESE, stored: 'zh' }, 'Chinese after a reload in an en-US browser');
    await page.click(byTestId('lang-toggle'));
    await page.reload();
    await expectWords(page, { ...ENGLISH, stored: 'en' }, 'English again after toggling back and reloading');
  });
  await check('en-no-chinese-left', async () => {
    const texts = await visibleTexts(page, await serverWords(srv));
    const cjk = texts.filter((t) => /[\u3000-\u9fff\uff00-\uffef]/.test(t) && !/^(中文|Switch to Chinese \(切换到中文\))$/.test(t.trim()));
    assert(cjk.length === 0, `Chinese on the English page: ${cjk.slice(0, 5).join(' | ')}`);
  });

  // 5. Kill the server: the page says so and greys its numbers; a restart brings it back.
  await stopServer(srv, 'SIGKILL');
  await check('disconnected', async () => {
    await eventually('the "disconnected, retrying" banner shows', async () =>
      page.locator(byTestId('conn-banner')).isVisible());
    const banner = await page.textContent(byTestId('conn-banner'));
    assert(/disconnected/i.test(banner) && /retrying/i.test(banner), `banner says "${oneLine(banner)}"`);
    assert((await page.getAttribute(byTestId('conn-status'), 'data-state')) === 'offline', 'the connection pill is not offline');
    const opacity = await eventually('the numbers are dimmed', async () => {
      const o = await page.$eval(`${saleCard(1)} .stock-nums`, (el) => Number(getComputedStyle(el).opacity));
      return o < 0.6 && o;
    }, 2000);
    assert(opacity < 0.6, `stock numbers have opacity ${opacity}`);
    await page.screenshot({ path: join(OUT, 'dashboard-offline.png') });
  });
  await check('recovers', async () => {
    const again = await restartServer(srv);
    assert(again.port === srv.port, `restarted on ${again.port}, not ${srv.port}`);
    await eventually('the banner goes away and the pill says live again', async () =>
      (await page.locator(byTestId('conn-banner')).isHidden()) &&
      (await page.getAttribute(byTestId('conn-status'), 'data-state')) === 'live', 8000);
    assert(num(await saleText(page, 1, 'sale-stock-left')) === 19, `after the restart sale 1 shows ${await saleText(page, 1, 'sale-stock-left')} left, want 19`);
    await eventually('the numbers are no longer dimmed', async () =>
      (await page.$eval(`${saleCard(1)} .stock-nums`, (el) => Number(getComputedStyle(el).opacity))) > 0.9, 2000);
  });

  // 6. The unsafe strategy oversells under a crowd; the counter must turn loud red.
  await check('unsafe-oversold-red', async () => {
    const bad = await startServer({ dir: join(tmp, 'unsafe'), inventory: 'unsafe', demoStock: 20 });
    let oversold = 0;
    for (let round = 0; round < 8 && oversold === 0; round++) {
      if (round) await apiCall(bad, 'POST', '/api/v1/sales/1/reset', undefined, TOKEN);
      await crowd(bad, 1, 1500);
      oversold = (await apiCall(bad, 'GET', '/api/v1/sales/1')).data.oversold;
    }
    assert(oversold > 0, 'the unsafe server did not oversell in 8 crowds of 1,500 (the page was not at fault)');
    const p = await context.newPage();
    watch(p);
    try {
      await p.goto(bad.url + '/');
      await eventually(`the oversold counter shows ${oversold}`, async () =>
        num(await saleText(p, 1, 'sale-oversold')) === oversold);
      const box = `${saleCard(1)} ${byTestId('sale-oversold-box')}`;
      assert((await p.getAttribute(box, 'data-bad')) === 'true', 'the oversold box is not marked bad');
      const bg = await p.$eval(box, (el) => getComputedStyle(el).backgroundColor);
      const [r, g, b] = bg.match(/\d+(\.\d+)?/g).map(Number);
      assert(r >= 180 && g <= 90 && b <= 90, `the oversold box is ${bg}, not red`);
      assert(await p.locator(byTestId('unsafe-banner')).isVisible(), 'no warning that the strategy is unsafe');
      await shot(p, 'dashboard-unsafe.png');
    } finally {
      await p.close();
      await stopServer(bad);
    }
  });

  await check('no-page-errors', async () => {
    assert(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.slice(0, 3).join('; ')}`);
  });
  await check('nothing-fetched-from-outside', async () => {
    assert(foreign.length === 0, `the page asked for ${foreign.slice(0, 3).join(', ')}`);
  });
}

let fatal = null;
try {
  await main();
} catch (err) {
  fatal = err;
  console.log(`FAIL e2e:setup: ${oneLine(err && err.stack ? err.stack : err)}`);
  failed++;
} finally {
  clearTimeout(watchdog);
  if (failed) for (const s of servers) console.log(`# server log tail: ${oneLine(s.log.slice(-400))}`);
  await cleanup();
}
console.log(`# e2e: ${passed} passed, ${failed} failed in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in tests/out/`);
process.exit(failed || fatal ? 1 : 0);
