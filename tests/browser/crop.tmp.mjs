import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
const [src, out, y, h] = process.argv.slice(2);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const p = await b.newPage({ viewport: { width: 1280, height: 800 } });
await p.setContent(`<style>body{margin:0}img{display:block}</style><img src="data:image/png;base64,${readFileSync(src).toString('base64')}">`);
await p.screenshot({ path: out, clip: { x: 0, y: +y, width: 1280, height: +h }, fullPage: true });
await b.close();
