#!/usr/bin/env node
// Plays a video file to its end in Debian's headless Chromium and reports what the browser
// saw: `play: ok duration=S width=W frames=N` or `play: failed ...` (exit 1).
//
//   node tests/web/play.mjs --video out.mp4 [--chromium /usr/bin/chromium]

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    video: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!opts.video || !fs.existsSync(opts.video)) {
  console.error('usage: node tests/web/play.mjs --video FILE');
  process.exit(2);
}

const browser = await chromium.launch({ executablePath: opts.chromium, args: ['--autoplay-policy=no-user-gesture-required'] });
try {
  const page = await browser.newPage();
  const dir = path.dirname(path.resolve(opts.video));
  fs.writeFileSync(path.join(dir, 'play.html'), `<video id="v" muted src="${path.basename(opts.video)}"></video>`);
  await page.goto('file://' + path.join(dir, 'play.html'));
  const seen = await page.evaluate(() => new Promise((resolve) => {
    const v = document.getElementById('v');
    const done = (ok, why) => resolve({
      ok, why, duration: v.duration, width: v.videoWidth, time: v.currentTime,
      frames: v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : -1,
      error: v.error ? v.error.code + ' ' + v.error.message : null,
    });
    v.onerror = () => done(false, 'error');
    v.onended = () => done(true, 'ended');
    v.playbackRate = 4;
    v.play().catch((e) => done(false, 'play() refused: ' + e));
    setTimeout(() => done(false, 'timeout'), 60000);
  }));
  const line = `duration=${seen.duration} width=${seen.width} time=${seen.time} frames=${seen.frames} error=${seen.error}`;
  if (!seen.ok || seen.error) {
    console.log(`play: failed (${seen.why}) ${line}`);
    process.exit(1);
  }
  console.log(`play: ok ${line}`);
} finally {
  await browser.close();
}
