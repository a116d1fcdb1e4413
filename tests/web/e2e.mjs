#!/usr/bin/env node
// End-to-end test of the VSR web page against a running server, in Debian's Chromium.
//
//   node tests/web/e2e.mjs --url http://127.0.0.1:PORT --video small.mp4 --bad notvideo.mp4 \
//        --long long.mp4 --out target/screenshots [--api-key KEY] [--chromium /usr/bin/chromium]
//
// Prints one line per step; exits 1 with the failing assertion (and a screenshot) otherwise.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    video: { type: 'string' },
    bad: { type: 'string' },
    image: { type: 'string' },
    long: { type: 'string' },
    out: { type: 'string', default: 'target/screenshots' },
    'api-key': { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    headed: { type: 'boolean', default: false },
  },
});

function usage(problem) {
  console.error(`e2e: ${problem}`);
  console.error('usage: node tests/web/e2e.mjs --url http://127.0.0.1:PORT --video small.mp4 --bad notvideo.mp4 --long long.mp4 --out target/screenshots');
  process.exit(2);
}

if (!opts.url) usage('--url is required');
for (const k of ['video', 'bad', 'long']) {
  if (!opts[k]) usage(`--${k} is required`);
  if (!fs.existsSync(opts[k])) usage(`--${k} ${opts[k]}: no such file`);
}
if (!fs.existsSync(opts.chromium)) usage(`Chromium not found at ${opts.chromium} (apt-get install chromium, or pass --chromium)`);
const base = opts.url.replace(/\/+$/, '');
fs.mkdirSync(opts.out, { recursive: true });

class AssertionFailed extends Error {}

function assert(cond, message) {
  if (!cond) throw new AssertionFailed(message);
}

const started = Date.now();
let page;
let browser;
const pageErrors = [];
const started_tasks = new Set(); // cancelled if the test fails, so a rerun finds the queue empty
const consoleErrors = [];
let stepCount = 0;

async function cancelLeftovers() {
  if (!page) return;
  const headers = opts['api-key'] ? { 'X-API-Key': opts['api-key'] } : {};
  for (const id of started_tasks) {
    try {
      await page.request.post(`${base}/api/cancel/${id}`, { headers, timeout: 5000 });
    } catch (_) {
      /* best effort */
    }
  }
}

