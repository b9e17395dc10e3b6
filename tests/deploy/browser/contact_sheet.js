// Headless Chromium opens mj_contact_sheet's page (a local file) and screenshots it.
//
//   node contact_sheet.js '<json config>'   (config: chromium, url, expectedImages, userDataDir, artifacts)
//
// Checks that the page shows the expected number of images, each loaded (natural size > 0) with
// its prompt and a link to the full image. Prints one line "RESULT {json}"; exits 0 when the
// checks ran (pass or fail) and 2 when the browser itself could not be driven.
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const cfg = JSON.parse(process.argv[2]);
const checks = {};
const screenshots = [];

function check(name, ok, detail) {
  checks[name] = { ok: Boolean(ok), detail: detail === undefined ? null : detail };
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${ok ? '' : ': ' + JSON.stringify(detail)}`);
}

async function main() {
  fs.mkdirSync(cfg.artifacts, { recursive: true });
  fs.mkdirSync(cfg.userDataDir, { recursive: true });
  const context = await chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1200, height: 900 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.goto(cfg.url, { waitUntil: 'load', timeout: 30000 });
    const figures = await page.evaluate(() => Array.from(document.querySelectorAll('figure')).map((f) => {
      const img = f.querySelector('img');
      const link = f.querySelector('a[href]');
      const prompt = f.querySelector('.prompt');
      return {
        src: img ? img.getAttribute('src') : null,
        loaded: Boolean(img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0),
        prompt: prompt ? prompt.textContent.trim() : '',
        href: link ? link.getAttribute('href') : null,
      };
    }));
    check(`the contact sheet shows ${cfg.expectedImages} images, each loaded, with its prompt and link`,
      figures.length === cfg.expectedImages && figures.every((f) => f.loaded && f.prompt && f.href === f.src),
      figures);
    const file = path.join(cfg.artifacts, '08-contact-sheet.png');
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  } catch (err) {
    check('contact sheet opened', false, String(err && err.stack ? err.stack : err).slice(0, 1500));
  } finally {
    await context.close();
  }
}

main()
  .then(() => {
    console.log('RESULT ' + JSON.stringify({ checks, screenshots }));
    process.exit(0);
  })
  .catch((err) => {
    console.error(err);
    console.log('RESULT ' + JSON.stringify({ checks, screenshots, error: String(err) }));
    process.exit(2);
  });
