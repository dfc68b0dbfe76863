// The chat page at GET / in a real browser: Debian's chromium, headless, driven by
// puppeteer-core. Skipped when chromium or puppeteer-core is not installed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const BIN = process.env.LOKAL_BIN ?? '../../../build/bin/lokal';
const SHARED = process.env.LOKAL_SHARED ?? '../../../../shared';
let BASE = '';

// Starts `lokal serve` on a free port: a few random ones are tried, since another test may
// hold one (a server that cannot bind exits at once).
async function startServer(extra) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const proc = spawn(BIN, ['serve', '--port', String(port), '--models-dir', `${SHARED}/models`,
                             '-m', 'stories260K', '-c', '256', '-t', '1', '--store', '/nonexistent-lokal-store',
                             ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
    let exited = false;
    proc.on('exit', () => { exited = true; });
    for (let i = 0; i < 200 && !exited; i++) {
      try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return { proc, base: `http://127.0.0.1:${port}` }; } catch {}
      await new Promise(r => setTimeout(r, 100));
    }
    proc.kill('SIGKILL');
  }
  throw new Error('lokal serve did not start');
}

let puppeteer = null;
try {
  puppeteer = (await import('puppeteer-core')).default;
} catch {}
const skip = !existsSync(CHROMIUM) ? `no ${CHROMIUM}` : !puppeteer ? 'puppeteer-core not installed' : false;

let server, browser, profile;

before(async () => {
  if (skip) return;
  ({ proc: server, base: BASE } = await startServer([]));
  // A fresh profile, and everything that would reach the network switched off.
  profile = mkdtempSync(join(tmpdir(), 'lokal-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           `--user-data-dir=${profile}`],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('chat page: pick a model, send a message, see the reply streamed', { skip }, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${BASE}/`, { waitUntil: 'networkidle0' });
  assert.equal(await page.title(), 'lokal chat');
  // The model picker was filled from /api/tags.
  await page.waitForFunction(() => [...document.querySelectorAll('#model option')]
    .some(o => o.value === 'stories260K'));
  await page.select('#model', 'stories260K');
  await page.$eval('#temperature', e => { e.value = '0'; });
  await page.$eval('#max-tokens', e => { e.value = '40'; });
  await page.type('#input', 'Once upon a time');
  await page.click('#send');
  await page.waitForSelector('.assistant[data-done="true"]', { timeout: 30000 });
  const reply = await page.$eval('.assistant', e => ({ text: e.textContent, chunks: Number(e.dataset.chunks),
                                                        error: e.classList.contains('error') }));
  assert.equal(reply.error, false, reply.text);
  assert.ok(reply.text.length > 0);
  assert.ok(reply.chunks > 1, `the reply came in ${reply.chunks} piece(s), not streamed`);
  assert.equal(await page.$eval('.user', e => e.textContent), 'Once upon a time');
  assert.match(await page.$eval('#status', e => e.textContent), /tokens/);

  // Temperature 0: the same answer the API gives for the same conversation.
  const api = await (await fetch(`${BASE}/api/chat`, {
    method: 'POST',
    body: JSON.stringify({ model: 'stories260K', stream: false, options: { temperature: 0, num_predict: 40 },
                           messages: [{ role: 'user', content: 'Once upon a time' }] }),
  })).json();
  assert.equal(reply.text, api.message.content);

  // Stop: with the network slowed to a trickle the answer is still arriving when Stop is
  // pressed; it keeps what came and the page is ready for the next message.
  await page.emulateNetworkConditions({ offline: false, download: 300, upload: 1e6, latency: 0 });
  await page.$eval('#max-tokens', e => { e.value = '200'; });
  await page.type('#input', 'Tell me more');
  await page.click('#send');
  await page.waitForFunction(() => Number(document.querySelectorAll('.assistant')[1]?.dataset.chunks) >= 1,
                             { timeout: 30000 });
  assert.equal(await page.$eval('#stop', e => e.disabled), false);
  await page.click('#stop');
  await page.waitForFunction(() => document.querySelectorAll('.assistant')[1].dataset.done === 'true');
  assert.equal(await page.$$eval('.assistant', es => es[1].dataset.stopped), 'true');
  await page.emulateNetworkConditions(null);
  assert.equal(await page.$eval('#send', e => e.disabled), false);
  assert.deepEqual(errors.filter(e => !/aborted|AbortError/i.test(e)), []);
  await page.close();
});

test('chat page with --api-key: asks for the key, then lists models and chats', { skip }, async () => {
  const { proc: keyed, base } = await startServer(['--api-key', 'sekrit']);
  try {
    const page = await browser.newPage();
    await page.goto(`${base}/`, { waitUntil: 'networkidle0' });
    await page.waitForFunction(() => !document.getElementById('key-label').hidden);
    assert.match(await page.$eval('#status', e => e.textContent), /API key/);
    await page.type('#api-key', 'sekrit');
    await page.$eval('#api-key', e => e.dispatchEvent(new Event('change')));
    await page.waitForFunction(() => [...document.querySelectorAll('#model option')]
      .some(o => o.value === 'stories260K'));
    await page.$eval('#max-tokens', e => { e.value = '8'; });
    await page.type('#input', 'Hello');
    await page.click('#send');
    await page.waitForSelector('.assistant[data-done="true"]', { timeout: 30000 });
    assert.equal(await page.$eval('.assistant', e => e.classList.contains('error')), false);
    await page.close();
  } finally {
    keyed.kill('SIGTERM');
  }
});