async function shot(name) {
  const file = path.join(opts.out, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function step(label, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    assert(pageErrors.length === 0, `the page threw: ${pageErrors.join(' | ')}`);
    const refused = consoleErrors.filter((e) => /Content Security Policy/i.test(e));
    assert(refused.length === 0, `the page broke its own Content-Security-Policy: ${refused.join(' | ')}`);
    stepCount++;
    console.log(`ok   ${label} (${((Date.now() - t0) / 1000).toFixed(1)} s)${note ? ': ' + note : ''}`);
  } catch (err) {
    console.log(`FAIL ${label} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${err instanceof AssertionFailed ? err.message : err.stack || err}`);
    if (consoleErrors.length) console.log(`     browser console errors: ${consoleErrors.slice(-5).join(' | ')}`);
    if (page) {
      try {
        const file = await shot(`fail-${label.replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 40)}.png`);
        console.log(`     screenshot of the failure: ${file}`);
      } catch (_) {
        /* the page may be gone */
      }
    }
    await cancelLeftovers();
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

/** Waits until `fn` (run in the page) returns a truthy value; fails with `what` on timeout. */
async function waitInPage(what, fn, arg, timeout) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    return await handle.jsonValue();
  } catch (err) {
    if (err.name === 'TimeoutError') throw new AssertionFailed(`timed out after ${timeout / 1000} s waiting for ${what}`);
    throw err;
  }
}

const text = (sel) => page.locator(sel).innerText();
const visible = (sel) => page.locator(sel).isVisible();

/** Chooses a file and waits for the facts or an upload error. */
async function upload(file) {
  await page.setInputFiles('#file-input', file);
  return waitInPage(
    `the upload of ${path.basename(file)} to finish`,
    () => {
      const facts = document.querySelector('#facts');
      const err = document.querySelector('#upload-error');
      const state = document.querySelector('#upload-state');
      if (err && !err.hidden && err.textContent.trim()) return { error: err.textContent.trim() };
      if (facts && !facts.hidden && state.hidden && document.querySelector('#run-panel').dataset.status === 'draft') {
        return { ok: true };
      }
      return false;
    },
    null,
    60000,
  );
}

async function setSettings(scale, preset) {
  await page.selectOption('#model', '');
  await page.selectOption('#scale', String(scale));
  await page.check(`#quality-${preset}`);
}

/** Both images of a comparison have loaded (or its error showed). */
async function waitForCompare(slot, errorSel, what, timeout) {
  const r = await waitInPage(
    what,
    ([slot, errorSel]) => {
      const err = document.querySelector(errorSel);
      if (err && !err.hidden && err.textContent.trim()) return { error: err.textContent.trim() };
      const root = document.querySelector(slot);
      if (!root || root.hidden) return false;
      const imgs = [...root.querySelectorAll('img')];
      const loaded = imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
      return loaded ? { before: imgs[0].naturalWidth, after: imgs[1].naturalWidth, afterH: imgs[1].naturalHeight } : false;
    },
    [slot, errorSel],
    timeout,
  );
  assert(!r.error, `${what}: the page shows an error: ${r.error}`);
  return r;
}

async function runState() {
  return page.evaluate(() => ({
    status: document.querySelector('#run-panel').dataset.status || '',
    value: Number(document.querySelector('#run-progress').value),
    visible: !document.querySelector('#run-progress-wrap').hidden,
    text: document.querySelector('#run-status').textContent,
    error: document.querySelector('#run-error').hidden ? '' : document.querySelector('#run-error').textContent,
    frames: document.querySelector('#run-frames').textContent,
  }));
}

/** Follows the progress bar to the end; returns what it saw. */
async function followRun(timeout, midShot) {
  const deadline = Date.now() + timeout;
  let maxSeen = 0;
  let midTaken = false;
  let sawPositive = false;
  for (;;) {
    const s = await runState();
    assert(!['failed', 'cancelled', 'expired', 'deleted'].includes(s.status), `the task ended as ${s.status}: ${s.error || s.text}`);
    assert(s.value + 0.01 >= maxSeen, `the progress bar went backwards, from ${maxSeen} to ${s.value}`);
    maxSeen = Math.max(maxSeen, s.value);
    if (s.value > 0) sawPositive = true;
    if (midShot && !midTaken && s.value > 0 && s.value < 100 && s.status === 'processing') {
      await shot(midShot);
      midTaken = true;
    }
    if (s.status === 'completed') {
      assert(s.value === 100, `the task completed but the progress bar shows ${s.value}, not 100`);
      return { sawPositive, midTaken };
    }
    assert(Date.now() < deadline, `the task did not complete within ${timeout / 1000} s (status ${s.status}, progress ${s.value})`);
    await page.waitForTimeout(100);
  }
}

async function noHorizontalScroll(width, where) {
  const sw = await page.evaluate(() => document.scrollingElement.scrollWidth);
  if (sw > width + 1) {
    const culprits = await page.evaluate((w) => {
      const out = [];
      for (const e of document.querySelectorAll('body *')) {
        const r = e.getBoundingClientRect();
        if (r.right > w + 1 && r.width > 0) out.push(`${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''} (right ${Math.round(r.right)})`);
      }
      return out.slice(0, 6);
    }, width);
    throw new AssertionFailed(`${where}: horizontal scrolling at ${width}px: scrollWidth ${sw}; too wide: ${culprits.join(', ')}`);
  }
  return sw;
}

async function taskId() {
  return page.evaluate(() => document.querySelector('#run-panel').dataset.taskId || '');
}

// ---------------------------------------------------------------------------------------------

browser = await chromium.launch({ executablePath: opts.chromium, args: ['--no-sandbox'], headless: !opts.headed });
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
if (opts['api-key']) {
  await context.addInitScript((key) => localStorage.setItem('vsr.apiKey', key), opts['api-key']);
}
page = await context.newPage();
page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});

console.log(`e2e: ${base} with ${path.basename(opts.video)}, ${path.basename(opts.bad)}, ${path.basename(opts.long)}; screenshots in ${opts.out}`);

let mainTask = '';

{
  const headers = opts['api-key'] ? { 'X-API-Key': opts['api-key'] } : {};
  const res = await page.request.get(`${base}/api/tasks?page=1&perPage=100`, { headers });
  if (res.ok()) {
    const busy = (await res.json()).tasks.filter((t) => t.status === 'queued' || t.status === 'processing');
    if (busy.length) console.log(`note: ${busy.length} task(s) already queued or running on the server; ours wait behind them`);
  }
}

