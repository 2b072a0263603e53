// Drives the Swagger UI at BASE/docs/ in headless Chromium as a person would:
// Authorize (OAuth2 client credentials) -> GET /items/{no} -> Try it out -> Execute,
// then checks the live response. Prints "DOCS OK" and exits 0, or a reason and exits 1.
// Usage: node tests/browser/docs.mjs BASE_URL CLIENT_ID CLIENT_SECRET SCREENSHOT_PATH
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const [base, clientId, clientSecret, shot] = process.argv.slice(2);
if (!base || !clientId || !clientSecret || !shot) {
  console.error('usage: node docs.mjs BASE_URL CLIENT_ID CLIENT_SECRET SCREENSHOT_PATH');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 15_000;
let browser, page, step = 'launch', done = false;
const logs = [];

async function finish(ok, reason) {
  if (done) return;
  done = true;
  setTimeout(() => process.exit(ok ? 0 : 1), 20_000).unref(); // screenshot/close must not hang us either
  if (page) {
    try {
      mkdirSync(dirname(shot), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true, timeout: 10_000 });
    } catch (e) { console.error(`(screenshot failed: ${e.message.split('\n')[0]})`); }
  }
  if (ok) console.log('DOCS OK');
  else {
    console.error(`DOCS FAIL at step "${step}": ${reason}`);
    if (logs.length) console.error('browser log:\n  ' + logs.slice(-20).join('\n  '));
  }
  try { await browser?.close(); } catch {}
  process.exit(ok ? 0 : 1);
}
const fail = (reason) => { throw new Error(reason); };
setTimeout(() => finish(false, 'global timeout (60 s)'), 60_000);

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`console.${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => logs.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));

  step = 'open /docs/';
  const resp = await page.goto(new URL('/docs/', base).href, { waitUntil: 'domcontentloaded' });
  if (!resp || !resp.ok()) fail(`GET /docs/ answered ${resp?.status()}`);
  const op = page.locator('#operations-erp-GetItem');
  await op.waitFor({ state: 'visible' }).catch(() => fail('operation #operations-erp-GetItem never rendered (is /openapi.json served?)'));

  step = 'authorize';
  await page.locator('.scheme-container .btn.authorize').click();
  const modal = page.locator('.modal-ux');
  await modal.waitFor({ state: 'visible' });
  const flow = modal.locator('.auth-container', { hasText: 'clientCredentials' });
  await flow.locator('#client_id_clientCredentials').fill(clientId);
  await flow.locator('#client_secret_clientCredentials').fill(clientSecret);
  await flow.locator('.scopes a[data-all="true"]').click(); // "select all"
  const itemsRead = flow.locator('input[type="checkbox"][data-value="items:read"]');
  if (!(await itemsRead.isChecked())) fail('scope items:read is not selected after "select all"');
  let tokenReq = null, tokenStatus = null;
  const isToken = (r) => new URL(r.url()).pathname.endsWith('/oauth2/token');
  page.on('request', (r) => { if (isToken(r)) tokenReq = r; });
  page.on('response', (r) => { if (isToken(r.request())) tokenStatus = r.status(); });
  await flow.locator('.auth-btn-wrapper button.authorize').click();
  // Success swaps the modal's Authorize button for Logout; a failure shows .errors in the modal.
  const outcome = await Promise.race([
    flow.locator('.auth-btn-wrapper button', { hasText: 'Logout' }).waitFor().then(() => 'ok'),
    flow.locator('.errors').waitFor().then(() => 'error'),
  ]).catch(() => 'timeout');
  if (outcome !== 'ok') {
    const shown = outcome === 'error' ? `modal shows ${JSON.stringify((await flow.locator('.errors').innerText()).trim())}; ` : 'modal never showed Logout; ';
    fail(shown + (!tokenReq ? 'Swagger UI sent no token request'
      : tokenStatus !== null ? `token endpoint answered ${tokenStatus}`
      // A 401 carrying WWW-Authenticate: Basic makes Chromium hold the XHR for a login prompt.
      : 'token request got no answer the page could see (a 401 with WWW-Authenticate: Basic, i.e. wrong client_id/secret?)'));
  }
  if (tokenStatus !== 200) fail(`token endpoint answered ${tokenStatus}`);
  await flow.locator('.auth-btn-wrapper .btn-done').click();
  await modal.waitFor({ state: 'detached' });
  if (!(await page.locator('.scheme-container .btn.authorize.locked').count())) fail('Authorize button did not turn locked');

  step = 'open GET /items/{no}';
  await op.locator('.opblock-summary-control').click();
  await op.locator('.opblock-body').waitFor();

  step = 'try it out';
  const tryOut = op.locator('.try-out__btn');
  // tryItOutEnabled:true in the config makes it start enabled (button reads "Cancel"): don't toggle it off.
  if (!/cancel/i.test(await tryOut.innerText())) await tryOut.click();
  const input = op.locator('tr[data-param-name="no"] input[placeholder="no"]');
  await input.fill('1000');

  step = 'execute';
  const apiResp = page.waitForResponse((r) => new URL(r.url()).pathname === '/items/1000', { timeout: STEP_MS }).catch(() => null);
  await op.locator('.execute-wrapper .btn.execute').click();
  const live = op.locator('.responses-wrapper .live-responses-table');
  await live.waitFor({ state: 'visible' });
  const a = await apiResp;
  if (!a) fail('the browser never requested /items/1000');
  if (!a.request().headers()['authorization']?.startsWith('Bearer ')) fail('request to /items/1000 carried no bearer token');

  step = 'check response';
  const status = (await live.locator('.response .response-col_status').first().innerText()).trim();
  const body = await live.locator('.response-col_description pre.microlight').first().innerText();
  if (status !== '200') fail(`response status shown is ${JSON.stringify(status)}, want 200; body: ${body.slice(0, 300)}`);
  if (!body.includes('"blocked": false')) fail(`body lacks "blocked": false; body: ${body.slice(0, 300)}`);
  if (!/"inventory": -?\d+(\.\d+)?\s*[,\n}]/.test(body)) fail(`body lacks a numeric "inventory"; body: ${body.slice(0, 300)}`);
  await finish(true);
} catch (e) {
  await finish(false, e.message.split('\n')[0]);
}
