// A browser dashboard calling the gateway from another origin, in headless Chromium: a page
// served as http://dash.example (allowed by the gateway's CORS policy) and one served as
// http://evil.example (not allowed) each fetch GET /items/1000 with a header that makes the
// browser send a preflight. Both host names resolve to this script's own loopback server
// (--host-resolver-rules; every other name resolves to nothing), the gateway is on loopback.
// Prints "CORS OK" and exits 0, or a reason and exits 1.
// Usage: node tests/browser/cors.mjs GATEWAY_BASE_URL
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const [gateway] = process.argv.slice(2);
if (!gateway) {
  console.error('usage: node cors.mjs GATEWAY_BASE_URL');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
setTimeout(() => { console.error('CORS FAIL: global timeout (60 s)'); process.exit(1); }, 60_000).unref();

// Every page is the same empty dashboard; its origin is the host name it was asked by.
const pages = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end('<!doctype html><title>dashboard</title><p>dashboard</p>');
});
await new Promise((ok) => pages.listen(0, '127.0.0.1', ok));
const port = pages.address().port;

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=MAP dash.example 127.0.0.1:${port}, MAP evil.example 127.0.0.1:${port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`],
  });
  const call = async (origin) => {
    const page = await browser.newPage();
    await page.goto(`${origin}/`, { waitUntil: 'domcontentloaded' });
    const result = await page.evaluate(async (url) => {
      try {
        const res = await fetch(url, { headers: { 'X-Request-Id': 'dashboard-1' } });
        return { status: res.status, requestId: res.headers.get('x-request-id'), body: await res.json() };
      } catch (e) {
        return { error: `${e.name}: ${e.message}` };
      }
    }, `${gateway}/items/1000`);
    await page.close();
    return result;
  };

  const allowed = await call('http://dash.example');
  if (allowed.error) throw new Error(`the allowed origin's call failed: ${allowed.error}`);
  if (allowed.status !== 200 || allowed.body?.no !== '1000') {
    throw new Error(`the allowed origin got ${allowed.status} ${JSON.stringify(allowed.body)}`);
  }
  // An exposed header is readable by the page (x-request-id is in the default expose list).
  if (allowed.requestId !== 'dashboard-1') throw new Error(`x-request-id not readable: ${allowed.requestId}`);

  const refused = await call('http://evil.example');
  if (!refused.error) throw new Error(`the refused origin read the answer: ${JSON.stringify(refused)}`);
  if (!/TypeError/.test(refused.error)) throw new Error(`unexpected failure: ${refused.error}`);
  console.log('CORS OK');
  await browser.close();
  pages.close();
  process.exit(0);
} catch (e) {
  console.error(`CORS FAIL: ${e.message}`);
  try { await browser?.close(); } catch {}
  process.exit(1);
}