await step('(a) open the page, upload a draft, facts shown', async () => {
  const res = await page.goto(base + '/', { waitUntil: 'load' });
  assert(res && res.ok(), `GET / answered ${res && res.status()}`);
  // The page runs under its policy (each step checks that nothing was refused by it).
  const csp = res.headers()['content-security-policy'] || '';
  assert(/script-src 'self'/.test(csp) && /frame-ancestors 'none'/.test(csp), `GET / has no strict Content-Security-Policy: "${csp}"`);
  assert((await page.title()).includes('VSR'), 'the page title does not name VSR');
  await waitInPage('the presets from /api/models', () => document.querySelector('[data-preset-summary="fast"]').textContent.trim().length > 0, null, 15000);
  const models = await page.locator('#model option').count();
  assert(models > 1, 'the model list offers no installed model');
  await setSettings(2, 'fast');
  // The main task runs the temporal stabiliser; its status says so.
  await page.selectOption('#temporal', 'auto');
  const r = await upload(opts.video);
  assert(!r.error, `the upload was refused: ${r.error}`);
  const size = await text('#fact-size');
  assert(/\b160\b/.test(size) && /\b90\b/.test(size), `the input size reads "${size}", not 160 × 90`);
  const out = await text('#fact-output');
  assert(/320\s*[×x]\s*180/.test(out), `the output size reads "${out}", not 320 × 180`);
  // The output follows the scale before anything is started.
  await page.selectOption('#scale', '4');
  const out4 = await text('#fact-output');
  assert(/640\s*[×x]\s*360/.test(out4), `at scale 4 the output size reads "${out4}", not 640 × 360`);
  await page.selectOption('#scale', '2');
  assert(/320\s*[×x]\s*180/.test(await text('#fact-output')), 'the output size did not return to 320 × 180');
  const duration = await text('#fact-duration');
  const frames = await text('#fact-frames');
  assert(/\d/.test(duration) && /\d/.test(frames), `duration "${duration}" or frames "${frames}" missing`);
  mainTask = await taskId();
  assert(mainTask, 'the page does not record the draft task id');
  await shot('01-facts.png');
  return `${size} → ${out}, ${duration}, ${await text('#fact-fps')}, ${frames} frames`;
});

await step('(b) preview a frame, compare, drag the divider, zoom', async () => {
  await page.click('#preview-button');
  const r = await waitForCompare('#preview-compare', '#preview-error', 'the preview images', 60000);
  assert(r.after === 320, `the preview's after image is ${r.after} px wide, not 320`);
  assert(r.before === 160, `the preview's before image is ${r.before} px wide, not 160`);
  const sizes = await page.evaluate(() => [...document.querySelectorAll('#preview-compare img')].map((i) => {
    const b = i.getBoundingClientRect();
    return [Math.round(b.width), Math.round(b.height)];
  }));
  assert(sizes[0][0] === sizes[1][0] && sizes[0][1] === sizes[1][1], `before and after are drawn at different sizes: ${JSON.stringify(sizes)}`);
  const divider = page.locator('#preview-compare .divider');
  const before = Number(await divider.getAttribute('aria-valuenow'));
  const box = await divider.boundingBox();
  assert(box, 'the divider is not on screen');
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 - 120, box.y + box.height / 2, { steps: 8 });
  await page.mouse.up();
  const dragged = Number(await divider.getAttribute('aria-valuenow'));
  assert(dragged < before - 5, `dragging the divider left moved it from ${before} to ${dragged}`);
  const clip = await page.locator('#preview-compare .layer-after').evaluate((e) => e.style.clipPath);
  const clipLeft = Number((clip.match(/([\d.]+)%\)\s*$/) || [])[1]);
  assert(Math.abs(clipLeft - dragged) <= 1, `the after image's clip (${clip}) does not follow the divider (${dragged})`);
  await divider.focus();
  await page.keyboard.press('ArrowRight');
  const keyed = Number(await divider.getAttribute('aria-valuenow'));
  assert(keyed > dragged, `ArrowRight on the divider did not move it (${dragged} → ${keyed})`);
  await page.click('#preview-compare .zoom[data-zoom="2"]');
  assert((await page.locator('#preview-compare .compare').getAttribute('data-zoom')) === '2', 'zoom 2× was not applied');
  const t0 = await page.locator('#preview-compare .img-after').evaluate((e) => e.style.transform);
  const view = await page.locator('#preview-compare .compare-view').boundingBox();
  await page.mouse.move(view.x + view.width * 0.8, view.y + view.height * 0.3);
  await page.mouse.down();
  await page.mouse.move(view.x + view.width * 0.6, view.y + view.height * 0.6, { steps: 5 });
  await page.mouse.up();
  const t1 = await page.locator('#preview-compare .img-after').evaluate((e) => e.style.transform);
  assert(t0 !== t1 && t1.includes('scale(2)'), `dragging while zoomed did not pan (${t0} → ${t1})`);
  await page.click('#preview-compare .zoom[data-zoom="1"]');
  const took = await text('#preview-took');
  assert(/took\s+[\d.,]+\s*s/i.test(took), `the preview does not say how long it took: "${took}"`);
  // Temporal stability is on (step a): consecutive frames with and without it, flipping by
  // themselves, both drawn at the same size, the flicker from frame to frame given for each.
  assert(await visible('#stabilised'), 'the preview shows no consecutive frames with and without temporal stability');
  const pair = await page.evaluate(() => [...document.querySelectorAll('#stabilised img')].map((i) => [i.naturalWidth, i.naturalHeight, Math.round(i.getBoundingClientRect().width)]));
  assert(pair.length === 2 && pair[0][0] === 320 && pair[1][0] === 320 && pair[0][2] === pair[1][2], `the consecutive frames are not two 320 px windows drawn alike: ${JSON.stringify(pair)}`);
  assert(/\bauto\b/.test(await text('#stabilised-with-caption')), 'the stabilised frames do not say which setting ran');
  assert((await page.locator('#stabilised-frame').getAttribute('max')) === '3', 'the preview does not hold 4 consecutive frames');
  const seen = new Set();
  for (let i = 0; i < 12 && seen.size < 2; i++) {
    seen.add(await page.locator('#stabilised').getAttribute('data-frame'));
    await page.waitForTimeout(150);
  }
  assert(seen.size >= 2, `the consecutive frames do not play (only frame ${[...seen]} was shown)`);
  await page.click('#stabilised-play');
  assert((await page.locator('#stabilised-play').getAttribute('aria-pressed')) === 'false', 'Pause did not stop the consecutive frames');
  await page.locator('#stabilised-frame').fill('2');
  assert((await page.locator('#stabilised').getAttribute('data-frame')) === '2', 'the frame slider does not choose the frame shown');
  const change = await text('#stabilised-change');
  assert(/[\d.]+ levels of 255 without, [\d.]+ with/.test(change), `the flicker from frame to frame is not given: "${change}"`);
  await shot('02-preview.png');
  const notes = (await visible('#preview-notes')) ? (await text('#preview-notes')).replace(/\n/g, '; ') : 'no notes';
  return `after ${r.after}×${r.afterH}, divider ${before}→${dragged}→${keyed}, ${took.trim()} ${notes}; ${change}`;
});

await step('(c) upscale: live progress to 100%, download, result frame, task list', async () => {
  started_tasks.add(await taskId());
  await page.click('#start-button');
  await waitInPage('the task to be queued', () => ['queued', 'processing', 'completed'].includes(document.querySelector('#run-panel').dataset.status) || !document.querySelector('#run-error').hidden, null, 15000);
  const s0 = await runState();
  assert(!s0.error, `starting failed: ${s0.error}`);
  const id = await taskId();
  assert(id === mainTask, `the started task ${id} is not the draft ${mainTask}`);
  const r = await followRun(120000, '03-progress.png');
  assert(r.sawPositive, 'the progress bar never rose above 0');
  const ran = await text('#run-notes');
  assert(ran.includes('Temporal stability: auto'), `the status does not say the stabiliser ran: "${ran}"`);
  await page.selectOption('#temporal', 'off');
  const frames = await text('#run-frames');
  assert(await visible('#done-panel'), 'the result section is not shown');
  const href = await page.locator('#download-link').getAttribute('href');
  assert(href && href.includes('/api/download/'), `the download link is "${href}"`);
  assert((await page.locator('#download-link').getAttribute('download')) !== null, 'the download link has no download attribute');
  const res = await page.request.get(new URL(href, base + '/').toString());
  const body = await res.body();
  assert(res.status() === 200, `downloading the result answered ${res.status()}`);
  assert(body.length > 1000, `the downloaded result is only ${body.length} bytes`);
  const cmp = await waitForCompare('#result-compare', '#result-error', 'the result frame images', 60000);
  assert(cmp.after === 320, `the result frame is ${cmp.after} px wide, not 320`);
  await waitInPage(
    'the task list to show the task as completed',
    (id) => {
      const b = document.querySelector(`#tasks-body tr[data-task-id="${id}"] [data-testid="task-status"]`);
      return b && /completed/i.test(b.textContent);
    },
    id,
    15000,
  );
  await shot('04-done.png');
  return `mid-run screenshot ${r.midTaken ? 'taken' : 'not caught (too fast)'}; frames ${frames}; download ${body.length} bytes (${res.headers()['content-type']}); result frame ${cmp.before}→${cmp.after} px`;
});

await step('(d) a file that is not a video: plain-words error', async () => {
  const r = await upload(opts.bad);
  assert(r.error, 'the text file was accepted as a video');
  const msg = await text('#upload-error');
  assert(await visible('#upload-error'), 'the error is not visible');
  assert(!msg.includes('{"') && !msg.includes('"code"'), `the error shows raw JSON: ${msg}`);
  assert(/[a-z]{3,}\s+[a-z]{2,}/i.test(msg), `the error is not in words: ${msg}`);
  const all = await page.evaluate(() => document.body.innerText);
  assert(!all.includes('{"'), 'the page shows raw JSON somewhere');
  assert(!(await visible('#facts')), 'facts of the refused file are shown');
  await shot('05-error.png');
  return msg;
});

await step('(e) cancel a long run', async () => {
  await setSettings(2, 'fast');
  const r = await upload(opts.long);
  assert(!r.error, `the long clip was refused: ${r.error}`);
  const id = await taskId();
  const fresh = await runState();
  assert(fresh.value === 0 && !fresh.visible, `a fresh draft shows progress ${fresh.value}`);
  started_tasks.add(await taskId());
  await page.click('#start-button');
  const deadline = Date.now() + 120000;
  for (;;) {
    const s = await runState();
    assert(!['completed', 'failed', 'cancelled'].includes(s.status), `the long task ended (${s.status}) before it could be cancelled`);
    if (s.status === 'processing' && s.value > 0) break;
    assert(Date.now() < deadline, `the long task made no progress within 120 s (status ${s.status})`);
    await page.waitForTimeout(100);
  }
  assert(await visible('#cancel-button'), 'no Cancel button while the task runs');
  const t0 = Date.now();
  await page.click('#cancel-button');
  await waitInPage('the status to say cancelled', () => /cancelled/i.test(document.querySelector('#run-status').textContent) && document.querySelector('#run-panel').dataset.status === 'cancelled', null, 5000);
  const took = (Date.now() - t0) / 1000;
  assert(!(await visible('#cancel-button')), 'the Cancel button is still shown after cancelling');
  await waitInPage(
    'the task list to show the task as cancelled',
    (id) => {
      const b = document.querySelector(`#tasks-body tr[data-task-id="${id}"] [data-testid="task-status"]`);
      return b && /cancelled/i.test(b.textContent);
    },
    id,
    10000,
  );
  await shot('06-cancelled.png');
  return `cancelled ${took.toFixed(1)} s after the click at ${await text('#run-percent')}`;
});

await step('(f) narrow screen (390 × 844): no horizontal scrolling', async () => {
  await noHorizontalScroll(1280, 'wide, cancelled state');
  await page.setViewportSize({ width: 390, height: 844 });
  await noHorizontalScroll(390, 'cancelled state');
  await page.reload({ waitUntil: 'load' });
  await waitInPage('the presets', () => document.querySelector('[data-preset-summary="fast"]').textContent.trim().length > 0, null, 15000);
  await noHorizontalScroll(390, 'fresh page');
  await setSettings(2, 'fast');
  const r = await upload(opts.video);
  assert(!r.error, `the upload was refused: ${r.error}`);
  await noHorizontalScroll(390, 'facts');
  await page.click('#preview-button');
  await waitForCompare('#preview-compare', '#preview-error', 'the preview images', 60000);
  await noHorizontalScroll(390, 'preview');
  started_tasks.add(await taskId());
  await page.click('#start-button');
  await followRun(120000, null);
  await waitForCompare('#result-compare', '#result-error', 'the result frame images', 60000);
  const sw = await noHorizontalScroll(390, 'done');
  await shot('07-narrow.png');
  return `scrollWidth ${sw}`;
});

if (opts.image) {
  await step('(g) an image: upscaled at once, shown, downloadable', async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.setInputFiles('#file-input', opts.image);
    const r = await waitInPage(
      'the upscaled image',
      () => {
        const err = document.querySelector('#upload-error');
        if (err && !err.hidden && err.textContent.trim()) return { error: err.textContent.trim() };
        const img = document.querySelector('#image-result-img');
        const shown = !document.querySelector('#image-result').hidden;
        return shown && img.naturalWidth > 0 ? { w: img.naturalWidth, h: img.naturalHeight } : false;
      },
      null,
      60000,
    );
    assert(!r.error, `the image was refused: ${r.error}`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#image-result-link')]);
    const saved = await download.path();
    assert(saved && fs.statSync(saved).size > 0, 'the download is empty');
    await shot('08-image.png');
    return `${r.w}x${r.h}, downloaded as ${download.suggestedFilename()}`;
  });
}

await browser.close();
console.log(`e2e: all ${stepCount} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
